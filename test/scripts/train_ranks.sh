# aesnet train on 1, 2 and 4 ranks (oversubscribed) with the same global
# batch: the same losses (1e-5 relative) and parameters after 5 steps
# (1e-4 per tensor); resume bit-exact on the same number of ranks and
# within that tolerance on another; stop on SIGUSR1 (exit 3) and on a STOP
# file (exit 0); GradCache micro-batches.
#
# The strict rank-count check uses a ViT: with batch norm, a bias feeding
# ReLU -> conv -> batch norm has a gradient that is the small remainder of
# large cancelling sums, and AdamW normalises it to a full-size step, so
# the summation order of W ranks (not an error) grows past 1e-4 within a
# few steps. For the ResNet the check is that batch-norm statistics are
# global: the first loss agrees to 1e-6 across rank counts, and differs
# with train.batchnorm = "local".
source "$(dirname "$0")/lib.sh"
"$AESNET" prep synth --out "$WORK/d.h5" --n 400 --size 32 --seed 2 --quiet --features 16 || fail synth
cat > "$WORK/t.cfg" <<CFG
run = { out_dir = "$WORK/run"; seed = 5; };
data = { train = "$WORK/d.h5"; workers = 1; };
model = { image = "vit"; vit_patch = 8; vit_width = 32; vit_depth = 2; vit_heads = 2;
          resnet_depth = 18; resnet_width = 0.125; text_width = 32; text_depth = 1;
          text_heads = 2; embed_dim = 32; fusion = "mlp"; fusion_width = 32; };
loss = { affinity = "kl"; affinity_reference = "features"; };
train = { steps = 5; global_batch = 16; lr = 2e-3; warmup = 1; ckpt_every = 0; keep_last = 5;
          log_every = 1; val_every = 0; threads = 1; };
CFG
train() { # W OUT [extra args]
  local W=$1 out=$2; shift 2
  mpirun_q -np "$W" "$AESNET" train "$WORK/t.cfg" --set "run.out_dir=\"$out\"" "$@" > "$out.log" 2>&1
}
losses() { cut -d, -f1,3 "$1/metrics.csv" | tail -n +2; }
same_losses() { # A B TOL
  paste -d, <(losses "$1") <(losses "$2") | awk -F, -v tol="$3" '
    { d = $2 - $4; if (d < 0) d = -d; if (d > tol * ($4 < 0 ? -$4 : $4)) bad = 1; n++ }
    END { exit (bad || n == 0) }'
}
ck() { echo "$1/checkpoints/step_$(printf %08d "$2").h5"; }

for W in 1 2 4; do
  if train $W "$WORK/w$W"; then ok; else fail "train on $W ranks: $(tail -3 "$WORK/w$W.log")"; fi
done
for W in 2 4; do
  if same_losses "$WORK/w1" "$WORK/w$W" 1e-5; then ok; else fail "losses on $W ranks differ from 1 rank"$'\n'"$(paste -d' ' <(losses "$WORK/w1") <(losses "$WORK/w$W"))"; fi
  if "$PYTHON" "$SRC_DIR/test/py/compare_ckpt.py" "$(ck "$WORK/w$W" 5)" "$(ck "$WORK/w1" 5)" 1e-4; then ok; else fail "parameters on $W ranks differ from 1 rank"; fi
done

# ResNet: batch-norm statistics over the global batch.
first_loss() { sed -n 2p "$1/metrics.csv" | cut -d, -f3; }
for W in 1 2 4; do
  train $W "$WORK/b$W" --set model.image=resnet --set train.steps=1 || fail "ResNet on $W ranks"
done
train 4 "$WORK/bl" --set model.image=resnet --set train.steps=1 --set train.batchnorm=local || fail "local BN"
for W in 2 4; do
  if awk -v a="$(first_loss "$WORK/b1")" -v b="$(first_loss "$WORK/b$W")" 'BEGIN { d = a - b; exit !(d * d <= 1e-12 * a * a) }'; then ok
  else fail "ResNet first loss on $W ranks $(first_loss "$WORK/b$W") vs $(first_loss "$WORK/b1")"; fi
done
if awk -v a="$(first_loss "$WORK/b1")" -v b="$(first_loss "$WORK/bl")" 'BEGIN { d = a - b; exit !(d * d > 1e-8 * a * a) }'; then ok
else fail "per-rank batch norm should change the loss: $(first_loss "$WORK/bl") vs $(first_loss "$WORK/b1")"; fi

# SIGUSR1 (what sbatch --signal sends) mid-run: every rank finishes the
# step, a checkpoint is written, exit code 3 (requeue me); --resume auto
# then reaches the straight run's parameters and moments bit for bit.
N=30
train 2 "$WORK/s" --set train.steps=$N || fail "straight run of $N steps"
"$MPIEXEC" -q --oversubscribe -np 2 "$AESNET" train "$WORK/t.cfg" --set "run.out_dir=\"$WORK/r\"" --set train.steps=$N > "$WORK/r.log" 2>&1 &
pid=$!
for i in $(seq 1 600); do
  [ "$(wc -l < "$WORK/r/metrics.csv" 2>/dev/null || echo 0)" -ge 4 ] && break
  sleep 0.02
done
kill -USR1 $pid
wait $pid; rc=$?
if [ $rc -eq 3 ]; then ok; else fail "SIGUSR1: exit code $rc, not 3: $(tail -3 "$WORK/r.log")"; fi
stopped=$(sed -n 's/.*stopping at step \([0-9]*\) on a signal.*/\1/p' "$WORK/r.log")
if [ -n "$stopped" ] && [ "$stopped" -lt $N ] && [ -f "$(ck "$WORK/r" "$stopped")" ]; then ok; else fail "no checkpoint at the stop (step '$stopped')"; fi
if train 2 "$WORK/r" --resume auto --set train.steps=$N; then ok; else fail "resume: $(tail -3 "$WORK/r.log")"; fi
if grep -q "resuming from .*step_$(printf %08d "$stopped").h5 (step $stopped)" "$WORK/r.log"; then ok; else fail "resume did not say where from"; fi
if "$PYTHON" "$SRC_DIR/test/py/compare_ckpt.py" "$(ck "$WORK/r" $N)" "$(ck "$WORK/s" $N)" 0 --exact; then ok; else fail "resume is not bit-exact"; fi
if cmp -s <(losses "$WORK/r") <(losses "$WORK/s"); then ok; else fail "metrics.csv after resume differs from the straight run's"; fi

# A STOP file: checkpoint, exit 0, the file is consumed; resume on another
# number of ranks stays within the rank-count tolerance.
mkdir -p "$WORK/q" && touch "$WORK/q/STOP"
if train 1 "$WORK/q"; then ok; else fail "STOP file: non-zero exit"; fi
if [ ! -e "$WORK/q/STOP" ] && [ -f "$(ck "$WORK/q" 1)" ]; then ok; else fail "STOP file: no checkpoint at step 1, or the file is still there"; fi
if train 4 "$WORK/q" --resume auto; then ok; else fail "resume on 4 ranks: $(tail -3 "$WORK/q.log")"; fi
if "$PYTHON" "$SRC_DIR/test/py/compare_ckpt.py" "$(ck "$WORK/q" 5)" "$(ck "$WORK/w1" 5)" 1e-4; then ok; else fail "resume on other ranks"; fi

# GradCache: 4 micro-batches of 2 rows per rank on 2 ranks.
if train 2 "$WORK/mb" --set train.micro_batch=2 --set train.steps=2; then ok; else fail "micro-batches: $(tail -3 "$WORK/mb.log")"; fi
finish
