#!/usr/bin/env bash
# Scaling study of aesnet training across nodes under Slurm, with
# `aesnet bench` (a few timed steps, no checkpoints).
#
#   bash jobs/scaling.sh submit CONFIG OUTDIR [aesnet bench options, e.g. --set k=v]
#       submits, for each node count N in AESNET_SCALING_NODES (default "1 2 4 8"),
#       a strong-scaling job (global batch fixed at AESNET_SCALING_GLOBAL_BATCH,
#       default 256) and a weak-scaling job (AESNET_SCALING_LOCAL_BATCH images per
#       rank, default 32: global batch = ranks x 32); each writes
#       OUTDIR/MODE-nN.json (and MODE-nN.log). AESNET_SCALING_MODES="strong weak",
#       AESNET_SCALING_STEPS (timed steps, default 20) and AESNET_SCALING_TIME
#       (time limit per job, default 00:30:00) adjust it; the ranks per node and
#       every other site setting come from jobs/site.sh.
#   bash jobs/scaling.sh gather OUTDIR
#       collects OUTDIR/*-n*.json into OUTDIR/scaling.csv (and prints it):
#       mode,nodes,ranks,global_batch,images_per_s,step_ms,efficiency
#       where efficiency = (images/s per rank) / (that of the smallest node
#       count of the same mode): speedup over ideal for strong scaling, and
#       step-time ratio for weak scaling. analysis/ plots that table.
set -euo pipefail

if [ -z "${AESNET_ROOT:-}" ]; then
  if [ -n "${SLURM_JOB_ID:-}" ]; then   # sbatch runs a copy: find the submitted file
    src=$(scontrol show job "$SLURM_JOB_ID" -o | sed -n 's/.* Command=\([^ ]*\).*/\1/p')
    [[ $src == /* ]] || src=${SLURM_SUBMIT_DIR:-.}/$src
  else
    src=$0
  fi
  AESNET_ROOT=$(cd "$(dirname "$src")/.." && pwd)
fi
export AESNET_ROOT
# shellcheck source=jobs/site.sh
source "$AESNET_ROOT/jobs/site.sh"
: "${AESNET_SCALING_NODES:=1 2 4 8}"
: "${AESNET_SCALING_MODES:=strong weak}"
: "${AESNET_SCALING_GLOBAL_BATCH:=256}"
: "${AESNET_SCALING_LOCAL_BATCH:=32}"
: "${AESNET_SCALING_STEPS:=20}"
: "${AESNET_SCALING_TIME:=00:30:00}"
PYTHON=${PYTHON:-python3}

usage() { sed -n '2,/^set -euo/{/^set -euo/d;s/^# \{0,1\}//;p}' "$AESNET_ROOT/jobs/scaling.sh" >&2; exit 2; }
abspath() { echo "$(cd "$(dirname "$1")" && pwd)/$(basename "$1")"; }

submit() {
  [ $# -ge 2 ] || usage
  local cfg out mode n ranks gb
  [ -r "$1" ] || { echo "scaling.sh: cannot read config $1" >&2; exit 2; }
  cfg=$(abspath "$1"); mkdir -p "$2"; out=$(cd "$2" && pwd); shift 2
  local nodes modes
  read -r -a nodes <<< "$AESNET_SCALING_NODES"
  read -r -a modes <<< "$AESNET_SCALING_MODES"
  AESNET_TIME=$AESNET_SCALING_TIME
  for mode in "${modes[@]}"; do
    for n in "${nodes[@]}"; do
      ranks=$(( n * AESNET_TASKS_PER_NODE ))
      case $mode in
        strong) gb=$AESNET_SCALING_GLOBAL_BATCH
                if (( gb % ranks )); then
                  echo "scaling.sh: strong: global batch $gb is not divisible by $ranks ranks ($n nodes); skipped" >&2
                  continue
                fi ;;
        weak) gb=$(( AESNET_SCALING_LOCAL_BATCH * ranks )) ;;
        *) echo "scaling.sh: unknown mode '$mode' in AESNET_SCALING_MODES (strong, weak)" >&2; exit 2 ;;
      esac
      AESNET_OUTPUT=$out/$mode-n$n.log
      aesnet_sbatch_opts "$AESNET_PARTITION"
      aesnet_geometry_opts "$n"
      printf '%-6s %3d node(s) %4d ranks  global batch %6d: ' "$mode" "$n" "$ranks" "$gb"
      sbatch "${SBATCH_OPTS[@]}" --job-name="aesnet-$mode-n$n" "$AESNET_ROOT/jobs/scaling.sh" \
        job "$mode" "$n" "$gb" "$cfg" "$out" "$@"
    done
  done
  echo "when the jobs are done: bash $AESNET_ROOT/jobs/scaling.sh gather $out"
}

job() {   # inside the allocation: MODE NODES GLOBAL_BATCH CONFIG OUTDIR [bench options]
  local mode=$1 n=$2 gb=$3 cfg=$4 out=$5; shift 5
  aesnet_modules
  echo "scaling.sh: job $SLURM_JOB_ID: $mode, $n node(s), ${SLURM_NTASKS:-?} ranks, global batch $gb"
  aesnet_srun "$AESNET_BIN" bench "$cfg" --set "train.global_batch=$gb" --steps "$AESNET_SCALING_STEPS" \
    --json "$out/$mode-n$n.json" "$@"
}

gather() {
  if [ $# -ne 1 ] || [ ! -d "$1" ]; then usage; fi
  "$PYTHON" - "$1" <<'PY'
import csv, glob, json, os, re, sys
out = sys.argv[1]
rows = []
for path in sorted(glob.glob(os.path.join(out, "*-n*.json"))):
    m = re.fullmatch(r"(strong|weak)-n(\d+)\.json", os.path.basename(path))
    if not m:
        continue
    try:
        with open(path) as f:
            j = json.load(f)
        rows.append({"mode": m.group(1), "nodes": int(m.group(2)), "ranks": int(j["ranks"]),
                     "global_batch": int(j["global_batch"]), "images_per_s": float(j["images_per_s"]),
                     "step_ms": float(j["step_ms"])})
    except (OSError, ValueError, KeyError, TypeError) as e:
        sys.exit(f"scaling.sh gather: {path}: {e!r}")
if not rows:
    sys.exit(f"scaling.sh gather: no MODE-nN.json files in {out} (are the jobs done?)")
rows.sort(key=lambda r: (r["mode"] != "strong", r["nodes"]))
base = {}
for r in rows:
    b = base.setdefault(r["mode"], r["images_per_s"] / r["ranks"])
    r["efficiency"] = r["images_per_s"] / r["ranks"] / b
cols = ["mode", "nodes", "ranks", "global_batch", "images_per_s", "step_ms", "efficiency"]
with open(os.path.join(out, "scaling.csv"), "w", newline="") as f:
    w = csv.writer(f)
    w.writerow(cols)
    for r in rows:
        w.writerow([r["mode"], r["nodes"], r["ranks"], r["global_batch"], f'{r["images_per_s"]:.3f}',
                    f'{r["step_ms"]:.3f}', f'{r["efficiency"]:.4f}'])
with open(os.path.join(out, "scaling.csv")) as f:
    sys.stdout.write(f.read())
PY
}

cmd=${1:-}; shift || true
case $cmd in
  submit) submit "$@" ;;
  job) job "$@" ;;
  gather) gather "$@" ;;
  *) usage ;;
esac
