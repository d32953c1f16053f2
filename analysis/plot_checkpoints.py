#!/usr/bin/python3
"""Checkpoint evolution of an aesnet run: the L2 norm of the trainable
parameters of each module (image/, text/, fusion/, head/) against step, over
RUN_DIR/checkpoints/step_*.h5, and of the image encoder's parts (image/stem,
image/stage1, ...). Norms as `aesnet ckpt info` prints them (trainable
tensors only, batch-norm running statistics excluded).

usage: plot_checkpoints.py RUN_DIR --out DIR

Writes DIR/param_norms.png and DIR/image_norms.png and, next to each, a JSON
with exactly the numbers plotted: {"figure": ..., "x": "step", "series":
{MODULE: {"step": [...], "value": [...]}}}.
"""
import argparse
import glob
import json
import os
import re
import sys

import h5py
import matplotlib
import numpy as np

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402

ORDER = ["image", "text", "fusion", "head"]


def module_of(name, depth):
    parts = name.split("/")
    return "/".join(parts[:depth]) if len(parts) > depth else name


def norms(path):
    """(step, {module: sum of squares}) at depth 1 and 2."""
    ss = {}
    with h5py.File(path, "r") as f:
        if f.attrs.get("format") not in ("aesnet-checkpoint", b"aesnet-checkpoint"):
            raise ValueError("not an aesnet checkpoint")
        step = int(f.attrs["step"])

        def take(name, obj):
            if isinstance(obj, h5py.Dataset) and int(obj.attrs.get("trainable", 1)):
                s = float(np.sum(obj[()].astype(np.float64) ** 2))
                for d in (1, 2):
                    m = module_of(name, d)
                    ss[m] = ss.get(m, 0.0) + s
        f["model"].visititems(take)
    return step, ss


def figure(out, name, title, points, modules):
    data = {}
    fig, ax = plt.subplots(figsize=(8, 4.5))
    for m in modules:
        xs = [s for s, n in points if m in n]
        ys = [float(np.sqrt(n[m])) for s, n in points if m in n]
        if not xs:
            continue
        data[m] = {"step": xs, "value": ys}
        ax.plot(xs, ys, "o-", ms=3, label=m)
    ax.set_xlabel("step")
    ax.set_ylabel("L2 norm")
    ax.set_yscale("log")
    ax.set_title(title)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8, loc="best")
    fig.tight_layout()
    png = os.path.join(out, name + ".png")
    fig.savefig(png, dpi=100)
    plt.close(fig)
    with open(os.path.join(out, name + ".json"), "w") as f:
        json.dump({"figure": name + ".png", "x": "step", "series": data}, f, indent=1)
    return png


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("run_dir")
    ap.add_argument("--out", required=True)
    a = ap.parse_args()
    files = [p for p in glob.glob(os.path.join(a.run_dir, "checkpoints", "step_*.h5"))
             if re.fullmatch(r"step_\d+\.h5", os.path.basename(p))]
    points = []
    for p in files:
        try:
            points.append(norms(p))
        except (OSError, KeyError, ValueError) as e:
            print(f"plot_checkpoints: skipping {p}: {e}", file=sys.stderr)
    if not points:
        print(f"plot_checkpoints: {a.run_dir}/checkpoints: no readable step_*.h5", file=sys.stderr)
        return 1
    points.sort(key=lambda p: p[0])
    os.makedirs(a.out, exist_ok=True)
    top = [m for m in ORDER if any(m in n for _, n in points)]
    top += sorted({m for _, n in points for m in n if "/" not in m} - set(top))
    parts = sorted({m for _, n in points for m in n if m.startswith("image/")})
    print(figure(a.out, "param_norms", "parameter L2 norm per module", points, top))
    print(figure(a.out, "image_norms", "image encoder: parameter L2 norm per part", points, parts))
    return 0


if __name__ == "__main__":
    sys.exit(main())
