# The quick start's claim, checked: on the demo data (seed 0) the demo
# model pre-trained as jobs/demo.sh does (300 steps, 2 ranks) beats a
# randomly initialised encoder of the same architecture by a clear margin:
# ridge-probe SRCC on test by at least 0.10 (measured: 0.472 against
# 0.350), and after the EMD fine-tune with its defaults, test EMD r=2 lower
# by at least 0.005 (measured: 0.128 against 0.140). The fine-tunes must
# also beat predicting the train rows' mean vote distribution (0.152): the
# pre-trained one by 0.01, the random one by 0.005. Both are noisy: at an
# earlier commit, over fine-tune seeds 0-2, the pre-trained encoder reached
# 0.127-0.134 and the random one 0.133-0.144 (0.009-0.019 under the mean
# distribution), a change of summation order in the convolutions alone
# moved the random one by 0.005, and the probe SRCC of the pre-trained
# encoder has moved between 0.47 and 0.51 with such changes (the ablation
# in the README: 0.473 +- 0.035 over training seeds). Labelled "slow":
# about 3 minutes on 2 cores, so the sanitizer pass of test/run.sh leaves
# it out.
source "$(dirname "$0")/lib.sh"
SRC_DIR=${SRC_DIR:?run through ctest}
if [ -z "${OPENBLAS_CORETYPE:-}" ] && grep -qw avx512f /proc/cpuinfo; then export OPENBLAS_CORETYPE=SkylakeX; fi
cd "$WORK"
"$AESNET" prep synth --out demo.h5 --n 2000 --size 64 --seed 0 --quiet || fail synth
mpirun_q -np 2 "$AESNET" train "$SRC_DIR/configs/demo.cfg" --set train.threads=1 \
  --set 'run.out_dir="run"' --set 'data.train="demo.h5"' > train.log 2>&1 || fail "train: $(tail -2 train.log)"
"$AESNET" eval --ckpt run/checkpoints/latest --data demo.h5 --finetune --json pre.json > pre.log 2>&1 \
  || fail "eval: $(tail -2 pre.log)"
"$AESNET" eval --ckpt random --config "$SRC_DIR/configs/demo.cfg" --data demo.h5 --finetune \
  --json rand.json > rand.log 2>&1 || fail "eval random: $(tail -2 rand.log)"
if "$PYTHON" - <<'PY'
import json
p, r = json.load(open("pre.json")), json.load(open("rand.json"))
print(f"SRCC pre-trained {p['srcc']:.4f}, random {r['srcc']:.4f}; "
      f"EMD2 pre-trained {p['emd2']:.4f}, random {r['emd2']:.4f}")
assert p["srcc"] - r["srcc"] >= 0.10, "probe SRCC margin"
assert r["emd2"] - p["emd2"] >= 0.005, "fine-tune EMD margin"
for j, margin in ((p, 0.01), (r, 0.005)):
    f = j["finetune"]
    assert f["baseline_emd2"] - f["emd2"] >= margin, ("fine-tune against the mean distribution", f)
PY
then ok; else fail "pre-training does not beat random initialisation by the stated margin"; fi
finish
