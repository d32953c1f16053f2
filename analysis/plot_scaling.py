#!/usr/bin/python3
"""Scaling study figures from the table jobs/scaling.sh gathers.

usage: plot_scaling.py SCALING.csv --out DIR

SCALING.csv has the columns mode, nodes, ranks, global_batch, images_per_s,
step_ms, efficiency (mode: strong or weak). Writes DIR/scaling.png
(throughput and efficiency against ranks, one line per mode) and beside it
scaling.json with exactly the numbers plotted: {"figure": "scaling",
"x": "ranks", "series": {"MODE/images_per_s": {"ranks": [...], "value":
[...]}, "MODE/efficiency": {...}}}.
"""
import argparse
import csv
import json
import os
import sys

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("table")
    ap.add_argument("--out", required=True)
    a = ap.parse_args()
    try:
        rows = list(csv.DictReader(open(a.table)))
    except OSError as e:
        sys.exit(f"plot_scaling: {a.table}: {e.strerror}")
    need = {"mode", "ranks", "images_per_s", "efficiency"}
    if not rows or not need <= set(rows[0]):
        sys.exit(f"plot_scaling: {a.table}: expected columns {', '.join(sorted(need))}")
    os.makedirs(a.out, exist_ok=True)
    series = {}
    fig, (ax1, ax2) = plt.subplots(1, 2, figsize=(11, 4.5))
    for mode in sorted({r["mode"] for r in rows}):
        pts = sorted((int(r["ranks"]), float(r["images_per_s"]), float(r["efficiency"]))
                     for r in rows if r["mode"] == mode)
        ranks = [p[0] for p in pts]
        series[f"{mode}/images_per_s"] = {"ranks": ranks, "value": [p[1] for p in pts]}
        series[f"{mode}/efficiency"] = {"ranks": ranks, "value": [p[2] for p in pts]}
        ax1.plot(ranks, [p[1] for p in pts], "o-", label=mode)
        ax2.plot(ranks, [p[2] for p in pts], "o-", label=mode)
    for ax, title in ((ax1, "throughput (images/s)"), (ax2, "efficiency")):
        ax.set_xscale("log", base=2)
        ax.set_xlabel("ranks")
        ax.set_title(title)
        ax.grid(alpha=0.3)
        ax.legend()
    fig.tight_layout()
    fig.savefig(os.path.join(a.out, "scaling.png"), dpi=110)
    json.dump({"figure": "scaling", "x": "ranks", "series": series},
              open(os.path.join(a.out, "scaling.json"), "w"), indent=1)
    print(f"plot_scaling: {os.path.join(a.out, 'scaling.png')}")


if __name__ == "__main__":
    main()
