#!/usr/bin/env bash
# The quick start's main job: install what is needed, build, generate the
# embedded demo data set, and pre-train the demo model on it with 2 MPI
# ranks (configs/demo.cfg), writing checkpoints and metrics to demo/run;
# then show how the losses fell, plot the curves, and evaluate the
# pre-trained encoder against a randomly initialised one (linear probe on
# the scores, per-attribute retrieval, EMD fine-tune on the votes).
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
bash "$root/jobs/install-deps.sh"
bash "$root/jobs/build.sh"
export OMPI_ALLOW_RUN_AS_ROOT=1 OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1
# OpenBLAS detects some AVX-512 guests as "Prescott" and runs 3-5x slower;
# aesnet train checks the kernels against a reference before it starts.
if [ -z "${OPENBLAS_CORETYPE:-}" ] && grep -qw avx512f /proc/cpuinfo; then export OPENBLAS_CORETYPE=SkylakeX; fi
cd "$root"
mkdir -p demo
"$root/build/aesnet" prep synth --out demo/demo.h5 --n 2000 --size 64 --seed 0 --force
rm -rf demo/run
mpirun -q --oversubscribe -np 2 "$root/build/aesnet" train configs/demo.cfg --set train.threads=1 \
  | grep -v '^ \|^#\|= {$\|^};$'
awk -F, 'NR == 1 { for (i = 1; i <= NF; i++) h[i] = $i; next }
         $NF != "" { if (!first) { for (i = 1; i <= NF; i++) f[i] = $i; first = 1 } for (i = 1; i <= NF; i++) l[i] = $i }
         END { printf "\nlosses, step %s -> step %s:\n", f[1], l[1];
               for (i = 3; i <= NF; i++) if (h[i] ~ /^(loss|mac|affinity|loss_.*)$/) printf "  %-20s %8.4f -> %8.4f\n", h[i], f[i], l[i];
               printf "checkpoints in demo/run/checkpoints, metrics in demo/run/metrics.csv\n" }' demo/run/metrics.csv
if /usr/bin/python3 -c "import matplotlib" 2>/dev/null; then
  /usr/bin/python3 "$root/analysis/plot_training.py" demo/run --out demo/figures > /dev/null
  echo "training curves: demo/figures/losses.png (and attributes, optimizer, throughput)"
fi
echo
echo "== the pre-trained encoder =="
"$root/build/aesnet" eval --ckpt demo/run/checkpoints/latest --data demo/demo.h5 --finetune --json demo/eval.json 2>/dev/null
echo
echo "== a randomly initialised encoder of the same architecture =="
"$root/build/aesnet" eval --ckpt random --config configs/demo.cfg --data demo/demo.h5 --finetune --json demo/eval_random.json 2>/dev/null
