#!/usr/bin/env bash
# Weak-scaling benchmark of aesnet train on one machine: the same local
# batch per rank on W = 1, 2, 4 ranks (global batch = W x local), the step
# broken down by phase, and the efficiency images/s(W) / (W x images/s(1)).
#   bash jobs/bench-train.sh [CONFIG] [LOCAL_BATCH] [RANKS...]
# (default: configs/demo.cfg, 32, 1 2 4). Each rank gets cores/W threads
# (at least 1): with more ranks than cores the ranks share cores, and the
# efficiency shows it. JSON per run goes to bench-train-W.json in $OUT
# (default: a temporary folder). jobs/scaling.sh does the same across nodes.
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
cfg=${1:-$root/configs/demo.cfg}; b=${2:-32}; shift $(( $# > 2 ? 2 : $# )) || true
ranks=("$@"); [ ${#ranks[@]} -gt 0 ] || ranks=(1 2 4)
out=${OUT:-$(mktemp -d)}
export OMPI_ALLOW_RUN_AS_ROOT=${OMPI_ALLOW_RUN_AS_ROOT:-1} OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=${OMPI_ALLOW_RUN_AS_ROOT_CONFIRM:-1}
cores=$(nproc)
base=""
printf '%5s %8s %8s %10s %10s %8s   %s\n' ranks threads batch step_ms images/s eff breakdown_ms
for w in "${ranks[@]}"; do
  th=$(( cores / w )); [ $th -ge 1 ] || th=1
  # Open MPI binds each of few ranks to one core: give multi-threaded ranks
  # their cores (--map-by slot:PE=N does the same on a real node).
  bind=(); [ "$th" -gt 1 ] && bind=(--bind-to none)
  mpirun -q --oversubscribe "${bind[@]}" -np "$w" "$root/build/aesnet" bench "$cfg" --set train.global_batch=$(( b * w )) \
    --set train.threads=$th --json "$out/bench-train-$w.json" > "$out/bench-train-$w.log"
  /usr/bin/python3 - "$out/bench-train-$w.json" "$base" <<'PY'
import json, sys
j = json.load(open(sys.argv[1]))
base = float(sys.argv[2]) if sys.argv[2] else j["images_per_s"] / j["ranks"]
eff = j["images_per_s"] / (j["ranks"] * base)
bd = " ".join(f"{k}={v:.1f}" for k, v in j["breakdown_ms"].items())
print(f'{j["ranks"]:5d} {j["threads"]:8d} {j["global_batch"]:8d} {j["step_ms"]:10.1f} {j["images_per_s"]:10.1f} {100 * eff:7.0f}%   {bd}')
PY
  [ -n "$base" ] || base=$(/usr/bin/python3 -c "import json;j=json.load(open('$out/bench-train-$w.json'));print(j['images_per_s']/j['ranks'])")
done
echo "JSON: $out/bench-train-*.json"
