#!/usr/bin/env bash
# The GPU checks of issue 6, as one script for a machine with an NVIDIA
# GPU (run from the repository root after `bash jobs/device-bundle.sh`
# here, with .device carried; a few minutes):
#  1. every layer twin, both losses, AdamW, whole encoders and the whole
#     model against the CPU reference (test_gpu_layers: fp32, TF32 off,
#     1e-4);
#  2. training: 3 steps of a small model on the CPU and on the GPU (fp32):
#     every logged loss and gradient norm to 1e-4, every parameter of the
#     final checkpoint to 1e-3; TF32 within 2e-2 and bf16 within 5e-2 of
#     fp32; 2 ranks on the one GPU against 1 rank to 1e-4 (W ranks
#     compute what 1 rank does);
#  3. benchmarks (figures, no pass/fail): a ResNet-50 and a ViT-B/16
#     pre-training step at 224 (batch $BENCH_BATCH, default 64; 5 text
#     descriptions per image) in bf16, images/s and model FLOP utilisation
#     against the measured bf16 GEMM peak, next to the same model in
#     PyTorch eager with bf16 autocast on the same GPU, as a ratio
#     (BENCH=0 leaves them out).
# The timeouts add up to 10 minutes at worst, the device tool's limit.
# Logs go to $OUT (or /tmp/aesnet-device). Exit 0 only if every check
# passed.
set -uo pipefail
out=${OUT:-/tmp/aesnet-device}; mkdir -p "$out"
OUT=$out bash test/device/probe.sh > /dev/null 2>&1
source test/device/env.sh
export PATH="$AESNET_BUNDLE/bin:$PATH"
fail=0
A=$AESNET_BUNDLE/bin/aesnet
"$A" --version > "$out/version.txt" 2>&1; grep -i cuda "$out/version.txt"

echo "== 1. layers, losses, encoders, model: GPU against CPU"
timeout 120 "$AESNET_BUNDLE/bin/test_gpu_layers" > "$out/gpu_layers.log" 2>&1
rc=$?
tail -4 "$out/gpu_layers.log"
[ "$rc" -eq 0 ] || { echo "FAIL: test_gpu_layers exit $rc"; grep -i "fail" "$out/gpu_layers.log" | head -20; fail=1; }

echo "== 2. training steps: CPU, GPU fp32, tf32 and bf16, 2 ranks on one GPU"
w=$(mktemp -d)
"$A" prep synth --out "$w/d.h5" --n 200 --size 32 --seed 5 --quiet || fail=1
cat > "$w/t.cfg" <<CFG
data = { train = "$w/d.h5"; };
model = { resnet_width = 0.125; text_width = 32; text_depth = 1; text_heads = 2; embed_dim = 16;
          fusion_width = 16; };
train = { steps = 3; global_batch = 32; warmup = 0; ckpt_every = 3; val_every = 0; threads = 4;
          log_every = 1; };
CFG
run() { # NAME [mpirun -np N] ... -- extra --set
  local name=$1; shift
  timeout 45 "$@" --set "run.out_dir=\"$w/$name\"" > "$out/train_$name.log" 2>&1 \
    || { echo "FAIL: training $name: $(tail -2 "$out/train_$name.log")"; fail=1; }
}
run cpu "$A" train "$w/t.cfg"
run gpu "$A" train "$w/t.cfg" --set 'train.device="cuda"'
run tf32 "$A" train "$w/t.cfg" --set 'train.device="cuda"' --set 'train.precision="tf32"'
run bf16 "$A" train "$w/t.cfg" --set 'train.device="cuda"' --set 'train.precision="bf16"'
run gpu2 mpirun -q --oversubscribe -np 2 "$A" train "$w/t.cfg" --set 'train.device="cuda"'
python3 - "$w" <<'PY' 2>&1 | tee "$out/train_compare.txt"
import csv, sys, h5py, numpy as np
w = sys.argv[1]
def rows(name):
    return [r for r in csv.DictReader(open(f"{w}/{name}/metrics.csv"))]
def rel(a, b):
    a, b = np.asarray(a, float), np.asarray(b, float)
    return float(np.linalg.norm(a - b) / max(np.linalg.norm(b), 1e-30))
def ck(name):
    with h5py.File(f"{w}/{name}/checkpoints/step_00000003.h5", "r") as f:
        out = {}
        f["model"].visititems(lambda n, o: out.__setitem__(n, o[()]) if isinstance(o, h5py.Dataset) else None)
        return out
bad = 0
def check(ok, what):
    global bad
    print(("ok   " if ok else "FAIL ") + what)
    bad += not ok
cpu, gpu, tf, bf, g2 = rows("cpu"), rows("gpu"), rows("tf32"), rows("bf16"), rows("gpu2")
for key in ["loss", "mac", "affinity", "grad_norm"]:
    e = rel([float(r[key]) for r in gpu], [float(r[key]) for r in cpu])
    check(e <= 1e-4, f"GPU fp32 {key} per step vs CPU: {e:.2e} (<= 1e-4)")
    e = rel([float(r[key]) for r in tf], [float(r[key]) for r in gpu])
    check(e <= 2e-2, f"GPU tf32 {key} per step vs fp32: {e:.2e} (<= 2e-2)")
    e = rel([float(r[key]) for r in bf], [float(r[key]) for r in gpu])
    check(e <= 5e-2, f"GPU bf16 {key} per step vs fp32: {e:.2e} (<= 5e-2)")
    e = rel([float(r[key]) for r in g2], [float(r[key]) for r in gpu])
    check(e <= 1e-4, f"2 ranks on one GPU {key} vs 1 rank: {e:.2e} (<= 1e-4)")
pc, pg = ck("cpu"), ck("gpu")
worst = max((rel(pg[k], pc[k]), k) for k in pc)
check(worst[0] <= 1e-3, f"parameters after 3 steps, GPU vs CPU: worst {worst[0]:.2e} ({worst[1]}) (<= 1e-3)")
sys.exit(1 if bad else 0)
PY
[ "${PIPESTATUS[0]}" -eq 0 ] || fail=1

echo "== 3. benchmarks: aesnet bf16 against PyTorch eager bf16 autocast"
bb=${BENCH_BATCH:-64}
[ "${BENCH:-1}" = 0 ] || for model in resnet50 vit_b16; do
  timeout 75 "$AESNET_BUNDLE/bin/bench_model" $model --batch "$bb" --steps 5 --device cuda \
    --precision bf16 --dump-params "$w/p.h5" > "$out/bench_$model.log" 2>&1
  a=$(grep '^RESULT' "$out/bench_$model.log")
  timeout 75 python3 analysis/bench_model_torch.py "$w/p.h5" $model "$bb" 5 cuda bf16 \
    > "$out/bench_${model}_torch.log" 2>&1
  t=$(grep '^RESULT' "$out/bench_${model}_torch.log")
  if [ -z "$a" ] || [ -z "$t" ]; then
    echo "$model: benchmark incomplete: $(tail -1 "$out/bench_$model.log") / $(tail -1 "$out/bench_${model}_torch.log")"
    continue
  fi
  ai=$(sed 's/.*images_per_s=\([^ ]*\).*/\1/' <<<"$a"); ti=$(sed 's/.*images_per_s=\([^ ]*\).*/\1/' <<<"$t")
  tf=$(sed 's/.* tflops=\([^ ]*\).*/\1/' <<<"$a"); pk=$(sed 's/.*peak_tflops=\([^ ]*\).*/\1/' <<<"$a")
  awk -v m=$model -v b="$bb" -v ai="$ai" -v ti="$ti" -v tf="$tf" -v pk="$pk" 'BEGIN {
    printf "%-9s batch %d: aesnet %.1f images/s, PyTorch %.1f images/s, ratio %.2f; %.1f TFLOP/s = %.1f%% of %.0f TFLOP/s bf16\n",
      m, b, ai, ti, ai / ti, tf, 100 * tf / pk, pk }' | tee -a "$out/bench_summary.txt"
done
rm -rf "$w"
echo "== $( [ $fail -eq 0 ] && echo all checks passed || echo SOME CHECKS FAILED )"
exit $fail
