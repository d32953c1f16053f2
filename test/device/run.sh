#!/usr/bin/env bash
# The GPU checks of issue 6, as one script for a machine with an NVIDIA
# GPU (run from the repository root after `bash jobs/device-bundle.sh`
# here, with .device carried). Today: every layer twin and whole encoders
# against the CPU reference (test_gpu_layers, fp32 with TF32 off, 1e-4).
# Still to come: a whole training step in fp32 and bf16, two ranks on one
# GPU, and the ResNet-50 / ViT-B/16 benchmarks against PyTorch.
# Logs go to $OUT (or /tmp/aesnet-device). Exit 0 only if every check passed.
set -uo pipefail
out=${OUT:-/tmp/aesnet-device}; mkdir -p "$out"
bash test/device/probe.sh > /dev/null 2>&1
cp /tmp/probe.txt "$out/" 2>/dev/null || true
source test/device/env.sh
fail=0
echo "== GPU layer and encoder checks"
timeout 180 "$AESNET_BUNDLE/bin/test_gpu_layers" 2>&1 | tee "$out/gpu_layers.log"
rc=${PIPESTATUS[0]}
[ "$rc" -eq 0 ] || { echo "test_gpu_layers: exit $rc"; fail=1; }
"$AESNET_BUNDLE/bin/aesnet" --version 2>&1 | tee "$out/version.txt" | grep -i cuda
exit $fail
