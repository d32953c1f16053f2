"""prep synth read back with h5py: the documented fields are there, the
file is a deterministic function of the seed, and the attribute values the
generator stored are recoverable from the pixels by simple statistics."""
import os
import subprocess
import sys
import tempfile

import h5py
import numpy as np

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from harness import check, finish  # noqa: E402

AESNET = os.environ["AESNET"]


def synth(path, seed, n=600, size=48):
    subprocess.run([AESNET, "prep", "synth", "--out", path, "--n", str(n), "--size", str(size),
                    "--seed", str(seed), "--quiet", "--features", "16"], check=True)


def class_means(stat, levels):
    return [stat[levels == v].mean() for v in sorted(set(levels.tolist()))]


def main():
    d = tempfile.mkdtemp(prefix="aesnet-synth-")
    synth(f"{d}/a.h5", 11)
    synth(f"{d}/b.h5", 11)
    synth(f"{d}/c.h5", 12)
    fa, fb, fc = (h5py.File(f"{d}/{x}.h5", "r") for x in "abc")
    for key in ["images", "text/tokens", "text/count", "scores", "split", "content/labels",
                "content/features", "synth/levels", "tokenizer/merges"]:
        check(key in fa, f"field {key} present")
        check(np.array_equal(fa[key][:], fb[key][:], equal_nan=True), f"{key}: same seed, same data")
    check(not np.array_equal(fa["images"][:], fc["images"][:]), "another seed, other images")
    check(fa["images"].shape == (600, 48, 48, 3) and fa["images"].chunks == (1, 48, 48, 3), "image layout")
    names = [x.decode() if isinstance(x, bytes) else x for x in fa["attributes"][:]]
    check(names == ["color", "light", "composition", "focus", "subject"], f"attributes {names}")
    check((fa["text/count"][:] == 1).all(), "one description per attribute")

    img = fa["images"][:].astype(np.float64) / 255.0
    lev = fa["synth/levels"][:]
    cols = fa["synth/levels"].attrs["columns"]
    cols = (cols.decode() if isinstance(cols, bytes) else cols).split(",")
    L = {c: lev[:, i] for i, c in enumerate(cols)}
    lum = img @ np.array([0.299, 0.587, 0.114])
    bright = lum.mean(axis=(1, 2))
    m = class_means(bright, L["exposure"])
    check(m[0] < m[1] < m[2], f"mean brightness orders exposure under < well < over: {m}")
    sat = (img.max(-1) - img.min(-1)).mean(axis=(1, 2))
    m = class_means(sat, L["saturation"])
    check(m[0] < m[1] < m[2], f"chroma orders saturation muted < moderate < over: {m}")
    contrast = lum.std(axis=(1, 2))
    m = class_means(contrast, L["contrast"])
    check(m[0] < m[1] < m[2], f"luminance spread orders contrast flat < good < harsh: {m}")
    lap = np.abs(4 * lum[:, 1:-1, 1:-1] - lum[:, :-2, 1:-1] - lum[:, 2:, 1:-1] - lum[:, 1:-1, :-2] - lum[:, 1:-1, 2:])
    sharp = lap.mean(axis=(1, 2))
    m = class_means(sharp, L["focus"])
    check(m[2] < m[0] < m[1], f"Laplacian energy orders focus all-blurred < subject-sharp < all-sharp: {m}")

    sc = fa["scores"][:]
    check(np.all((sc >= 1) & (sc <= 10)), "scores on the 1..10 scale")
    good = (L["exposure"] == 1).astype(float) + (L["focus"] == 0) + (L["clutter"] == 0) + (L["placement"] == 1)
    check(np.corrcoef(good, sc)[0, 1] > 0.3, "scores rise with good attribute values")
    # Votes: whole counts of 120..279 voters whose mean is the score, spread
    # wider for tilted horizons (levels column 5) and clashing colours (0).
    v = fa["votes"][:].astype(np.float64)
    nv = v.sum(1)
    check(v.shape == (600, 10) and np.array_equal(v, np.round(v)) and (v >= 0).all(), "vote counts")
    check(nv.min() >= 120 and nv.max() <= 279, f"voters per image {nv.min()}..{nv.max()}")
    mu = v @ np.arange(1, 11) / nv
    check(np.abs(mu - sc).max() < 1e-5, "the score is the mean of the votes")
    sd = np.sqrt(v @ (np.arange(1, 11) ** 2) / nv - mu ** 2)
    lv = fa["synth/levels"][:]
    check(sd[lv[:, 5] == 1].mean() > sd[lv[:, 5] == 0].mean() + 0.3, "tilted images split the voters more")
    check(sd[lv[:, 0] == 0].mean() > sd[lv[:, 0] == 1].mean() + 0.2, "clashing colours split the voters more")

    feat = fa["content/features"][:]
    lab = fa["content/labels"][:]
    check(np.allclose(np.linalg.norm(feat, axis=1), 1, atol=1e-4), "unit-norm content features")
    cos = feat @ feat.T
    same = cos[lab[:, None] == lab[None, :]].mean()
    diff = cos[lab[:, None] != lab[None, :]].mean()
    check(same > 0.9 and abs(diff) < 0.3, f"features follow content classes: same {same:.3f}, different {diff:.3f}")
    # The one-caption twin: the same images and scores, the five descriptions
    # joined into one attribute.
    subprocess.run([AESNET, "prep", "synth", "--out", f"{d}/cap.h5", "--n", "600", "--size", "48",
                    "--seed", "11", "--quiet", "--features", "16", "--caption"], check=True)
    with h5py.File(f"{d}/cap.h5", "r") as fcap:
        names = [x.decode() if isinstance(x, bytes) else x for x in fcap["attributes"][:]]
        check(names == ["caption"], f"caption attributes {names}")
        check(np.array_equal(fcap["images"][:], fa["images"][:]), "caption twin has the same images")
        check(np.array_equal(fcap["scores"][:], fa["scores"][:]), "caption twin has the same scores")
        check(np.array_equal(fcap["votes"][:], fa["votes"][:]), "caption twin has the same votes")
        s0 = fcap["text/strings"][0, 0, 0]
        s0 = s0.decode() if isinstance(s0, bytes) else s0
        parts = [fa["text/strings"][0, a, 0] for a in range(5)]
        parts = [p.decode() if isinstance(p, bytes) else p for p in parts]
        check(s0 == "; ".join(parts), "the caption joins the five descriptions")
        check(int(fcap.attrs["context_length"]) == 96, "caption context length 96")
    return finish()


if __name__ == "__main__":
    sys.exit(main())
