# The quick start's claim, checked: on the demo data (seed 0) the demo
# model pre-trained as jobs/demo.sh does (300 steps, 2 ranks) beats a
# randomly initialised encoder of the same architecture:
# - retrieval: recall@5 averaged over attributes and both directions at
#   least 3x the random encoder's and at least 0.05 (measured: 0.081
#   against 0.022; chance is 5/209 = 0.024; 0.081-0.091 over training
#   seeds and versions of the code);
# - ridge probe SRCC on test higher by at least 0.05 (measured: 0.493
#   against 0.350);
# - EMD fine-tune with its defaults, fine-tune seeds 0 and 1 (the data
#   order and head initialisation of the fine-tune): mean test EMD r=2
#   lower by at least 0.005 (measured: 0.1307 against 0.1440); every
#   pre-trained fine-tune below predicting the train rows' mean vote
#   distribution (0.1523) by 0.01 (measured 0.132, 0.129), and the better
#   random one by 0.005 (0.151, 0.137), so that the baseline fine-tune is
#   seen to learn.
# The probe and the fine-tune are noisy after 300 steps, and rounding
# alone moves them: over training seeds 0-2 the probe SRCC was 0.472,
# 0.443, 0.471, and versions of the code that only summed in another
# order gave seed 0 anywhere from 0.413 to 0.511. A single fine-tune of the
# random encoder is not enough: with the direct stem convolution (another
# summation order) its seed-0 run went from EMD2 0.140 to 0.151, barely
# below the mean distribution, while seeds 1-3 gave 0.137-0.139. The
# thresholds sit below every value seen; retrieval is the robust signal.
# Labelled "slow": about 3.5 minutes on 2 cores, so the sanitizer pass of
# test/run.sh leaves it out.
source "$(dirname "$0")/lib.sh"
SRC_DIR=${SRC_DIR:?run through ctest}
if [ -z "${OPENBLAS_CORETYPE:-}" ] && grep -qw avx512f /proc/cpuinfo; then export OPENBLAS_CORETYPE=SkylakeX; fi
cd "$WORK"
"$AESNET" prep synth --out demo.h5 --n 2000 --size 64 --seed 0 --quiet || fail synth
mpirun_q -np 2 "$AESNET" train "$SRC_DIR/configs/demo.cfg" --set train.threads=1 \
  --set 'run.out_dir="run"' --set 'data.train="demo.h5"' > train.log 2>&1 || fail "train: $(tail -2 train.log)"
for seed in 0 1; do
  "$AESNET" eval --ckpt run/checkpoints/latest --data demo.h5 --finetune --seed $seed \
    --json pre$seed.json > pre$seed.log 2>&1 || fail "eval: $(tail -2 pre$seed.log)"
  "$AESNET" eval --ckpt random --config "$SRC_DIR/configs/demo.cfg" --data demo.h5 --finetune \
    --seed $seed --json rand$seed.json > rand$seed.log 2>&1 || fail "eval random: $(tail -2 rand$seed.log)"
done
if "$PYTHON" - <<'PY'
import json
p, r = json.load(open("pre0.json")), json.load(open("rand0.json"))
pf = [json.load(open(f"pre{k}.json"))["finetune"] for k in (0, 1)]
rf = [json.load(open(f"rand{k}.json"))["finetune"] for k in (0, 1)]
def r5(j):
    a = j["retrieval"].values()
    return sum((v["i2t_r5"] + v["t2i_r5"]) / 2 for v in a) / len(a)
pm, rm = sum(f["emd2"] for f in pf) / 2, sum(f["emd2"] for f in rf) / 2
print(f"R@5 pre-trained {r5(p):.4f}, random {r5(r):.4f}; "
      f"SRCC pre-trained {p['srcc']:.4f}, random {r['srcc']:.4f}; "
      f"fine-tune EMD2 pre-trained {[round(f['emd2'], 4) for f in pf]} (mean {pm:.4f}), "
      f"random {[round(f['emd2'], 4) for f in rf]} (mean {rm:.4f}), "
      f"mean distribution {pf[0]['baseline_emd2']:.4f}")
assert r5(p) >= 3 * r5(r) and r5(p) >= 0.05, "retrieval margin"
assert p["srcc"] - r["srcc"] >= 0.05, "probe SRCC margin"
assert rm - pm >= 0.005, "fine-tune EMD margin (mean of two fine-tune seeds)"
for f in pf:
    assert f["baseline_emd2"] - f["emd2"] >= 0.01, ("pre-trained fine-tune against the mean distribution", f)
best = min(rf, key=lambda f: f["emd2"])
assert best["baseline_emd2"] - best["emd2"] >= 0.005, ("random fine-tune against the mean distribution", best)
PY
then ok; else fail "pre-training does not beat random initialisation by the stated margin"; fi
finish
