#!/usr/bin/env bash
# The model benchmark: one AesNet pre-training step (forward, both losses,
# backward, clipping, AdamW) in aesnet and in PyTorch on the same machine,
# threads and batch, for the demo model, ResNet-50 and ViT-B/16 at 224.
#   bash jobs/bench-model.sh [MODEL ...]      (default: demo resnet50 vit_b16)
# Environment: OMP_NUM_THREADS (default: all cores), OPENBLAS_CORETYPE (set it
# where OpenBLAS misdetects the CPU, e.g. SkylakeX), BATCH, STEPS.
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
bin=${AESNET_BUILD:-$root/build}/test/bench_model
[ -x "$bin" ] || { echo "build first: bash jobs/build.sh" >&2; exit 1; }
export OMP_NUM_THREADS=${OMP_NUM_THREADS:-$(nproc)}
tmp=$(mktemp -d); trap 'rm -rf "$tmp"' EXIT
models=("$@"); [ ${#models[@]} -gt 0 ] || models=(demo resnet50 vit_b16)
printf '%-10s %6s %12s %12s %8s %10s %8s\n' model batch aesnet_ms torch_ms ratio GFLOP/s peak%
for m in "${models[@]}"; do
  b=${BATCH:-}; [ -n "$b" ] || { [ "$m" = demo ] && b=32 || b=4; }
  s=${STEPS:-3}
  a=$("$bin" "$m" --batch "$b" --steps "$s" --dump-params "$tmp/p.h5" | tee /dev/stderr | grep '^RESULT')
  t=$(/usr/bin/python3 "$root/analysis/bench_model_torch.py" "$tmp/p.h5" "$m" "$b" "$s" | tee /dev/stderr | grep '^RESULT')
  am=$(sed 's/.*step_ms=\([^ ]*\).*/\1/' <<<"$a"); tm=$(sed 's/.*step_ms=\([^ ]*\).*/\1/' <<<"$t")
  gf=$(sed 's/.*gflops=\([^ ]*\).*/\1/' <<<"$a"); pk=$(sed 's/.*peak=\([^ ]*\).*/\1/' <<<"$a")
  awk -v m="$m" -v b="$b" -v am="$am" -v tm="$tm" -v gf="$gf" -v pk="$pk" \
    'BEGIN { printf "%-10s %6d %12.1f %12.1f %8.2f %10.1f %7.0f%%\n", m, b, am, tm, am / tm, gf, 100 * gf / pk }'
done
