# jobs/ under a real Slurm: starts munged, slurmctld and slurmd (Debian's
# slurm-wlm) as a one-node cluster in a temporary folder, builds the data set
# with `sbatch jobs/prep.sbatch`, submits a small pre-training with
# jobs/train.sbatch (2 ranks, srun --mpi=pmix), sends it SIGUSR1 as Slurm
# does before the time limit, and checks that it checkpoints at the step it
# stopped at, requeues itself, resumes from that checkpoint and finishes with
# a final checkpoint; then runs a one-node scaling study and gathers it.
# Skipped (77) where Slurm or munge is not installed or the daemons cannot
# run here (their log line says why).
source "$(dirname "$0")/lib.sh"
T0=$(date +%s)
for p in munged slurmctld slurmd sbatch scontrol; do
  command -v "$p" >/dev/null || { echo "SKIP: $p not installed (bash jobs/install-deps.sh --test)"; exit 77; }
done
[ "$(id -u)" -eq 0 ] || { echo "SKIP: the test daemons run as root"; exit 77; }

# Daemon state in a short path: unix socket names are limited to 108 bytes.
D=$(mktemp -d /tmp/aesnet-slurm.XXXXXX)
PIDS=()
cleanup() {
  local p
  if [ -n "${SLURM_CONF:-}" ] && kill -0 "${PIDS[1]:-0}" 2>/dev/null; then
    # End this cluster's jobs first, so that no rank outlives the daemons.
    scancel -p aesnettest 2>/dev/null
    for _ in $(seq 1 50); do squeue -h 2>/dev/null | grep -q . || break; sleep 0.2; done
  fi
  for p in "${PIDS[@]}"; do kill "$p" 2>/dev/null; done
  sleep 0.5
  for p in "${PIDS[@]}"; do kill -9 "$p" 2>/dev/null; done
  rm -rf "$D" "$WORK"
}
trap cleanup EXIT

skip_with_log() {  # skip_with_log NAME LOG: the daemon could not start here
  echo "SKIP: $1 did not start in this environment:"
  grep -iE 'error|fatal' "$2" 2>/dev/null | tail -n 3
  exit 77
}

# munge with its own key and socket.
dd if=/dev/urandom of="$D/munge.key" bs=1024 count=1 2>/dev/null
chmod 400 "$D/munge.key"
munged --force --key-file="$D/munge.key" --socket="$D/munge.sock" --pid-file="$D/munged.pid" \
  --log-file="$D/munged.log" --seed-file="$D/munged.seed" --foreground > /dev/null 2>&1 &
PIDS+=($!)
for _ in $(seq 1 50); do [ -S "$D/munge.sock" ] && break; sleep 0.1; done
[ -S "$D/munge.sock" ] || skip_with_log munged "$D/munged.log"

# Two free ports (a concurrent run may hold the defaults).
read -r P1 P2 < <("$PYTHON" -c '
import socket
s = [socket.socket() for _ in range(2)]
for x in s: x.bind(("127.0.0.1", 0))
print(*[x.getsockname()[1] for x in s])')
# The node as slurmd sees it; at least 2 CPUs so that 2 ranks fit (config_overrides).
node=$(slurmd -C | head -n 1 | sed 's/^NodeName=[^ ]*//')
cpus=$(sed -n 's/.*CPUs=\([0-9]*\).*/\1/p' <<< "$node")
[ "$cpus" -ge 2 ] || node="CPUs=2 RealMemory=1000"
mpi=none; ls /usr/lib/*/slurm-wlm/mpi_pmix*.so >/dev/null 2>&1 && mpi=pmix
mkdir -p "$D/state" "$D/spool"
export SLURM_CONF=$D/slurm.conf
cat > "$SLURM_CONF" <<CONF
ClusterName=aesnettest
SlurmctldHost=localhost(127.0.0.1)
SlurmctldPort=$P1
SlurmdPort=$P2
SlurmUser=root
SlurmdUser=root
AuthType=auth/munge
CredType=cred/munge
AuthInfo=socket=$D/munge.sock,cred_expire=10
StateSaveLocation=$D/state
SlurmdSpoolDir=$D/spool
SlurmctldPidFile=$D/slurmctld.pid
SlurmdPidFile=$D/slurmd.pid
SlurmctldLogFile=$D/slurmctld.log
SlurmdLogFile=$D/slurmd.log
ProctrackType=proctrack/linuxproc
TaskPlugin=task/none
JobAcctGatherType=jobacct_gather/none
AccountingStorageType=accounting_storage/none
SelectType=select/cons_tres
SelectTypeParameters=CR_Core
SlurmdParameters=config_overrides
MpiDefault=$mpi
JobRequeue=1
ReturnToService=2
SchedulerParameters=sched_interval=2
KillWait=5
MinJobAge=600
NodeName=localhost NodeAddr=127.0.0.1 $node State=UNKNOWN
PartitionName=aesnettest Nodes=localhost Default=YES MaxTime=INFINITE State=UP
CONF
slurmctld -D -c -f "$SLURM_CONF" > "$D/slurmctld.stdout" 2>&1 &
PIDS+=($!)
slurmd -D -N localhost -f "$SLURM_CONF" > "$D/slurmd.stdout" 2>&1 &
PIDS+=($!)
state=""
for _ in $(seq 1 100); do
  state=$(sinfo -h -n localhost -o %t 2>/dev/null) && [ "$state" = idle ] && break
  for i in 1 2; do
    if ! kill -0 "${PIDS[$i]}" 2>/dev/null; then
      name=$([ "$i" = 1 ] && echo slurmctld || echo slurmd)
      cat "$D/$name.stdout" >> "$D/$name.log"; skip_with_log "$name" "$D/$name.log"
    fi
  done
  sleep 0.2
done
if [ "$state" != idle ]; then
  echo "FAIL: the node did not become idle (state '$state')"; tail -n 5 "$D/slurmd.log" "$D/slurmctld.log"; exit 1
fi
echo "slurm $(slurmd -V | cut -d' ' -f2) up in $(( $(date +%s) - T0 )) s (mpi=$mpi, node: $node)"

# Site settings for this cluster, as a user would override jobs/site.sh.
export AESNET_PARTITION=aesnettest AESNET_NODES=1 AESNET_TASKS_PER_NODE=2 AESNET_GPUS_PER_NODE=0 \
  AESNET_CPUS_PER_TASK=1 AESNET_MPI=$mpi AESNET_BIN=$AESNET AESNET_TIME=00:10:00 \
  AESNET_MODULES="" AESNET_ACCOUNT="" AESNET_SBATCH_EXTRA="" AESNET_ROOT=""
unset AESNET_ROOT
JOBS=$SRC_DIR/jobs
cd "$WORK" || exit 1

# The data set, with a plain `sbatch jobs/prep.sbatch` (the script finds jobs/site.sh itself).
if sbatch --wait -p aesnettest -o prep.out "$JOBS/prep.sbatch" synth --out d.h5 --n 300 --size 32 \
     --seed 4 --quiet --features 8 > /dev/null && [ -s d.h5 ]; then ok; else fail "prep.sbatch: $(tail -n 5 prep.out)"; exit 1; fi

N=1000
cat > t.cfg <<CFG
run = { out_dir = "$WORK/run"; seed = 3; };
data = { train = "$WORK/d.h5"; workers = 1; };
model = { image = "resnet"; resnet_width = 0.125; text_width = 32; text_depth = 1; text_heads = 2;
          embed_dim = 16; fusion_width = 16; };
train = { steps = $N; global_batch = 16; warmup = 2; ckpt_every = 20; keep_last = 1000; log_every = 1;
          val_every = 0; threads = 1; };
CFG
ck() { echo "$WORK/run/checkpoints/step_$(printf %08d "$1").h5"; }
sub=$(AESNET_OUTPUT=$WORK/train.out bash "$JOBS/train.sbatch" t.cfg 2>&1)
JOB=$(sed -n 's/^Submitted batch job \([0-9]*\)$/\1/p' <<< "$sub")
if [ -n "$JOB" ]; then ok; else fail "train.sbatch did not submit: $sub"; exit 1; fi
jobfield() { scontrol show job "$JOB" -o 2>/dev/null | tr ' ' '\n' | sed -n "s/^$1=//p"; }

# A few steps logged, then SIGUSR1 to the job steps, as --signal=USR1@120 sends it.
rows=0
until=$((SECONDS + 60))
while [ $SECONDS -lt $until ]; do
  rows=$(( $( (wc -l < run/metrics.csv) 2>/dev/null || echo 0) - 1 ))
  [ "$rows" -ge 5 ] && break
  sleep 0.1
done
if [ "$rows" -ge 5 ]; then ok; else fail "no metrics after 60 s ($(jobfield JobState)): $(tail -n 5 train.out)"; exit 1; fi
scancel --signal=USR1 "$JOB"
echo "SIGUSR1 sent after $rows steps, $(( $(date +%s) - T0 )) s"

# Requeued (Restarts=1); a requeued job waits cred_expire before it may start again.
until=$((SECONDS + 60))
while [ $SECONDS -lt $until ]; do [ "$(jobfield Restarts)" = 1 ] && break; sleep 0.1; done
if [ "$(jobfield Restarts)" = 1 ]; then ok; else fail "not requeued: $(jobfield JobState) $(tail -n 5 train.out)"; fi
stop=$(sed -n 's/.*stopping at step \([0-9]*\) on a signal.*/\1/p' train.out | head -n 1)
if [ -n "$stop" ] && [ "$stop" -lt "$N" ]; then ok; else fail "no 'stopping at step N on a signal' in the output"; fi
if [ -n "$stop" ] && [ -s "$(ck "$stop")" ]; then ok; else fail "no checkpoint at the stop step ${stop:-?}"; fi
if grep -q "requeueing job $JOB" train.out; then ok; else fail "train.sbatch did not say it requeued"; fi

# The requeued run resumes from that checkpoint and finishes.
echo "requeued at $(( $(date +%s) - T0 )) s"
until=$((SECONDS + 180))
while [ $SECONDS -lt $until ]; do
  case $(jobfield JobState) in COMPLETED|FAILED|CANCELLED|TIMEOUT|NODE_FAIL|OUT_OF_MEMORY) break ;; esac
  sleep 0.1
done
st=$(jobfield JobState)
echo "job $st at $(( $(date +%s) - T0 )) s"
grep -E '^train\.sbatch:|stopping at|resuming from|^done:' train.out | sed 's/^/  | /'
if [ "$st" = COMPLETED ]; then ok; else fail "the requeued job ended $st (exit $(jobfield ExitCode)): $(tail -n 5 train.out)"; fi
if grep -q "resuming from $(ck "$stop") (step $stop)" train.out; then ok
else fail "the requeued run did not resume from step $stop: $(grep -m1 'resum\|starting' train.out)"; fi
if grep -q "restart 1)" train.out && [ "$(grep -c "done: $N steps" train.out)" = 1 ]; then ok
else fail "the second run did not finish $N steps"; fi
if [ -s "$(ck "$N")" ] && [ "$(tail -n 1 run/metrics.csv | cut -d, -f1)" = "$N" ]; then ok
else fail "no final checkpoint / metrics row at step $N"; fi

# A one-node scaling study (both modes), gathered into one table.
AESNET_SCALING_NODES=1 AESNET_SCALING_STEPS=3 AESNET_SCALING_GLOBAL_BATCH=16 AESNET_SCALING_LOCAL_BATCH=4 \
  bash "$JOBS/scaling.sh" submit t.cfg sc > sc.submit 2>&1 || fail "scaling.sh submit: $(cat sc.submit)"
while read -r j; do
  until=$((SECONDS + 60))
  while [ $SECONDS -lt $until ]; do squeue -h -j "$j" 2>/dev/null | grep -q . || break; sleep 0.1; done
done < <(sed -n 's/.*Submitted batch job \([0-9]*\)$/\1/p' sc.submit)
bash "$JOBS/scaling.sh" gather sc > sc.csv 2>&1 || fail "scaling.sh gather: $(cat sc.csv sc/*.log)"
want="mode,nodes,ranks,global_batch,images_per_s,step_ms,efficiency"
if [ "$(head -n 1 sc.csv)" = "$want" ] && grep -q '^strong,1,2,16,.*,1.0000$' sc.csv && grep -q '^weak,1,2,8,.*,1.0000$' sc.csv
then ok; else fail "scaling table: $(cat sc.csv)"; fi

echo "slurm test: $(( $(date +%s) - T0 )) s"
finish
