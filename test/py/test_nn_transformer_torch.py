#!/usr/bin/python3
"""The transformer layers against PyTorch (float32, autograd).

Runs $TEST_BIN_DIR/nn_transformer_dump (or argv[1]) into a temporary HDF5
file; for every case there (see test/tools/nn_transformer_dump.c for the
layout) rebuilds the computation in torch from the same inputs: F.linear,
F.layer_norm, F.gelu (exact erf form), attention written out with explicit
matmuls and a masked softmax, F.embedding, softmax, F.normalize, and a
pre-LN transformer block composed of them. The loss is sum(out * dout) over
the outputs that have an upstream gradient, so autograd gives the same
gradients aesnet's backward computed. aesnet's gradient buffers started
from a prior (backward accumulates), so grad - prior is compared.

Every output and gradient must satisfy ||a - b|| / ||b|| <= 1e-5.
"""
import math
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


def find_tool():
    if len(sys.argv) > 1:
        return sys.argv[1]
    return os.path.join(os.environ.get("TEST_BIN_DIR", "build/test"), "nn_transformer_dump")


# ---- torch versions of the layers --------------------------------------------


def attention(qkv, nh, causal):
    """qkv [B, T, 3C] -> (out [B, T, C], probabilities [B, NH, T, T])."""
    B, T, C3 = qkv.shape
    C = C3 // 3
    hs = C // nh
    q, k, v = qkv.split(C, dim=2)
    q = q.reshape(B, T, nh, hs).transpose(1, 2)
    k = k.reshape(B, T, nh, hs).transpose(1, 2)
    v = v.reshape(B, T, nh, hs).transpose(1, 2)
    s = (q @ k.transpose(-2, -1)) * (1.0 / math.sqrt(hs))
    if causal:
        mask = torch.ones(T, T, dtype=torch.bool).triu(1)
        s = s.masked_fill(mask, float("-inf"))
    p = torch.softmax(s, dim=-1)
    y = (p @ v).transpose(1, 2).reshape(B, T, C)
    return y, p


def block(t, nh, causal, eps):
    x = t["x"]
    C = x.shape[-1]
    h = F.layer_norm(x, (C,), t["ln1_w"], t["ln1_b"], eps)
    a, p = attention(F.linear(h, t["qkv_w"], t["qkv_b"]), nh, causal)
    x1 = x + F.linear(a, t["proj_w"], t["proj_b"])
    h = F.layer_norm(x1, (C,), t["ln2_w"], t["ln2_b"], eps)
    m = F.linear(F.gelu(F.linear(h, t["fc_w"], t["fc_b"])), t["fc2_w"], t["fc2_b"])
    return {"y": x1 + m, "att": p}


def build(case, t, g):
    """The torch outputs of one case, from its inputs t and settings in g."""
    if case.startswith("linear"):
        return {"y": F.linear(t["x"], t["w"], t.get("b"))}
    if case == "layernorm":
        x = t["x"]
        eps = float(g["eps"][0])
        var, mean = torch.var_mean(x.detach(), dim=-1, unbiased=False)
        return {"y": F.layer_norm(x, (x.shape[-1],), t["w"], t["b"], eps),
                "mean": mean, "rstd": 1.0 / torch.sqrt(var + eps)}
    if case == "gelu":
        return {"y": F.gelu(t["x"])}
    if case.startswith("attention"):
        nh, causal = (int(v) for v in g["cfg"][()])
        y, p = attention(t["qkv"], nh, causal)
        return {"y": y, "att": p}
    if case == "embedding":
        tok = t["tokens"].long()
        T = tok.shape[1]
        return {"y": F.embedding(tok, t["wte"]) + t["wpe"][:T].unsqueeze(0)}
    if case == "softmax":
        return {"y": torch.softmax(t["x"] * float(g["scale"][0]), dim=-1)}
    if case.startswith("l2norm"):
        x = t["x"]
        return {"y": F.normalize(x, p=2.0, dim=-1, eps=1e-12),
                "norm": torch.linalg.vector_norm(x.detach(), dim=-1)}
    if case.startswith("block"):
        nh, causal = (int(v) for v in g["cfg"][()])
        return block(t, nh, causal, float(g["eps"][0]))
    raise KeyError(case)


def rel(a, b):
    a = np.asarray(a, dtype=np.float64)
    b = np.asarray(b, dtype=np.float64)
    nb = np.linalg.norm(b)
    return np.linalg.norm(a - b) / nb if nb > 0 else np.linalg.norm(a)


def run_case(case, g, worst):
    t = {}
    for name, ds in g["in"].items():
        arr = ds[()]
        if arr.dtype == np.int32:
            t[name] = torch.from_numpy(arr)
        else:
            t[name] = torch.from_numpy(arr).float().requires_grad_(name in g["grad"])
    outs = build(case, t, g)
    check(set(outs) == set(g["out"]), f"{case}: outputs {sorted(outs)} vs {sorted(g['out'])}")
    loss = sum((outs[k] * torch.from_numpy(g["dout"][k][()])).sum() for k in g["dout"])
    loss.backward()
    for k in sorted(g["out"]):
        if k not in outs:
            continue
        e = rel(g["out"][k][()], outs[k].detach().numpy())
        worst.append((e, f"{case}/out/{k}"))
        check(e <= TOL, f"{case}/out/{k}: relative error {e:.3g} > {TOL}")
    for k in sorted(g["grad"]):
        ref = t[k].grad
        if ref is None:
            check(False, f"{case}/grad/{k}: torch gives no gradient")
            continue
        mine = g["grad"][k][()].astype(np.float64) - g["prior"][k][()]
        e = rel(mine, ref.numpy())
        worst.append((e, f"{case}/grad/{k}"))
        check(e <= TOL, f"{case}/grad/{k}: relative error {e:.3g} > {TOL}")


def main():
    torch.set_num_threads(1)
    tool = find_tool()
    expected = {"linear_bias", "linear_nobias", "linear_big", "layernorm", "gelu", "attention",
                "attention_causal", "attention_vit", "attention_text", "embedding", "softmax",
                "l2norm", "l2norm_tiny", "block", "block_causal"}
    with tempfile.TemporaryDirectory() as tmp:
        path = os.path.join(tmp, "nn.h5")
        r = subprocess.run([tool, path], capture_output=True, text=True)
        check(r.returncode == 0, f"{tool} failed: {r.stderr.strip()}")
        if r.returncode != 0:
            return finish()
        worst = []
        with h5py.File(path, "r") as f:
            check(set(f.keys()) == expected, f"cases {sorted(f.keys())}")
            for case in sorted(f.keys()):
                run_case(case, f[case], worst)
    worst.sort(reverse=True)
    for e, what in worst[:5]:
        print(f"worst relative error {e:.3g}  {what}")
    return finish()


if __name__ == "__main__":
    sys.exit(main())
