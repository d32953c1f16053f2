#!/usr/bin/python3
"""Check an image encoder exported by `aesnet ckpt export` (docs/export-format.md)
against the same network written independently in PyTorch
(analysis/aesnet_torch.py): load /params, run /check/input through it in eval
mode (batch norm from the running statistics) in float64, and compare with
/check/features, the features aesnet computed.

usage: check_export.py ENCODER.h5 [--tol 1e-4]
Exit 0 when the relative error ||torch - aesnet|| / ||aesnet|| is within the
tolerance, 1 otherwise (or for a file that is no export); one line either way.
"""
import argparse
import os
import sys

import h5py
import numpy as np
import torch

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from aesnet_torch import AesNetTorch  # noqa: E402

FORMAT = "aesnet-image-encoder"


def text(v):
    return v.decode() if isinstance(v, bytes) else str(v)


def load(path):
    """(attrs, params, buffers, input, features); params and buffers keyed
    "image/<name>" as aesnet_torch expects."""
    with h5py.File(path, "r") as f:
        attrs = {k: f.attrs[k] for k in f.attrs}
        if text(attrs.get("format", "")) != FORMAT:
            raise ValueError(f"attribute format: {attrs.get('format')!r}, expected {FORMAT!r}")
        if int(attrs.get("format_version", -1)) != 1:
            raise ValueError(f"attribute format_version: {attrs.get('format_version')}, expected 1")
        params, buffers = {}, {}

        def take(name, obj):
            if isinstance(obj, h5py.Dataset):
                t = torch.tensor(obj[()].astype(np.float64))
                if name.endswith("running_mean") or name.endswith("running_var"):
                    buffers["image/" + name] = t
                else:
                    params["image/" + name] = t
        f["params"].visititems(take)
        x = f["check/input"][()].astype(np.float64)
        feats = f["check/features"][()].astype(np.float64)
    return attrs, params, buffers, x, feats


def forward(attrs, params, buffers, x):
    arch = text(attrs["architecture"])
    heads = int(attrs["vit_heads"]) if arch == "vit" else 1
    net = AesNetTorch(params, buffers, vit_heads=heads)
    with torch.no_grad():
        xt = torch.tensor(x)
        if arch == "vit":
            return net.vit(xt, params).numpy()
        if arch == "resnet":
            return net.resnet(xt, params, buffers, False).numpy()
    raise ValueError(f"attribute architecture: {arch!r}, expected 'resnet' or 'vit'")


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("export")
    ap.add_argument("--tol", type=float, default=1e-4)
    a = ap.parse_args()
    try:
        attrs, params, buffers, x, want = load(a.export)
        R = int(attrs["input_size"])
        if x.shape[1:] != (3, R, R):
            raise ValueError(f"/check/input: shape {x.shape}, expected [B, 3, {R}, {R}]")
        got = forward(attrs, params, buffers, x)
    except (OSError, KeyError, ValueError) as e:
        print(f"check_export: {a.export}: {e}")
        return 1
    if got.shape != want.shape or got.shape[1] != int(attrs["feature_width"]):
        print(f"check_export: FAIL: features of shape {got.shape} in PyTorch, {want.shape} in the file")
        return 1
    err = float(np.linalg.norm(got - want) / max(np.linalg.norm(want), 1e-30))
    verdict = "OK" if err <= a.tol else "FAIL"
    print(f"check_export: {verdict}: {text(attrs['architecture'])} encoder, {len(params)} parameters "
          f"+ {len(buffers)} buffers, {want.shape[0]} x {want.shape[1]} features, "
          f"relative error {err:.3e} (tolerance {a.tol:g})")
    return 0 if verdict == "OK" else 1


if __name__ == "__main__":
    sys.exit(main())
