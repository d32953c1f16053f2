#!/usr/bin/python3
"""Training curves of an aesnet run from RUN_DIR/metrics.csv (columns in
docs/training.md): total, MAC and affinity losses (with the validation loss
where logged), the per-attribute losses and logit scales, the learning rate
and gradient norm, and throughput with the time split.

usage: plot_training.py RUN_DIR --out DIR

Writes DIR/NAME.png and, next to each, DIR/NAME.json with exactly the numbers
plotted: {"figure": "NAME.png", "x": "step", "series": {COLUMN: {"step": [...],
"value": [...]}}}, values as read from metrics.csv (rows where a column is
empty are left out of that series; non-finite values are null).
"""
import argparse
import csv
import json
import math
import os
import sys

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402


def read_metrics(path):
    with open(path, newline="") as f:
        rows = list(csv.DictReader(f))
    if not rows:
        raise ValueError(f"{path}: no rows")
    return list(rows[0].keys()), rows


def series(rows, col):
    """(steps, values) of the rows where col has a value."""
    xs, ys = [], []
    for r in rows:
        v = (r.get(col) or "").strip()
        if v == "":
            continue
        xs.append(int(r["step"]))
        ys.append(float(v))
    return xs, ys


def jsonable(v):
    return v if math.isfinite(v) else None


def figure(out, name, title, panels, rows, logy=()):
    """panels: list of (ylabel, [columns]); one subplot each, shared x."""
    fig, axes = plt.subplots(len(panels), 1, figsize=(8, 3.2 * len(panels)), sharex=True, squeeze=False)
    data = {}
    for ax, (ylabel, cols) in zip(axes[:, 0], panels):
        for c in cols:
            xs, ys = series(rows, c)
            if not xs:
                continue
            data[c] = {"step": xs, "value": [jsonable(y) for y in ys]}
            style = "o-" if len(xs) < len(rows) else "-"
            ax.plot(xs, ys, style, ms=3, label=c)
        ax.set_ylabel(ylabel)
        if ylabel in logy:
            ax.set_yscale("log")
        ax.grid(alpha=0.3)
        if ax.lines:
            ax.legend(fontsize=8, loc="best")
    axes[-1, 0].set_xlabel("step")
    axes[0, 0].set_title(title)
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
    path = os.path.join(a.run_dir, "metrics.csv")
    try:
        cols, rows = read_metrics(path)
    except (OSError, ValueError, KeyError) as e:
        print(f"plot_training: {e}", file=sys.stderr)
        return 1
    os.makedirs(a.out, exist_ok=True)
    attr_loss = [c for c in cols if c.startswith("loss_")]
    attr_scale = [c for c in cols if c.startswith("scale_")]
    made = [
        figure(a.out, "losses", "losses", [("loss", ["loss", "mac", "affinity", "val_loss"])], rows),
        figure(a.out, "attributes", "per-attribute MAC losses and logit scales",
               [("loss", attr_loss), ("logit scale", attr_scale)], rows),
        figure(a.out, "optimizer", "learning rate and gradient norm",
               [("lr", ["lr"]), ("grad norm", ["grad_norm"])], rows),
        figure(a.out, "throughput", "throughput and time per step",
               [("images/s", ["images_per_s"]), ("seconds", ["data_s", "compute_s", "comm_s"])], rows),
    ]
    for p in made:
        print(p)
    return 0


if __name__ == "__main__":
    sys.exit(main())
