#!/usr/bin/env bash
# The quick start's main job: install what is needed, build, generate the
# embedded demo data set and show its summary, then read it the way a
# 2-rank training job does and report the reader's throughput.
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
bash "$root/jobs/install-deps.sh"
bash "$root/jobs/build.sh"
export OMPI_ALLOW_RUN_AS_ROOT=1 OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1
mkdir -p "$root/demo"
"$root/build/aesnet" prep synth --out "$root/demo/demo.h5" --n 2000 --size 64 --seed 0 --force
mpirun -q --oversubscribe -np 2 "$root/build/aesnet" prep bench "$root/demo/demo.h5" --batch 64 --steps 20
