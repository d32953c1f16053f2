# analysis/plot_scaling.py and plot_embeddings.py: the figures exist, are
# PNGs, and the numbers beside them equal those recomputed here from their
# inputs (the scaling table; the embed file, with numpy).
source "$(dirname "$0")/lib.sh"
"$PYTHON" -c "import matplotlib" 2>/dev/null || { echo "matplotlib missing"; exit 77; }
cd "$WORK"
cat > scaling.csv <<CSV
mode,nodes,ranks,global_batch,images_per_s,step_ms,efficiency
strong,1,4,1024,400.0,2560.0,1.0000
strong,2,8,1024,760.0,1347.4,0.9500
strong,4,16,1024,1400.0,731.4,0.8750
weak,4,16,4096,1520.0,2694.7,0.9500
weak,1,4,1024,400.0,2560.0,1.0000
weak,2,8,2048,780.0,2625.6,0.9750
CSV
if "$PYTHON" "$SRC_DIR/analysis/plot_scaling.py" scaling.csv --out figs > s.log 2>&1; then ok; else fail "plot_scaling: $(cat s.log)"; fi
"$PYTHON" - <<'PY' && ok || fail "scaling numbers"
import csv, json
d = json.load(open("figs/scaling.json"))["series"]
rows = list(csv.DictReader(open("scaling.csv")))
for mode in ("strong", "weak"):
    pts = sorted((int(r["ranks"]), float(r["images_per_s"]), float(r["efficiency"])) for r in rows if r["mode"] == mode)
    assert d[f"{mode}/images_per_s"] == {"ranks": [p[0] for p in pts], "value": [p[1] for p in pts]}, mode
    assert d[f"{mode}/efficiency"]["value"] == [p[2] for p in pts], mode
assert open("figs/scaling.png", "rb").read(8) == b"\x89PNG\r\n\x1a\n"
PY

"$AESNET" prep synth --out d.h5 --n 200 --size 32 --seed 3 --quiet --features 8 || fail synth
cat > t.cfg <<CFG
run = { out_dir = "run"; };
data = { train = "d.h5"; };
model = { resnet_width = 0.125; text_width = 32; text_depth = 1; text_heads = 2; embed_dim = 16; fusion_width = 16; };
CFG
"$AESNET" embed --ckpt random --config t.cfg --data d.h5 --out e.h5 > e.log 2>&1 || fail "embed: $(tail -2 e.log)"
if "$PYTHON" "$SRC_DIR/analysis/plot_embeddings.py" e.h5 --out figs --n 20 > p.log 2>&1; then ok; else fail "plot_embeddings: $(cat p.log)"; fi
"$PYTHON" - <<'PY' && ok || fail "embedding numbers"
import json
import h5py
import numpy as np
f = h5py.File("e.h5", "r")
split, score = f["split"][:], f["score"][:]
test = np.nonzero(split == 2)[0]
sim = json.load(open("figs/similarity.json"))["attributes"]
names = [x.decode() if isinstance(x, bytes) else x for x in f["attributes"][:]]
assert sorted(sim) == sorted(names)
for k, name in enumerate(names):
    rows = sim[name]["rows"]
    want = sorted([int(i) for i in test if f["text_mask"][k, i]][:20], key=lambda i: (score[i], i))
    assert rows == want, name
    m = np.array(sim[name]["matrix"])
    ref = f["image_embeddings"][k][rows].astype(np.float64) @ f["text_embeddings"][k][rows].astype(np.float64).T
    assert np.allclose(m, ref, atol=1e-9), name
p = json.load(open("figs/projection.json"))
assert p["rows"] == test.tolist()
x = f["features"][test].astype(np.float64)
xc = x - x.mean(0)
# Independent: the top two eigenvectors of the covariance.
w, v = np.linalg.eigh(xc.T @ xc)
v = v[:, ::-1][:, :2]
for j in range(2):
    if v[np.argmax(np.abs(v[:, j])), j] < 0:
        v[:, j] *= -1
ref = xc @ v
assert np.allclose(np.array(p["x"]), ref[:, 0], atol=1e-6 * np.abs(ref).max())
assert np.allclose(np.array(p["y"]), ref[:, 1], atol=1e-6 * np.abs(ref).max())
for n in ("similarity", "projection"):
    assert open(f"figs/{n}.png", "rb").read(8) == b"\x89PNG\r\n\x1a\n"
PY
expect_error "plot_embeddings: d.h5: not an aesnet embeddings file" "$PYTHON" "$SRC_DIR/analysis/plot_embeddings.py" d.h5 --out x
finish
