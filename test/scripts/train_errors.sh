# Bad input to aesnet train: one exact line on stderr, exit 1, identical
# on every rank (checked under mpirun with 2 ranks), nothing written.
source "$(dirname "$0")/lib.sh"
"$AESNET" prep synth --out "$WORK/d.h5" --n 120 --size 32 --seed 1 --quiet --features 8 || fail synth
"$AESNET" prep synth --out "$WORK/nofeat.h5" --n 60 --size 32 --seed 1 --quiet --features 0 || fail synth
cd "$WORK"
cat > t.cfg <<CFG
run = { out_dir = "out"; };
data = { train = "d.h5"; };
model = { resnet_width = 0.125; text_width = 32; text_depth = 1; text_heads = 2; embed_dim = 16;
          fusion_width = 16; };
train = { steps = 2; global_batch = 8; warmup = 0; ckpt_every = 0; val_every = 0; threads = 1; };
CFG
printf 'train = {\n  stpes = 3;\n};\n' > typo.cfg
printf 'model = { fusion = "mpl"; };\n' > enum.cfg
printf 'train = { lr = -1.0; };\n' > range.cfg
printf 'train = { steps = "ten"; };\n' > type.cfg
printf 'train = { steps = 3 \n' > syntax.cfg
run2() { mpirun_q -np 2 "$AESNET" train "$@"; }

expect_error "aesnet: error: typo.cfg:2: unknown key 'train.stpes' (did you mean 'train.steps'?)" run2 typo.cfg
expect_error "aesnet: error: enum.cfg:1: model.fusion: 'mpl' is not one of none, mlp, transformer" run2 enum.cfg
expect_error "aesnet: error: range.cfg:1: train.lr: -1 is out of range (must be > 0)" run2 range.cfg
expect_error "aesnet: error: type.cfg:1: train.steps: expected an integer, got a string" run2 type.cfg
out=$(run2 syntax.cfg 2>&1 >/dev/null); rc=$?
if [ $rc -eq 1 ] && [[ "$out" == "aesnet: error: syntax.cfg:"*"syntax error"* ]] && [ "$(printf '%s\n' "$out" | wc -l)" -eq 1 ]; then ok; else fail "syntax error: rc=$rc: $out"; fi
expect_error "aesnet: error: --set train.steps=abc: 'abc' is not a libconfig value (like 5, 1e-3, \"text\", true, [1.0, 2.0])" run2 t.cfg --set train.steps=abc
expect_error "aesnet: error: --set train.bogus=1: unknown key 'train.bogus'" run2 t.cfg --set train.bogus=1
expect_error "aesnet: error: environment variable AESNET_CONV: expected implicit or im2col, got 'blas'" env AESNET_CONV=blas "$MPIEXEC" -q --oversubscribe -np 2 "$AESNET" train t.cfg
# train.device = "cuda" where it cannot run: the reason, in one line.
if "$AESNET" --version | grep -q "^CUDA: *not built"; then
  why="this aesnet was built without CUDA (configure with -DAESNET_CUDA=ON)"
elif "$AESNET" --version | grep -q "no CUDA driver"; then
  why="no CUDA driver on this machine"
else
  why=""  # a machine with a GPU: the GPU path runs (test/device/)
fi
if [ -n "$why" ]; then
  expect_error "aesnet: error: t.cfg: train.device = \"cuda\": $why" run2 t.cfg --set 'train.device="cuda"'
fi
expect_error "aesnet: error: t.cfg: train.precision = \"tf32\" needs train.device = \"cuda\" (the CPU computes in fp32)" run2 t.cfg --set 'train.precision="tf32"'
expect_error "aesnet: error: t.cfg: data.train = \"none.h5\": no such file" run2 t.cfg --set 'data.train="none.h5"'
expect_error "aesnet: error: t.cfg: loss.affinity_reference = \"features\" but nofeat.h5 has no content features (/content/features); use \"frozen\" or loss.affinity = \"none\"" run2 t.cfg --set 'data.train="nofeat.h5"'
expect_error "aesnet: error: t.cfg: loss.attribute_weights has 2 values, the data set has 5 attributes" run2 t.cfg --set 'loss.attribute_weights=[1.0, 2.0]'
expect_error "aesnet: error: t.cfg: train.global_batch = 8 does not divide by the 3 ranks" mpirun_q -np 3 "$AESNET" train t.cfg
expect_error "aesnet: error: train: which config? (aesnet train CONFIG; see configs/)" run2
expect_error "aesnet: error: train: unknown option '--bogus' (try --help)" run2 t.cfg --bogus
if [ -e out ]; then fail "a failed start left run.out_dir behind"; else ok; fi

# On resume only run-length and output keys may change.
"$AESNET" train t.cfg > /dev/null 2>&1 || fail "a good run"
expect_error "aesnet: error: t.cfg: model.fusion differs from the checkpoint out/checkpoints/step_00000002.h5; only run length and output keys may change on resume" run2 t.cfg --resume auto --set model.fusion=none
if "$AESNET" train t.cfg --resume auto --set train.steps=3 > resume.log 2>&1 && grep -q "resuming from out/checkpoints/step_00000002.h5 (step 2)" resume.log; then ok
else fail "resume with more steps: $(tail -2 resume.log)"; fi
expect_error "aesnet: error: none.h5: cannot open: No such file or directory" run2 t.cfg --resume none.h5

# Divergence: non-finite steps are skipped; max_nonfinite in a row stop the
# run on every rank with one line.
out=$(run2 t.cfg --set 'run.out_dir="div"' --set train.lr=1e30 --set train.clip=0.0 --set train.steps=20 --set train.max_nonfinite=2 2>&1 >/dev/null); rc=$?
if [ $rc -eq 1 ] && [[ "$out" == "aesnet: error: training diverged: 2 steps in a row with a non-finite loss or gradient, the last at step "*" (lower train.lr, or raise train.clip)" ]]; then ok
else fail "divergence: rc=$rc: $out"; fi
if grep -q ',1$' div/metrics.csv; then ok; else fail "skipped steps not in metrics.csv"; fi

# train.max_walltime nearly spent: a checkpoint, exit 3.
run2 t.cfg --set 'run.out_dir="wall"' --set train.steps=100000 --set train.max_walltime=1.0 > wall.log 2>&1; rc=$?
if [ $rc -eq 3 ] && grep -q "stopping at step [0-9]* on the walltime limit" wall.log && ls wall/checkpoints/step_*.h5 > /dev/null 2>&1; then ok
else fail "walltime: rc=$rc: $(tail -2 wall.log)"; fi
finish
