# shellcheck shell=bash
# The site's Slurm settings, in one place: every jobs/ script sources this
# file (after setting AESNET_ROOT to the repository root). Edit the defaults
# below for your cluster, or override any of them from the environment for
# one submission, e.g.
#   AESNET_PARTITION=debug AESNET_NODES=2 bash jobs/train.sbatch configs/big.cfg
#
# Ranks: one per GPU on GPU nodes (AESNET_GPUS_PER_NODE > 0). On CPU-only
# nodes (AESNET_GPUS_PER_NODE=0) one rank per node by default; for one rank
# per socket set AESNET_TASKS_PER_NODE to the sockets per node and
# AESNET_CPU_BIND=sockets. Each rank runs AESNET_CPUS_PER_TASK OpenMP threads
# (OMP_NUM_THREADS; empty: Slurm's and OpenMP's defaults).

# Where jobs run and who pays.
: "${AESNET_PARTITION:=gpu}"            # sbatch --partition
: "${AESNET_PREP_PARTITION:=$AESNET_PARTITION}"  # for prep.sbatch (CPU work; a CPU partition is fine)
: "${AESNET_ACCOUNT:=}"                 # sbatch --account (empty: the user's default)
: "${AESNET_QOS:=}"                     # sbatch --qos (empty: the default)
: "${AESNET_TIME:=24:00:00}"            # time limit per job; train.sbatch requeues itself past it
: "${AESNET_SBATCH_EXTRA:=}"            # more sbatch options, split on spaces (e.g. "--exclusive --constraint=a100")

# Node geometry.
: "${AESNET_NODES:=1}"                  # default node count of train.sbatch (jobs/train.sbatch -N overrides)
: "${AESNET_GPUS_PER_NODE:=4}"          # 0 on CPU-only sites
if [ "$AESNET_GPUS_PER_NODE" -gt 0 ]; then
  : "${AESNET_TASKS_PER_NODE:=$AESNET_GPUS_PER_NODE}"  # one rank per GPU
else
  : "${AESNET_TASKS_PER_NODE:=1}"       # one rank per node (or per socket, see above)
fi
: "${AESNET_CPUS_PER_TASK:=}"           # cores per rank (empty: Slurm's default)
: "${AESNET_CPU_BIND:=}"                # srun --cpu-bind (e.g. sockets, cores; empty: Slurm's default)

# Launching.
: "${AESNET_MPI:=pmix}"                 # srun --mpi plugin (Debian's and most Open MPI builds: pmix)
: "${AESNET_SIGNAL:=USR1@120}"          # sent to every rank 120 s before the time limit: checkpoint and requeue
: "${AESNET_MAX_RESTARTS:=100}"         # stop requeueing a training job after this many restarts
: "${AESNET_MODULES:=}"                 # environment modules to load, space-separated (e.g. "openmpi/4.1 hdf5/1.10-mpi cuda/12.4")

# Paths.
: "${AESNET_ROOT:?set AESNET_ROOT to the aesnet checkout before sourcing jobs/site.sh}"
: "${AESNET_BIN:=$AESNET_ROOT/build/aesnet}"   # the aesnet executable
: "${AESNET_OUTPUT:=%x-%j.out}"         # job stdout+stderr (sbatch --output; relative to the submit directory)

# OpenBLAS detects some AVX-512 guests as "Prescott" and runs 3-5x slower.
if [ -z "${OPENBLAS_CORETYPE:-}" ] && grep -qw avx512f /proc/cpuinfo 2>/dev/null; then
  export OPENBLAS_CORETYPE=SkylakeX
fi

# aesnet_modules: load AESNET_MODULES where the site has environment modules.
aesnet_modules() {
  [ -n "$AESNET_MODULES" ] || return 0
  if ! command -v module >/dev/null 2>&1 && [ -n "${MODULESHOME:-}" ] && [ -r "$MODULESHOME/init/bash" ]; then
    # shellcheck disable=SC1091
    source "$MODULESHOME/init/bash"
  fi
  # shellcheck disable=SC2086
  module load $AESNET_MODULES
}

# aesnet_sbatch_opts PARTITION: fills the array SBATCH_OPTS with the options
# every submission shares (partition, account, qos, time, output, extras).
aesnet_sbatch_opts() {
  SBATCH_OPTS=(--partition="$1" --time="$AESNET_TIME" --output="$AESNET_OUTPUT"
               --export="ALL,AESNET_ROOT=$AESNET_ROOT")
  [ -z "$AESNET_ACCOUNT" ] || SBATCH_OPTS+=(--account="$AESNET_ACCOUNT")
  [ -z "$AESNET_QOS" ] || SBATCH_OPTS+=(--qos="$AESNET_QOS")
  local extra
  read -r -a extra <<< "$AESNET_SBATCH_EXTRA"
  [ ${#extra[@]} -eq 0 ] || SBATCH_OPTS+=("${extra[@]}")
}

# aesnet_geometry_opts NODES: appends to SBATCH_OPTS the node count and the
# ranks, GPUs and cores per node of a multi-rank job.
aesnet_geometry_opts() {
  SBATCH_OPTS+=(--nodes="$1" --ntasks-per-node="$AESNET_TASKS_PER_NODE")
  [ "$AESNET_GPUS_PER_NODE" -eq 0 ] || SBATCH_OPTS+=(--gpus-per-node="$AESNET_GPUS_PER_NODE")
  [ -z "$AESNET_CPUS_PER_TASK" ] || SBATCH_OPTS+=(--cpus-per-task="$AESNET_CPUS_PER_TASK")
}

# aesnet_srun ARGS...: srun with the site's MPI plugin and binding, and one
# OpenMP thread per core given to the rank; inside a job only.
aesnet_srun() {
  local opts=(--mpi="$AESNET_MPI")
  [ -z "$AESNET_CPU_BIND" ] || opts+=(--cpu-bind="$AESNET_CPU_BIND")
  if [ -n "${SLURM_CPUS_PER_TASK:-}" ]; then
    export OMP_NUM_THREADS=$SLURM_CPUS_PER_TASK
    # Slurm >= 22.05 no longer passes --cpus-per-task from sbatch to srun.
    opts+=(--cpus-per-task="$SLURM_CPUS_PER_TASK")
  fi
  srun "${opts[@]}" "$@"
}
