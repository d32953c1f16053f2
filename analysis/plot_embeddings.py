#!/usr/bin/python3
"""Embedding analysis of an `aesnet embed` file (docs/embed-format.md).

usage: plot_embeddings.py E.h5 --out DIR [--split test] [--n 48]

Writes, with a JSON of exactly the numbers plotted beside each PNG:
- DIR/similarity.png: per attribute, the cosine similarity between the image
  embeddings (rows) and the text embeddings (columns) of the first n rows of
  the split that have that attribute, rows sorted by score (a good model
  shows a bright diagonal). JSON: {"figure", "attributes": {A: {"rows":
  [...], "matrix": [[...]]}}}.
- DIR/projection.png: the encoder features of the split projected on their
  first two principal components (centred; components from the SVD, sign
  fixed so the largest-magnitude loading is positive), coloured by score.
  JSON: {"figure", "rows": [...], "x": [...], "y": [...], "score": [...]}.
"""
import argparse
import json
import os
import sys

import h5py
import matplotlib
import numpy as np

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402

SPLITS = {"train": 0, "val": 1, "test": 2}


def s(x):
    return x.decode() if isinstance(x, bytes) else str(x)


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("embeddings")
    ap.add_argument("--out", required=True)
    ap.add_argument("--split", default="test", choices=list(SPLITS))
    ap.add_argument("--n", type=int, default=48)
    a = ap.parse_args()
    try:
        f = h5py.File(a.embeddings, "r")
    except OSError:
        sys.exit(f"plot_embeddings: {a.embeddings}: not an HDF5 file")
    if s(f.attrs.get("format", "")) != "aesnet-embeddings":
        sys.exit(f"plot_embeddings: {a.embeddings}: not an aesnet embeddings file")
    os.makedirs(a.out, exist_ok=True)
    split = f["split"][:]
    score = f["score"][:].astype(np.float64)
    rows = np.nonzero(split == SPLITS[a.split])[0]

    # Similarity heatmaps.
    sim = {}
    if "image_embeddings" in f:
        names = [s(x) for x in f["attributes"][:]]
        img, txt, mask = f["image_embeddings"][:], f["text_embeddings"][:], f["text_mask"][:]
        fig, axes = plt.subplots(1, len(names), figsize=(3.2 * len(names), 3.4), squeeze=False)
        for k, name in enumerate(names):
            r = [int(i) for i in rows if mask[k, i]][: a.n]
            r.sort(key=lambda i: (np.nan_to_num(score[i], nan=-np.inf), i))
            m = img[k, r].astype(np.float64) @ txt[k, r].astype(np.float64).T
            sim[name] = {"rows": r, "matrix": m.tolist()}
            ax = axes[0, k]
            ax.imshow(m, vmin=-1, vmax=1, cmap="coolwarm")
            ax.set_title(name)
            ax.set_xlabel("descriptions")
            ax.set_ylabel("images (by score)")
        fig.tight_layout()
        fig.savefig(os.path.join(a.out, "similarity.png"), dpi=100)
        plt.close(fig)
        json.dump({"figure": "similarity", "split": a.split, "attributes": sim},
                  open(os.path.join(a.out, "similarity.json"), "w"))

    # 2-D projection of the features.
    x = f["features"][rows].astype(np.float64)
    xc = x - x.mean(axis=0)
    _, _, vt = np.linalg.svd(xc, full_matrices=False)
    comps = vt[:2]
    for c in comps:
        if c[np.argmax(np.abs(c))] < 0:
            c *= -1
    p = xc @ comps.T
    fig, ax = plt.subplots(figsize=(5.5, 4.5))
    sc = ax.scatter(p[:, 0], p[:, 1], c=score[rows], cmap="viridis", s=10)
    fig.colorbar(sc, label="score")
    ax.set_title(f"encoder features, {a.split} split (PCA)")
    fig.tight_layout()
    fig.savefig(os.path.join(a.out, "projection.png"), dpi=100)
    json.dump({"figure": "projection", "split": a.split, "rows": rows.tolist(),
               "x": p[:, 0].tolist(), "y": p[:, 1].tolist(),
               "score": [None if np.isnan(v) else float(v) for v in score[rows]]},
              open(os.path.join(a.out, "projection.json"), "w"))
    print(f"plot_embeddings: {a.out}/similarity.png, {a.out}/projection.png")


if __name__ == "__main__":
    main()
