"""prep build end to end, read back with h5py (a real client of the format):
every documented field, pixels against an independent resize of PIL's
decode, descriptions decoded with the stored vocabulary, votes, scores,
splits, labels, features, K capping, truncation, --tokenizer reuse and an
evaluation-only set."""
import json
import os
import subprocess
import sys
import tempfile

import h5py
import numpy as np
from PIL import Image

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from harness import check, finish  # noqa: E402
from refimage import reference_resize_crop  # noqa: E402

AESNET = os.environ["AESNET"]


def run(*args):
    r = subprocess.run([AESNET, *args], capture_output=True, text=True)
    if r.returncode != 0:
        print(r.stdout, r.stderr, file=sys.stderr)
        raise SystemExit(f"aesnet {' '.join(args)} failed")
    return r.stdout


def normalise(t):
    return " ".join(t.lower().split())


def decode(vocab, ids):
    out = b""
    for i in ids[1:]:
        if i == 2:
            break
        out += bytes(vocab[i])
    return out.decode("utf-8")


def s(x):
    return x.decode() if isinstance(x, bytes) else x


def main():
    d = tempfile.mkdtemp(prefix="aesnet-build-")
    rng = np.random.default_rng(5)
    S, K, L = 32, 2, 16
    srcs = {}

    def smooth(h, w):
        y, x = np.mgrid[0:h, 0:w]
        base = np.stack([(x * 255 // max(w - 1, 1)), (y * 255 // max(h - 1, 1)), (x + y) % 256], -1)
        return np.clip(base + rng.integers(-20, 20, (h, w, 3)), 0, 255).astype(np.uint8)

    # JPEG (two sizes), RGB PNG, grey PNG, RGBA PNG, and one smaller than S.
    Image.fromarray(smooth(90, 130)).save(f"{d}/a.jpg", quality=95)
    Image.fromarray(smooth(75, 41)).save(f"{d}/b.jpg", quality=90)
    Image.fromarray(smooth(64, 64)).save(f"{d}/c.png")
    Image.fromarray(smooth(50, 70)[:, :, 0]).save(f"{d}/d.png")
    rgba = np.concatenate([smooth(44, 60), rng.integers(0, 255, (44, 60, 1), dtype=np.uint8)], -1)
    Image.fromarray(rgba, "RGBA").save(f"{d}/e.png")
    Image.fromarray(smooth(20, 27)).save(f"{d}/f.png")
    for name in "abcdef":
        ext = "jpg" if name in "ab" else "png"
        srcs[name] = np.asarray(Image.open(f"{d}/{name}.{ext}").convert("RGB"))

    long_text = " ".join(f"word{i}" for i in range(40))
    votes = [0, 1, 2, 5, 9, 7, 3, 2, 1, 0]
    rows = [
        {"image": "a.jpg", "descriptions": {"color": "Warm  golden tones", "light": ["soft light", "a bit dark", "nice glow"]},
         "score": votes, "split": "train", "content": "dog", "id": 17},
        {"image": "b.jpg", "descriptions": {"color": ["cold blue cast"], "light": []}, "score": 3.5, "split": "val"},
        {"image": "c.png", "descriptions": {"color": long_text, "light": "harsh noon sun"}, "content": "cat"},
        {"image": "d.png", "descriptions": {"color": None, "light": "flat overcast light"}, "score": 7.25, "split": "test", "content": "dog"},
        {"image": "e.png", "descriptions": {"color": "pastel palette", "light": "backlit glow"}, "score": 6.0},
        {"image": f"{d}/f.png", "descriptions": {"color": "warm golden tones", "light": "soft light"}, "score": 4.0, "split": "train"},
    ]
    with open(f"{d}/m.jsonl", "w") as f:
        for r in rows:
            f.write(json.dumps(r) + "\n")
    feats = rng.standard_normal((6, 5)).astype(np.float32)
    with h5py.File(f"{d}/feat.h5", "w") as f:
        f["features"] = feats
    out = run("prep", "build", "--images", d, "--manifest", f"{d}/m.jsonl", "--out", f"{d}/x.h5",
              "--size", str(S), "--max-descriptions", str(K), "--vocab-size", "300",
              "--context-length", str(L), "--features", f"{d}/feat.h5", "--seed", "4")
    check("rows         6 " in out, "summary names the rows")

    with h5py.File(f"{d}/x.h5", "r") as f:
        a = f.attrs
        check(s(a["format"]) == "aesnet-dataset", "format attribute")
        check(int(a["format_version"]) == 1, "format_version")
        check((int(a["n"]), int(a["image_size"]), int(a["num_attributes"]), int(a["max_descriptions"]),
               int(a["context_length"])) == (6, S, 2, K, L), "shape attributes")
        check((float(a["score_min"]), float(a["score_max"])) == (1.0, 10.0), "score range defaults to 1..10 with votes")
        check(int(a["truncations"]) == 1, f"one truncated description, got {int(a['truncations'])}")
        img = f["images"]
        check(img.dtype == np.uint8 and img.shape == (6, S, S, 3), "images dtype and shape")
        check(img.chunks == (1, S, S, 3), "one image per chunk")
        for i, name in enumerate("abcdef"):
            ref = reference_resize_crop(srcs[name], S)
            diff = np.abs(img[i].astype(int) - ref.astype(int)).max()
            check(diff <= 1, f"pixels of {name}: max diff {diff} against the reference resize")
        check([s(x) for x in f["attributes"][:]] == ["color", "light"], "attribute names in manifest order")
        cnt = f["text/count"][:]
        check(cnt.dtype == np.uint8 and cnt.tolist() == [[1, 2], [1, 0], [1, 1], [0, 1], [1, 1], [1, 1]], f"counts {cnt.tolist()}")
        strs = f["text/strings"]
        check(strs.shape == (6, 2, K), "strings shape")
        check([s(x) for x in strs[0, 1]] == ["soft light", "a bit dark"], "first K descriptions kept in order")
        check(s(strs[3, 0, 0]) == "" and s(strs[1, 1, 0]) == "", "absent descriptions are empty strings")
        tok = f["text/tokens"]
        check(tok.dtype == np.int32 and tok.shape == (6, 2, K, L), "tokens dtype and shape")
        vocab = f["tokenizer/vocab"][:]
        merges = f["tokenizer/merges"][:]
        check(len(vocab) == int(a["vocab_size"]) == 259 + len(merges), "vocabulary size = 259 + merges")
        check(int(f["tokenizer"].attrs["eot_id"]) == 2 and int(f["tokenizer"].attrs["sot_id"]) == 1, "special ids")
        t = tok[:]
        for i in range(6):
            for k_a in range(2):
                for k in range(K):
                    ids = t[i, k_a, k]
                    if k >= cnt[i, k_a]:
                        check((ids == 0).all(), f"absent slot {i},{k_a},{k} is all pad")
                        continue
                    text = normalise(s(strs[i, k_a, k]))
                    got = decode(vocab, ids)
                    if i == 2 and k_a == 0:
                        check(ids[0] == 1 and ids[-1] == 2 and text.startswith(got) and len(got) < len(text),
                              "a long description is cut with <eot> kept last")
                    else:
                        check(got == text, f"decode {i},{k_a},{k}: {got!r} != {text!r}")
        # Identical descriptions share token ids.
        check((t[0, 0, 0] == t[5, 0, 0]).all(), "same text, same tokens")
        sc = f["scores"][:]
        check(abs(sc[0] - sum((b + 1) * v for b, v in enumerate(votes)) / sum(votes)) < 1e-5, "score is the vote mean")
        check(np.isnan(sc[2]) and sc[1] == 3.5 and sc[3] == 7.25, "scores and NaN for unknown")
        vt = f["votes"][:]
        check(vt.shape == (6, 10) and (vt[0] == votes).all() and np.isnan(vt[1]).all(), "votes stored, NaN rows elsewhere")
        sp = f["split"][:]
        check(sp[0] == 0 and sp[1] == 1 and sp[3] == 2 and sp[5] == 0, "given splits kept")
        check(set(sp.tolist()) <= {0, 1, 2}, "split values")
        check([s(x) for x in f["content/names"][:]] == ["dog", "cat"], "class names in order of appearance")
        check(f["content/labels"][:].tolist() == [0, -1, 1, 0, -1, -1], "labels with -1 for unknown")
        check(np.array_equal(f["content/features"][:], feats), "attached features")
        merges0 = merges

    # Reuse the tokenizer: the same merges and the same ids for the same text.
    with open(f"{d}/m2.jsonl", "w") as f:
        f.write(json.dumps({"image": "c.png", "descriptions": {"color": "warm golden tones", "light": "x"}}) + "\n")
    run("prep", "build", "--images", d, "--manifest", f"{d}/m2.jsonl", "--out", f"{d}/y.h5", "--size", "16",
        "--tokenizer", f"{d}/x.h5", "--quiet")
    with h5py.File(f"{d}/y.h5", "r") as f, h5py.File(f"{d}/x.h5", "r") as g:
        check(np.array_equal(f["tokenizer/merges"][:], merges0), "--tokenizer copies the merges")
        check(int(f.attrs["context_length"]) == L, "--tokenizer takes the context length")
        check(np.array_equal(f["text/tokens"][0, 0, 0], g["text/tokens"][5, 0, 0]), "--tokenizer encodes identically")
        check(f.attrs["score_min"] == 0 and f.attrs["score_max"] == 1, "no scores: unit range")

    # An evaluation-only set: images and scores, no text.
    with open(f"{d}/m3.jsonl", "w") as f:
        for i, name in enumerate(["a.jpg", "c.png", "d.png"]):
            f.write(json.dumps({"image": name, "score": 2.5 + i}) + "\n")
    run("prep", "build", "--images", d, "--manifest", f"{d}/m3.jsonl", "--out", f"{d}/z.h5", "--size", "16", "--quiet")
    with h5py.File(f"{d}/z.h5", "r") as f:
        check("text" not in f and "tokenizer" not in f and int(f.attrs["num_attributes"]) == 0, "no text without descriptions")
        check(f["scores"][:].tolist() == [2.5, 3.5, 4.5], "scores of the evaluation-only set")
        check((float(f.attrs["score_min"]), float(f.attrs["score_max"])) == (2.0, 5.0), "observed range rounded out")
    info = run("prep", "info", f"{d}/z.h5")
    check("attributes   none" in info and "valid        yes" in info, "prep info on an evaluation-only set")

    return finish()


if __name__ == "__main__":
    sys.exit(main())
