#!/usr/bin/env bash
# The ablation of the choices the method leaves open, on the demo data:
# trains the demo model (configs/demo.cfg, 2 ranks) once per variant and
# seed (run.seed: initialisation, data order, augmentation; the data set
# stays the same) and evaluates each with the ridge probe and retrieval,
# against a randomly initialised encoder of every seed; writes
# OUT/table.md (mean and standard deviation over the seeds) and one eval
# JSON per run.
#   bash jobs/ablation.sh [OUT] [STEPS] [SEEDS]   (default demo/ablation, 300, "0 1 2")
#   REUSE=1 bash jobs/ablation.sh ...            keep the runs already evaluated
# Needs a build (bash jobs/build.sh); makes demo/demo.h5 and a one-caption
# twin of it if they are missing. About 2 minutes per run on 2 cores.
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
out=${1:-$root/demo/ablation}; steps=${2:-300}; seeds=${3:-0 1 2}
A=$root/build/aesnet
export OMPI_ALLOW_RUN_AS_ROOT=${OMPI_ALLOW_RUN_AS_ROOT:-1} OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=${OMPI_ALLOW_RUN_AS_ROOT_CONFIRM:-1}
if [ -z "${OPENBLAS_CORETYPE:-}" ] && grep -qw avx512f /proc/cpuinfo; then export OPENBLAS_CORETYPE=SkylakeX; fi
mkdir -p "$out" "$root/demo"
data=$root/demo/demo.h5; cap=$root/demo/demo_caption.h5
[ -f "$data" ] || "$A" prep synth --out "$data" --n 2000 --size 64 --seed 0 --quiet
[ -f "$cap" ] || "$A" prep synth --out "$cap" --n 2000 --size 64 --seed 0 --caption --quiet

# name | data | --set overrides. One choice at a time around a fixed
# baseline (MLP fusion, KL affinity to the stored content features,
# duplicates as positives), spelt out so that the rows do not move when
# configs/demo.cfg's defaults do.
base="loss.affinity=\"kl\" model.fusion=\"mlp\" loss.duplicates=\"positive\" loss.affinity_reference=\"features\""
variants=(
  "baseline (mlp, kl/features, positive)|$data|$base"
  "fusion none|$data|$base model.fusion=\"none\""
  "fusion transformer|$data|$base model.fusion=\"transformer\" model.fusion_width=128 model.fusion_heads=4"
  "affinity off|$data|$base loss.affinity=\"none\""
  "affinity mse (features)|$data|$base loss.affinity=\"mse\""
  "affinity kl, frozen initial encoder|$data|$base loss.affinity_reference=\"frozen\""
  "duplicates negative|$data|$base loss.duplicates=\"negative\""
  "one caption per image|$cap|$base"
)
row() { # name json...: mean (sd) over the seeds' JSON files; $REF: the default's, for
        # the SRCC difference paired by seed
  REF=${REF:-} /usr/bin/python3 - "$@" >> "$out/table.md" <<'PY'
import json, os, statistics, sys
js = [json.load(open(p)) for p in sys.argv[2:]]
ref = [json.load(open(p)) for p in os.environ["REF"].split()] if os.environ.get("REF") else js
def r5(j, k):
    r = j.get("retrieval") or {}
    return 100 * sum(v[k] for v in r.values()) / len(r) if r else float("nan")
cols = [[j["srcc"] for j in js], [j["plcc"] for j in js], [j["acc"] for j in js],
        [j["rmse"] for j in js], [r5(j, "i2t_r5") for j in js], [r5(j, "t2i_r5") for j in js]]
def cell(x, f):
    sd = statistics.stdev(x) if len(x) > 1 else 0.0
    return f"{statistics.mean(x):{f}} ({sd:{f}})"
fmt = [".3f", ".3f", ".3f", ".3f", ".1f", ".1f"]
d = [a["srcc"] - b["srcc"] for a, b in zip(js, ref)] if len(ref) == len(js) else [float("nan")]
dsd = statistics.stdev(d) if len(d) > 1 else 0.0
print(f"| {sys.argv[1]} | " + " | ".join(cell(c, f) for c, f in zip(cols, fmt)) +
      f" | {statistics.mean(d):+.3f} ({dsd:.3f}) |")
PY
}
n=$(wc -w <<<"$seeds")
{ printf 'Mean (standard deviation) over %s seeds (%s), %s steps each; probe and retrieval on the test split.\n\n' "$n" "$seeds" "$steps"
  printf '| variant | SRCC | PLCC | ACC | RMSE | mean i2t R@5 (%%) | mean t2i R@5 (%%) | SRCC - baseline, same seed |\n|---|---|---|---|---|---|---|---|\n'; } > "$out/table.md"
i=0
for v in "${variants[@]}"; do
  IFS='|' read -r name d sets <<<"$v"
  i=$((i + 1)); jsons=()
  echo "== $name"
  for seed in $seeds; do
    run=$out/run${i}_seed$seed
    args=(--set "run.out_dir=\"$run\"" --set "data.train=\"$d\"" --set train.steps=$steps --set train.threads=1
          --set run.seed=$seed)
    for s in $sets; do args+=(--set "$s"); done
    jsons+=("$run.json")
    # REUSE=1 keeps runs already evaluated (an interrupted ablation, or a new table)
    [ "${REUSE:-0}" = 1 ] && [ -f "$run.json" ] && continue
    rm -rf "$run"
    mpirun -q --oversubscribe -np 2 "$A" train "$root/configs/demo.cfg" "${args[@]}" > "$run.log" 2>&1 || { tail -3 "$run.log"; exit 1; }
    # Evaluated on its own data (the caption twin has the same images,
    # scores and splits; its retrieval is over captions).
    "$A" eval --ckpt "$run/checkpoints/latest" --data "$d" --json "$run.json" > /dev/null 2>&1
  done
  [ $i -eq 1 ] && ref="${jsons[*]}"
  REF=$ref row "$name" "${jsons[@]}"
done
jsons=()
for seed in $seeds; do
  jsons+=("$out/random_seed$seed.json")
  [ "${REUSE:-0}" = 1 ] && [ -f "$out/random_seed$seed.json" ] && continue
  sed "s/^\( *seed = \)0;/\1$seed;/" "$root/configs/demo.cfg" > "$out/random_seed$seed.cfg"
  "$A" eval --ckpt random --config "$out/random_seed$seed.cfg" --data "$data" --json "$out/random_seed$seed.json" > /dev/null 2>&1
done
REF=$ref row "random initialisation" "${jsons[@]}"
cat "$out/table.md"
