# aesnet ckpt info/diff/export and the analysis/ scripts on a tiny run:
# each number printed or plotted is checked against an independent h5py /
# csv computation, the export against the PyTorch twin, and bad input gets
# one exact line.
source "$(dirname "$0")/lib.sh"
SRC_DIR=${SRC_DIR:?run through ctest}
if ! "$PYTHON" -c "import numpy, h5py, torch, matplotlib" 2> /dev/null; then
  echo "skipped: needs Python 3 with numpy, h5py, torch and matplotlib (jobs/install-deps.sh --test)"
  exit 77
fi
cd "$WORK"
"$AESNET" prep synth --out d.h5 --n 200 --size 32 --features 8 --seed 3 --quiet || fail synth
cat > t.cfg <<CFG
run = { out_dir = "run"; };
data = { train = "d.h5"; };
model = { resnet_width = 0.125; text_width = 32; text_depth = 1; text_heads = 2; embed_dim = 16;
          fusion_width = 16; };
train = { steps = 6; global_batch = 16; warmup = 0; ckpt_every = 2; keep_last = 10; log_every = 1;
          val_every = 3; threads = 1; };
CFG
"$AESNET" train t.cfg > train.log 2>&1 || fail "training: $(tail -2 train.log)"
C2=run/checkpoints/step_00000002.h5 C6=run/checkpoints/step_00000006.h5

# ---- ckpt info: header lines, and every module's count and norm against h5py.
"$AESNET" ckpt info $C6 > info.txt 2>&1 || fail "ckpt info: $(tail -2 info.txt)"
for want in "step           6" "epoch          0" "world size     1" "cursor         96 samples" \
            "optimizer      AdamW moments stored" "config:" "    resnet_width = 0.125;"; do
  if grep -qxF -- "$want" info.txt; then ok; else fail "ckpt info lacks '$want'"; fi
done
if grep -q "^code version   aesnet " info.txt && grep -q "^libraries      MPI: .*HDF5: " info.txt &&
   grep -q "^created        [0-9-]*T[0-9:]*Z$" info.txt; then ok; else fail "ckpt info: versions"; fi
"$PYTHON" - $C6 info.txt <<'PY' || fail "ckpt info: module counts and norms"
import sys, h5py, numpy as np
ss, cnt, nt = {}, {}, {}
with h5py.File(sys.argv[1], "r") as f:
    def take(name, o):
        if isinstance(o, h5py.Dataset) and int(o.attrs["trainable"]):
            parts = name.split("/")
            for d in (1, 2):
                m = "/".join(parts[:d]) if len(parts) > d else name
                ss[m] = ss.get(m, 0.0) + float(np.sum(o[()].astype(np.float64) ** 2))
                cnt[m] = cnt.get(m, 0) + o.size
                nt[m] = nt.get(m, 0) + 1
    f["model"].visititems(take)
seen = set()
for line in open(sys.argv[2]):
    w = line.split()
    if len(w) == 4 and w[0] in ss:
        m = w[0]; seen.add(m)
        assert int(w[1]) == nt[m] and int(w[2]) == cnt[m], line
        assert abs(float(w[3]) - ss[m] ** 0.5) <= 1e-5 * ss[m] ** 0.5, (line, ss[m] ** 0.5)
need = {"image", "text", "fusion", "head", "image/stem", "image/stage1", "image/stage4", "text/block0"}
assert need <= seen and seen == set(ss), (need - seen, set(ss) - seen)
PY

# ---- ckpt diff: every tensor's relative change against numpy; a file against itself is 0.
"$AESNET" ckpt diff $C2 $C6 > diff.txt 2>&1 || fail "ckpt diff: $(tail -2 diff.txt)"
if grep -qxF "tensors only in A: 0, only in B: 0, of another shape: 0" diff.txt; then ok; else fail "ckpt diff: summary line"; fi
"$PYTHON" - $C2 $C6 diff.txt <<'PY' || fail "ckpt diff: values"
import sys, h5py, numpy as np
def load(p):
    out = {}
    with h5py.File(p, "r") as f:
        f["model"].visititems(lambda n, o: out.__setitem__(n, o[()].astype(np.float64)) if isinstance(o, h5py.Dataset) else None)
    return out
a, b = load(sys.argv[1]), load(sys.argv[2])
rows, mods = {}, {}
for line in open(sys.argv[3]):
    w = line.split()
    if len(w) == 4 and w[0] in a:
        rows[w[0]] = float(w[1])
    if len(w) == 5 and w[0] in ("image", "text", "fusion", "head"):
        mods[w[0]] = float(w[3])
assert set(rows) == set(a), set(a) ^ set(rows)
for n, r in rows.items():
    want = np.linalg.norm(b[n] - a[n]) / np.linalg.norm(a[n])
    assert abs(r - want) <= 1e-5 * want + 1e-12, (n, r, want)
for m, r in mods.items():
    ks = [n for n in a if n.startswith(m + "/")]
    want = np.sqrt(sum(np.sum((b[n] - a[n]) ** 2) for n in ks) / sum(np.sum(a[n] ** 2) for n in ks))
    assert abs(r - want) <= 1e-5 * want, (m, r, want)
assert set(mods) == {"image", "text", "fusion", "head"} and mods["image"] > 0
PY
"$AESNET" ckpt diff $C6 $C6 > same.txt 2>&1 || fail "ckpt diff with itself"
if awk 'NF == 4 && $2 ~ /e/ && $2 + 0 != 0 { bad = 1 } END { exit bad }' same.txt; then ok; else fail "ckpt diff of a file with itself is not 0"; fi

# ---- ckpt export, and the PyTorch twin matches its reference batch.
"$AESNET" ckpt export $C6 --out enc.h5 > export.txt 2>&1 || fail "ckpt export: $(cat export.txt)"
if grep -q "^exported the ResNet image encoder of $C6 (step 6): 100 tensors, .* 64 features at 32 px, to enc.h5$" export.txt; then ok
else fail "ckpt export output: $(cat export.txt)"; fi
no_leftovers .
"$PYTHON" - $C6 enc.h5 <<'PY' || fail "export layout"
import sys, h5py, numpy as np
with h5py.File(sys.argv[1], "r") as c, h5py.File(sys.argv[2], "r") as e:
    at = e.attrs
    assert at["format"] == "aesnet-image-encoder" and at["format_version"] == 1
    assert at["architecture"] == "resnet" and at["resnet_depth"] == 18 and at["resnet_width"] == 0.125
    assert at["input_size"] == 32 and at["feature_width"] == 64
    assert np.allclose(at["mean"], [0.48145466, 0.4578275, 0.40821073]) and np.allclose(at["std"], [0.26862954, 0.26130258, 0.27577711])
    want = {}
    c["model/image"].visititems(lambda n, o: want.__setitem__(n, o[()]) if isinstance(o, h5py.Dataset) else None)
    got = {}
    e["params"].visititems(lambda n, o: got.__setitem__(n, o[()]) if isinstance(o, h5py.Dataset) else None)
    assert set(got) == set(want) and "stem/bn/running_var" in got, set(got) ^ set(want)
    assert all(np.array_equal(got[n], want[n]) for n in got)
    assert e["check/input"].shape == (4, 3, 32, 32) and e["check/features"].shape == (4, 64)
PY
out=$("$PYTHON" "$SRC_DIR/analysis/check_export.py" enc.h5); rc=$?
if [ $rc -eq 0 ] && [[ "$out" == "check_export: OK: resnet encoder, 60 parameters + 40 buffers, 4 x 64 features, relative error "* ]]; then ok
else fail "check_export: rc=$rc: $out"; fi
# A port that computes something else is caught.
cp enc.h5 bad.h5
"$PYTHON" -c "import h5py; f = h5py.File('bad.h5', 'r+'); f['params/stage4/block1/bn2/running_mean'][0] += 1.0"
out=$("$PYTHON" "$SRC_DIR/analysis/check_export.py" bad.h5); rc=$?
if [ $rc -eq 1 ] && [[ "$out" == "check_export: FAIL: "* ]]; then ok; else fail "check_export on a damaged export: rc=$rc: $out"; fi
out=$("$PYTHON" "$SRC_DIR/analysis/check_export.py" d.h5); rc=$?
if [ $rc -eq 1 ] && [ "$(printf '%s\n' "$out" | wc -l)" -eq 1 ]; then ok; else fail "check_export on a data set: rc=$rc: $out"; fi

# ---- bad input: one line, exit 1, nothing written.
expect_error "aesnet: error: none.h5: cannot open: No such file or directory" "$AESNET" ckpt info none.h5
expect_error "aesnet: error: d.h5: attribute format: \"aesnet-dataset\", expected \"aesnet-checkpoint\"" "$AESNET" ckpt info d.h5
expect_error "aesnet: error: d.h5: attribute format: \"aesnet-dataset\", expected \"aesnet-checkpoint\"" "$AESNET" ckpt diff $C2 d.h5
expect_error "aesnet: error: none.h5: cannot open: No such file or directory" "$AESNET" ckpt export none.h5 --out x.h5
expect_error "aesnet: error: enc.h5: exists (use --force to replace it)" "$AESNET" ckpt export $C6 --out enc.h5
expect_error "aesnet: error: ckpt export: --out F.h5 is required" "$AESNET" ckpt export $C6
expect_error "aesnet: error: ckpt diff: needs two checkpoints (aesnet ckpt diff A.h5 B.h5)" "$AESNET" ckpt diff $C2
expect_error "aesnet: error: ckpt: unknown subcommand 'bogus' (info, diff, export; try --help)" "$AESNET" ckpt bogus $C2
printf 'junk' > junk.h5
expect_error "aesnet: error: junk.h5: not an HDF5 file" "$AESNET" ckpt info junk.h5
if [ -e x.h5 ]; then fail "a failed export left x.h5"; else ok; fi
"$AESNET" ckpt export $C2 --out enc.h5 --force > /dev/null 2>&1 &&
  [ "$("$PYTHON" -c "import h5py; print(h5py.File('enc.h5', 'r').attrs['source_step'])")" = 2 ] && ok || fail "export --force"
no_leftovers .

# ---- figures: each a PNG, each side JSON holding exactly the input's numbers.
is_png() { [ "$(head -c 8 "$1" | od -An -tx1 | tr -d ' \n')" = "89504e470d0a1a0a" ]; }
"$PYTHON" "$SRC_DIR/analysis/plot_training.py" run --out figs > plot1.log 2>&1 || fail "plot_training: $(tail -2 plot1.log)"
"$PYTHON" "$SRC_DIR/analysis/plot_checkpoints.py" run --out figs > plot2.log 2>&1 || fail "plot_checkpoints: $(tail -2 plot2.log)"
for n in losses attributes optimizer throughput param_norms image_norms; do
  if [ -s figs/$n.png ] && is_png figs/$n.png && [ -s figs/$n.json ]; then ok; else fail "figure $n missing or not a PNG"; fi
done
"$PYTHON" - run figs <<'PY' || fail "plotted numbers differ from metrics.csv / the checkpoints"
import csv, glob, json, math, os, sys
import h5py, numpy as np
run, figs = sys.argv[1], sys.argv[2]
rows = list(csv.DictReader(open(os.path.join(run, "metrics.csv"))))
assert len(rows) == 6
cols = rows[0].keys()
attrs = [c[5:] for c in cols if c.startswith("loss_")]
assert len(attrs) == 5
expect = {"losses": ["loss", "mac", "affinity", "val_loss"],
          "attributes": ["loss_" + a for a in attrs] + ["scale_" + a for a in attrs],
          "optimizer": ["lr", "grad_norm"],
          "throughput": ["images_per_s", "data_s", "compute_s", "comm_s"]}
for fig, want in expect.items():
    d = json.load(open(os.path.join(figs, fig + ".json")))
    assert d["figure"] == fig + ".png" and list(d["series"]) == want, (fig, list(d["series"]))
    for c in want:
        s = d["series"][c]
        ref = [(int(r["step"]), float(r[c])) for r in rows if r[c] != ""]
        assert s["step"] == [x for x, _ in ref], (fig, c)
        assert s["value"] == [y for _, y in ref], (fig, c)
assert json.load(open(os.path.join(figs, "losses.json")))["series"]["val_loss"]["step"] == [3, 6]
# Norms per module from the checkpoints, computed here.
ckpts = sorted(glob.glob(os.path.join(run, "checkpoints", "step_*.h5")))
steps, norms = [], {}
for p in ckpts:
    with h5py.File(p, "r") as f:
        steps.append(int(f.attrs["step"]))
        ss = {}
        def take(n, o):
            if isinstance(o, h5py.Dataset) and int(o.attrs["trainable"]):
                for m in (n.split("/")[0], "/".join(n.split("/")[:2])):
                    ss[m] = ss.get(m, 0.0) + float(np.sum(o[()].astype(np.float64) ** 2))
        f["model"].visititems(take)
    for m, v in ss.items():
        norms.setdefault(m, []).append(math.sqrt(v))
assert steps == [2, 4, 6]
d = json.load(open(os.path.join(figs, "param_norms.json")))["series"]
assert list(d) == ["image", "text", "fusion", "head"], list(d)
for m, s in d.items():
    assert s["step"] == steps and np.allclose(s["value"], norms[m], rtol=1e-12), m
d = json.load(open(os.path.join(figs, "image_norms.json")))["series"]
assert set(d) == {m for m in norms if m.startswith("image/")} and "image/stage2" in d
for m, s in d.items():
    assert s["step"] == steps and np.allclose(s["value"], norms[m], rtol=1e-12), m
PY
out=$("$PYTHON" "$SRC_DIR/analysis/plot_training.py" nowhere --out figs2 2>&1); rc=$?
if [ $rc -eq 1 ] && [ "$(printf '%s\n' "$out" | wc -l)" -eq 1 ]; then ok; else fail "plot_training on a missing run: rc=$rc: $out"; fi
finish
