#!/usr/bin/env bash
# The ablation of the choices the method leaves open, on the demo data:
# trains the demo model (configs/demo.cfg, 2 ranks) once per variant and
# evaluates each with the ridge probe and retrieval, against a randomly
# initialised encoder; writes OUT/table.md (and one eval JSON per variant).
#   bash jobs/ablation.sh [OUT] [STEPS]      (default demo/ablation, 300)
# Needs a build (bash jobs/build.sh); makes demo/demo.h5 and a one-caption
# twin of it if they are missing. About 2 minutes per variant on 2 cores.
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
out=${1:-$root/demo/ablation}; steps=${2:-300}
A=$root/build/aesnet
export OMPI_ALLOW_RUN_AS_ROOT=${OMPI_ALLOW_RUN_AS_ROOT:-1} OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=${OMPI_ALLOW_RUN_AS_ROOT_CONFIRM:-1}
if [ -z "${OPENBLAS_CORETYPE:-}" ] && grep -qw avx512f /proc/cpuinfo; then export OPENBLAS_CORETYPE=SkylakeX; fi
mkdir -p "$out" "$root/demo"
data=$root/demo/demo.h5; cap=$root/demo/demo_caption.h5
[ -f "$data" ] || "$A" prep synth --out "$data" --n 2000 --size 64 --seed 0 --quiet
[ -f "$cap" ] || "$A" prep synth --out "$cap" --n 2000 --size 64 --seed 0 --caption --quiet

# name | data | --set overrides
variants=(
  "default (mlp, kl/features, positive)|$data|"
  "fusion none|$data|model.fusion=none"
  "fusion transformer|$data|model.fusion=transformer model.fusion_width=128 model.fusion_heads=4"
  "affinity off|$data|loss.affinity=none"
  "affinity mse (features)|$data|loss.affinity=mse"
  "affinity kl, frozen initial encoder|$data|loss.affinity_reference=frozen"
  "duplicates negative|$data|loss.duplicates=negative"
  "one caption per image|$cap|"
)
printf '| variant | SRCC | PLCC | ACC | RMSE | mean i2t R@5 (%%) | mean t2i R@5 (%%) |\n|---|---|---|---|---|---|---|\n' > "$out/table.md"
row() { # name json
  /usr/bin/python3 - "$1" "$2" >> "$out/table.md" <<'PY'
import json, sys
j = json.load(open(sys.argv[2]))
r = j.get("retrieval") or {}
m = lambda k: 100 * sum(v[k] for v in r.values()) / len(r) if r else float("nan")
print(f"| {sys.argv[1]} | {j['srcc']:.3f} | {j['plcc']:.3f} | {j['acc']:.3f} | {j['rmse']:.3f} | {m('i2t_r5'):.1f} | {m('t2i_r5'):.1f} |")
PY
}
i=0
for v in "${variants[@]}"; do
  IFS='|' read -r name d sets <<<"$v"
  i=$((i + 1)); run=$out/run$i
  args=(--set "run.out_dir=\"$run\"" --set "data.train=\"$d\"" --set train.steps=$steps --set train.threads=1)
  for s in $sets; do args+=(--set "$s"); done
  rm -rf "$run"
  echo "== $name"
  mpirun -q --oversubscribe -np 2 "$A" train "$root/configs/demo.cfg" "${args[@]}" > "$run.log" 2>&1 || { tail -3 "$run.log"; exit 1; }
  # Evaluated on its own data (the caption twin has the same images, scores
  # and splits; its retrieval is over captions).
  "$A" eval --ckpt "$run/checkpoints/latest" --data "$d" --json "$run.json" > /dev/null 2>&1
  row "$name" "$run.json"
done
"$A" eval --ckpt random --config "$root/configs/demo.cfg" --data "$data" --json "$out/random.json" > /dev/null 2>&1
row "random initialisation" "$out/random.json"
cat "$out/table.md"
