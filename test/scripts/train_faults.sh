# Faults: kill -9 of one rank during training, and a crash in the middle of
# a checkpoint write (a truncated newest checkpoint and a stray temporary
# file): the previous checkpoint is intact, --resume auto says what it
# skips and continues from it, and the run ends bit-identical to one that
# never stopped.
source "$(dirname "$0")/lib.sh"
"$AESNET" prep synth --out "$WORK/d.h5" --n 300 --size 32 --seed 4 --quiet --features 8 || fail synth
cat > "$WORK/t.cfg" <<CFG
run = { out_dir = "$WORK/run"; seed = 3; };
data = { train = "$WORK/d.h5"; workers = 1; };
model = { image = "vit"; vit_patch = 8; vit_width = 32; vit_depth = 2; vit_heads = 2; text_width = 32;
          text_depth = 1; text_heads = 2; embed_dim = 16; fusion_width = 16; };
train = { steps = 40; global_batch = 16; warmup = 2; ckpt_every = 5; keep_last = 3; log_every = 1;
          val_every = 0; threads = 1; };
CFG
N=40
ck() { echo "$1/checkpoints/step_$(printf %08d "$2").h5"; }
train() { local W=$1 out=$2; shift 2; mpirun_q -np "$W" "$AESNET" train "$WORK/t.cfg" --set "run.out_dir=\"$out\"" "$@" > "$out.log" 2>&1; }
train 2 "$WORK/s" || fail "straight run"

# kill -9 of one rank once step 10's checkpoint exists.
"$MPIEXEC" -q --oversubscribe -np 2 "$AESNET" train "$WORK/t.cfg" --set "run.out_dir=\"$WORK/k\"" > "$WORK/k.log" 2>&1 &
pid=$!
for i in $(seq 1 1500); do [ -e "$(ck "$WORK/k" 10)" ] && break; sleep 0.02; done
victim=$(pgrep -P $pid | tail -n 1)
if [ -n "$victim" ]; then kill -9 "$victim"; ok; else fail "no rank process to kill"; fi
wait $pid; rc=$?
if [ $rc -ne 0 ]; then ok; else fail "the job survived a killed rank (it may have finished first)"; fi
if train 2 "$WORK/k" --resume auto; then ok; else fail "resume after kill -9: $(tail -3 "$WORK/k.log")"; fi
if grep -q "resuming from .*step_000000[1-3][05].h5" "$WORK/k.log"; then ok; else fail "did not resume from a checkpoint: $(grep -m1 resum "$WORK/k.log")"; fi
if "$PYTHON" "$SRC_DIR/test/py/compare_ckpt.py" "$(ck "$WORK/k" $N)" "$(ck "$WORK/s" $N)" 0 --exact >/dev/null; then ok; else fail "after kill -9 and resume the run differs"; fi

# A crash during a checkpoint write leaves a truncated newest file (and a
# temporary one): resume skips it, naming it, and uses the one before.
train 2 "$WORK/c" --set train.keep_last=100 || fail "first run"
for s in 25 30 35 40; do rm -f "$(ck "$WORK/c" $s)"; done
good=$(ck "$WORK/c" 20)
head -c $(( $(stat -c %s "$good") / 2 )) "$good" > "$(ck "$WORK/c" 25)"
cp "$good" "$(ck "$WORK/c" 30).12345.tmp"
if train 2 "$WORK/c" --resume auto; then ok; else fail "resume past a truncated checkpoint: $(tail -3 "$WORK/c.log")"; fi
if grep -q "skipping .*step_00000025.h5" "$WORK/c.log"; then ok; else fail "the truncated checkpoint was not named"; fi
if grep -q "resuming from .*step_00000020.h5 (step 20)" "$WORK/c.log"; then ok; else fail "did not resume from step 20"; fi
if "$PYTHON" "$SRC_DIR/test/py/compare_ckpt.py" "$(ck "$WORK/c" $N)" "$(ck "$WORK/s" $N)" 0 --exact >/dev/null; then ok; else fail "after the truncated checkpoint the run differs"; fi
finish
