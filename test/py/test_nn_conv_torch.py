#!/usr/bin/python3
"""The convolutional layers against PyTorch.

Runs $TEST_BIN_DIR/nn_conv_dump (or argv[1]) into a temporary HDF5 file,
then for every case rebuilds the computation in torch (float32, CPU) from
the dumped inputs, parameters and upstream gradient `dout`, runs autograd,
and requires ||aesnet - torch|| / ||torch|| <= 1e-5 for the output and
every gradient:

  conv/*      F.conv2d(inp, w, b, stride, padding): out, dinp, dw, db
  bn_train/*  F.batch_norm(training=True, momentum, eps) on [N, C, HW]:
              out, dinp, dgamma, dbeta, the saved mean and 1/sqrt(var+eps),
              and the running mean/var after torch's in-place update
              (unbiased variance)
  bn_eval/*   F.batch_norm(training=False): out; running stats unchanged
  maxpool/*   F.max_pool2d(return_indices=True): out, dinp, and the argmax
              indices exactly (no ties in random normal data)
  avgpool/*   F.avg_pool2d(count_include_pad=True): out, dinp
  gap/*       F.adaptive_avg_pool2d(., 1): out, dinp
  relu/*      F.relu: out, dinp
"""
import os
import subprocess
import sys
import tempfile

import h5py
import numpy as np
import torch
import torch.nn.functional as F

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from harness import check, finish  # noqa: E402

TOL = 1e-5
worst = {}  # layer -> (error, what)


def find_tool():
    if len(sys.argv) > 1:
        return sys.argv[1]
    return os.path.join(os.environ.get("TEST_BIN_DIR", "build/test"), "nn_conv_dump")


def rel(a, b):
    a = np.asarray(a, dtype=np.float64)
    b = np.asarray(b, dtype=np.float64)
    den = np.linalg.norm(b)
    num = np.linalg.norm(a - b)
    return num / den if den > 0 else num


def compare(layer, case, name, ours, ref):
    ref = ref.detach().numpy() if torch.is_tensor(ref) else np.asarray(ref)
    ours = np.asarray(ours)
    if ours.shape != ref.shape:
        check(False, f"{layer}/{case} {name}: shape {ours.shape} vs torch {ref.shape}")
        return
    e = rel(ours, ref)
    check(e <= TOL, f"{layer}/{case} {name}: relative error {e:.3g} > {TOL}")
    if e > worst.get(layer, (-1.0, ""))[0]:
        worst[layer] = (e, f"{case} {name}")


def t(g, name, grad=False):
    return torch.tensor(np.asarray(g[name]), dtype=torch.float32, requires_grad=grad)


def run_conv(case, g):
    N, C, H, W, OC, KH, KW, stride, pad, has_bias = (int(v) for v in g["shape"])
    x, w = t(g, "inp", True), t(g, "w", True)
    b = t(g, "b", True) if has_bias else None
    check("b" in g if has_bias else "b" not in g, f"conv/{case}: bias presence")
    out = F.conv2d(x, w, b, stride=stride, padding=pad)
    out.backward(t(g, "dout"))
    compare("conv", case, "out", g["out"], out)
    compare("conv", case, "dinp", g["dinp"], x.grad)
    compare("conv", case, "dw", g["dw"], w.grad)
    if has_bias:
        compare("conv", case, "db", g["db"], b.grad)


def run_bn(case, g, train):
    N, C, HW = (int(v) for v in g["shape"])
    momentum, eps = (float(v) for v in g["hyper"])
    layer = "bn_train" if train else "bn_eval"
    x = t(g, "inp", True)
    gamma, beta = t(g, "gamma", True), t(g, "beta", True)
    rm, rv = t(g, "running_mean0"), t(g, "running_var0")
    # [N, C] when HW = 1 (after a linear layer), else [N, C, HW]
    xin = x.reshape(N, C) if HW == 1 else x
    out = F.batch_norm(xin, rm, rv, gamma, beta, training=bool(train), momentum=momentum,
                       eps=eps)
    compare(layer, case, "out", g["out"], out.reshape(N, C, HW))
    compare(layer, case, "running_mean", g["running_mean1"], rm)
    compare(layer, case, "running_var", g["running_var1"], rv)
    xd = x.detach().double()
    if train:
        mean = xd.mean(dim=(0, 2))
        var = xd.var(dim=(0, 2), unbiased=False)
        out.backward(t(g, "dout").reshape(out.shape))
        compare(layer, case, "dinp", g["dinp"], x.grad)
        compare(layer, case, "dgamma", g["dgamma"], gamma.grad)
        compare(layer, case, "dbeta", g["dbeta"], beta.grad)
    else:
        mean = t(g, "running_mean0").double()
        var = t(g, "running_var0").double()
        check(np.array_equal(g["running_mean0"], g["running_mean1"])
              and np.array_equal(g["running_var0"], g["running_var1"]),
              f"bn_eval/{case}: running statistics changed")
    compare(layer, case, "mean", g["mean"], mean)
    compare(layer, case, "rstd", g["rstd"], 1.0 / torch.sqrt(var + eps))


def run_pool(layer, case, g):
    N, C, H, W, K, stride, pad = (int(v) for v in g["shape"])
    x = t(g, "inp", True)
    if layer == "maxpool":
        out, idx = F.max_pool2d(x, K, stride, pad, return_indices=True)
        ours = np.asarray(g["argmax"])
        check(np.array_equal(ours, idx.numpy()),
              f"maxpool/{case}: argmax differs at {int((ours != idx.numpy()).sum())} places")
    else:
        out = F.avg_pool2d(x, K, stride, pad, count_include_pad=True)
    out.backward(t(g, "dout"))
    compare(layer, case, "out", g["out"], out)
    compare(layer, case, "dinp", g["dinp"], x.grad)


def run_gap(case, g):
    x = t(g, "inp", True)
    out = F.adaptive_avg_pool2d(x, 1).flatten(1)
    out.backward(t(g, "dout"))
    compare("gap", case, "out", g["out"], out)
    compare("gap", case, "dinp", g["dinp"], x.grad)


def run_relu(case, g):
    x = t(g, "inp", True)
    out = F.relu(x)
    out.backward(t(g, "dout"))
    compare("relu", case, "out", g["out"], out)
    compare("relu", case, "dinp", g["dinp"], x.grad)


def main():
    torch.set_num_threads(1)
    tool = find_tool()
    with tempfile.TemporaryDirectory() as tmp:
        path = os.path.join(tmp, "nn_conv.h5")
        r = subprocess.run([tool, path], capture_output=True, text=True)
        check(r.returncode == 0, f"{tool} exited {r.returncode}: {r.stderr.strip()}")
        if r.returncode != 0:
            return finish()
        with h5py.File(path, "r") as f:
            expect = {"conv": 12, "bn_train": 3, "bn_eval": 2, "maxpool": 3, "avgpool": 2,
                      "gap": 2, "relu": 2}
            for layer, n in expect.items():
                check(layer in f and len(f[layer]) == n, f"{layer}: expected {n} cases")
            for case, g in f["conv"].items():
                run_conv(case, g)
            for case, g in f["bn_train"].items():
                run_bn(case, g, True)
            for case, g in f["bn_eval"].items():
                run_bn(case, g, False)
            for layer in ("maxpool", "avgpool"):
                for case, g in f[layer].items():
                    run_pool(layer, case, g)
            for case, g in f["gap"].items():
                run_gap(case, g)
            for case, g in f["relu"].items():
                run_relu(case, g)
    for layer, (e, what) in sorted(worst.items()):
        print(f"worst relative error vs torch, {layer:8s}: {e:.2e} ({what})")
    return finish()


if __name__ == "__main__":
    sys.exit(main())
