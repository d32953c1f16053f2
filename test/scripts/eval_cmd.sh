# aesnet eval and aesnet embed on a tiny trained model: the JSON keys and
# ranges, the embed file's documented fields and shapes, the random
# baseline, the few-shot fraction, the EMD fine-tune against its
# predictions, and bad input (one line, exit 1).
source "$(dirname "$0")/lib.sh"
cd "$WORK"
"$AESNET" prep synth --out d.h5 --n 300 --size 32 --features 8 --seed 1 --quiet || fail synth
"$AESNET" prep synth --out v.h5 --n 60 --size 32 --features 8 --seed 2 --vocab-size 600 --quiet || fail synth
cat > t.cfg <<CFG
run = { out_dir = "out"; };
data = { train = "d.h5"; };
model = { resnet_width = 0.125; text_width = 32; text_depth = 1; text_heads = 2; embed_dim = 16;
          fusion_width = 16; };
train = { steps = 5; global_batch = 16; warmup = 0; ckpt_every = 0; val_every = 0; threads = 1; };
CFG
"$AESNET" train t.cfg > train.log 2>&1 || fail "train: $(tail -2 train.log)"
C=out/checkpoints/step_00000005.h5

check_json() { # FILE N_TRAIN_MAX
  "$PYTHON" - "$1" <<'PY'
import json, math, sys
j = json.load(open(sys.argv[1]))
for k in ["srcc", "plcc", "acc", "rmse", "mae", "n_train", "n_val", "n_test", "penalty", "retrieval"]:
    assert k in j, f"missing {k}"
assert -1 <= j["srcc"] <= 1 and -1 <= j["plcc"] <= 1 and 0 <= j["acc"] <= 1, j
assert j["rmse"] >= j["mae"] >= 0 and 1e-4 <= j["penalty"] <= 1e4, j
assert j["n_train"] + j["n_val"] + j["n_test"] <= 300 and min(j["n_val"], j["n_test"]) > 0, j
assert sorted(j["retrieval"]) == sorted(["color", "light", "composition", "focus", "subject"]), j
for a, r in j["retrieval"].items():
    assert sorted(k for k in r if k != "n") == ["i2t_r1", "i2t_r5", "t2i_r1", "t2i_r5"], r
    assert all(0 <= r[k] <= 1 for k in r if k != "n") and r["i2t_r1"] <= r["i2t_r5"], r
    assert r["t2i_r1"] <= r["t2i_r5"] and r["n"] == j["n_test"], r
print(j["n_train"])
PY
}

if "$AESNET" eval --ckpt $C --data d.h5 --json full.json > eval.log 2>&1 && n_full=$(check_json full.json) \
   && grep -q "SRCC" eval.log; then ok; else fail "eval: $(tail -3 eval.log)"; fi
if "$AESNET" eval --ckpt random --config t.cfg --data d.h5 --json rand.json > rand.log 2>&1 \
   && check_json rand.json > /dev/null; then ok; else fail "eval random: $(tail -3 rand.log)"; fi
if "$AESNET" eval --ckpt $C --data d.h5 --train-fraction 0.2 --seed 3 --json few.json > few.log 2>&1 \
   && n_few=$(check_json few.json) && [ "$n_few" -eq $(( (n_full * 2 + 9) / 10 )) ]; then ok
else fail "eval few-shot: n_train ${n_few:-?} of ${n_full:-?}: $(tail -3 few.log)"; fi
# The same seed draws the same rows; the penalty and metrics repeat.
"$AESNET" eval --ckpt $C --data d.h5 --train-fraction 0.2 --seed 3 --json few2.json > /dev/null 2>&1
if cmp -s few.json few2.json; then ok; else fail "eval is not repeatable"; fi

# The EMD fine-tune: every number of the JSON recomputed from the
# --predictions CSV and the data set's votes (numpy, scipy); repeatable.
ft_args="--ckpt $C --data d.h5 --finetune --ft-epochs 2 --ft-batch 16"
if "$AESNET" eval $ft_args --json ft.json --predictions ft.csv > ft.log 2>&1 && "$PYTHON" - <<'PY'
import csv, json, h5py, numpy as np, scipy.stats
j = json.load(open("ft.json")); ft = j["finetune"]
rows = list(csv.DictReader(open("ft.csv")))
d = h5py.File("d.h5", "r")
split, votes, scores = d["split"][:], d["votes"][:].astype(np.float64), d["scores"][:]
r = np.array([int(x["row"]) for x in rows])
assert (split[r] == 2).all() and len(r) == j["n_test"] == ft["n_test"], (len(r), j["n_test"])
assert np.allclose([float(x["score"]) for x in rows], scores[r], atol=1e-6)
p = np.array([[float(x[f"p{k}"]) for k in range(1, 11)] for x in rows])
assert np.allclose(p.sum(1), 1, atol=1e-5) and (p >= 0).all()
q = votes[r] / votes[r].sum(1, keepdims=True)
dc = np.cumsum(p, 1) - np.cumsum(q, 1)
e1, e2 = np.abs(dc).mean(1).mean(), np.sqrt((dc ** 2).mean(1)).mean()
assert abs(e1 - j["emd1"]) < 1e-6 and abs(e2 - j["emd2"]) < 1e-6, (e1, e2, j)
assert ft["emd1"] == j["emd1"] and ft["emd2"] == j["emd2"]
mu = np.array([float(x["finetune"]) for x in rows])
assert np.allclose(mu, p @ np.arange(1, 11), atol=1e-5)
assert abs(scipy.stats.spearmanr(mu, scores[r])[0] - ft["srcc"]) < 1e-6
assert abs(scipy.stats.pearsonr(mu, scores[r])[0] - ft["plcc"]) < 1e-6
probe = np.array([float(x["probe"]) for x in rows])
assert abs(scipy.stats.spearmanr(probe, scores[r])[0] - j["srcc"]) < 1e-6
tr = (split == 0) & np.isfinite(scores)
qm = (votes[tr] / votes[tr].sum(1, keepdims=True)).mean(0)
db = np.cumsum(qm)[None] - np.cumsum(q, 1)
assert abs(np.abs(db).mean(1).mean() - ft["baseline_emd1"]) < 1e-5, ft
assert 1 <= ft["best_epoch"] <= 2 and ft["epochs"] == 2 and ft["batch"] == 16, ft
PY
then ok; else fail "eval --finetune: $(tail -3 ft.log)"; fi
grep -q "^EMD fine-tune: " ft.log && grep -q "^fine-tune epoch 2/2: train EMD " ft.log && ok || fail "fine-tune table"
"$AESNET" eval $ft_args --json ft2.json > /dev/null 2>&1
if cmp -s ft.json ft2.json; then ok; else fail "the fine-tune is not repeatable"; fi
"$PYTHON" -c "
import h5py, numpy as np
with h5py.File('d.h5') as f, h5py.File('nov.h5', 'w') as g:
    for k in f: f.copy(k, g)
    for k, v in f.attrs.items(): g.attrs[k] = v
    del g['votes']
with h5py.File('d.h5') as f, h5py.File('novval.h5', 'w') as g:
    for k in f: f.copy(k, g)
    for k, v in f.attrs.items(): g.attrs[k] = v
    v = g['votes'][:]; v[g['split'][:] == 1] = np.nan; g['votes'][:] = v"
expect_error "aesnet: error: nov.h5: /votes: no vote distributions in this data set (--finetune trains on them; prep build reads them as 10 vote counts in 'score')" "$AESNET" eval --ckpt $C --data nov.h5 --finetune
expect_error "aesnet: error: novval.h5: /votes: no vote distributions in the val split (--finetune trains on train, keeps the best epoch on val, reports on test)" "$AESNET" eval --ckpt $C --data novval.h5 --finetune
expect_error "aesnet: error: --ft-batch: 1 is out of range [2, 4096]" "$AESNET" eval --ckpt $C --data d.h5 --finetune --ft-batch 1

if "$AESNET" embed --ckpt $C --data d.h5 --out e.h5 > embed.log 2>&1 && "$PYTHON" - <<'PY'
import h5py, numpy as np
f, d = h5py.File("e.h5", "r"), h5py.File("d.h5", "r")
assert f.attrs["format"] == "aesnet-embeddings" and f.attrs["step"] == 5
N, Fv = f["features"].shape
assert N == 300 and Fv > 0 and f["image_embeddings"].shape == (5, 300, 16)
assert f["text_embeddings"].shape == (5, 300, 16) and f["text_mask"].shape == (5, 300)
assert [s.decode() if isinstance(s, bytes) else s for s in f["attributes"][:]] == \
       ["color", "light", "composition", "focus", "subject"]
assert np.array_equal(f["split"][:], d["split"][:])
assert np.array_equal(f["score"][:], d["scores"][:], equal_nan=True)
x, y, m = f["image_embeddings"][:], f["text_embeddings"][:], f["text_mask"][:].astype(bool)
assert np.allclose(np.linalg.norm(x, axis=-1), 1, atol=1e-5)
assert np.allclose(np.linalg.norm(y[m], axis=-1), 1, atol=1e-5) and np.isnan(y[~m]).all()
assert np.isfinite(f["features"][:]).all()
PY
then ok; else fail "embed: $(tail -3 embed.log)"; fi
no_leftovers .
expect_error "aesnet: error: e.h5: output exists (use --force to replace it)" "$AESNET" embed --ckpt $C --data d.h5 --out e.h5
if "$AESNET" embed --ckpt $C --data d.h5 --out e.h5 --force > /dev/null 2>&1; then ok; else fail "embed --force"; fi

expect_error "aesnet: error: v.h5: made with another tokenizer than the training data of $C; rebuild it with aesnet prep build --tokenizer TRAIN.h5" "$AESNET" eval --ckpt $C --data v.h5
expect_error "aesnet: error: v.h5: made with another tokenizer than the training data of $C; rebuild it with aesnet prep build --tokenizer TRAIN.h5" "$AESNET" embed --ckpt $C --data v.h5 --out x.h5
expect_error "aesnet: error: eval: which checkpoint? (--ckpt C, or --ckpt random --config CFG)" "$AESNET" eval --data d.h5
expect_error "aesnet: error: eval: which data set? (--data D)" "$AESNET" eval --ckpt $C
expect_error "aesnet: error: --ckpt random needs --config CFG (the architecture to initialise)" "$AESNET" eval --ckpt random --data d.h5
expect_error "aesnet: error: embed: which checkpoint? (--ckpt C)" "$AESNET" embed --data d.h5 --out x.h5
expect_error "aesnet: error: eval: runs on one process, not 2 (start it without mpirun)" mpirun_q -np 2 "$AESNET" eval --ckpt $C --data d.h5
# Not a checkpoint: one line naming the file.
out=$("$AESNET" eval --ckpt d.h5 --data d.h5 2>&1 >/dev/null); rc=$?
if [ $rc -eq 1 ] && [[ "$out" == "aesnet: error: d.h5"* ]] && [ "$(printf '%s\n' "$out" | wc -l)" -eq 1 ]; then ok
else fail "not a checkpoint: rc=$rc: $out"; fi
# No scores in the test split.
cp d.h5 nos.h5
"$PYTHON" -c "
import h5py, numpy as np
with h5py.File('nos.h5', 'r+') as f:
    s = f['scores'][:]; s[f['split'][:] == 2] = np.nan; f['scores'][:] = s"
expect_error "aesnet: error: nos.h5: /meta/score: no scores in the test split (eval fits on train, picks the penalty on val and reports on test)" "$AESNET" eval --ckpt $C --data nos.h5
[ -e x.h5 ] && fail "a failed embed left x.h5" || ok
no_leftovers .
finish
