# The training reader on W = 1, 2, 3 ranks: every global batch is the same
# set of rows with the same augmented pixels, drawn descriptions, masks,
# scores and features, whatever W; an epoch never repeats a row; a batch
# that does not divide by W is refused with one line.
source "$(dirname "$0")/lib.sh"
LC=$TEST_BIN_DIR/loader_check

"$AESNET" prep synth --out "$WORK/demo.h5" --n 150 --size 32 --seed 3 --quiet || fail "synth"

# A built set with several descriptions per attribute and missing ones, so
# the per-sample description draw and the mask are exercised too.
"$PYTHON" - "$WORK" <<'PY'
import json, sys, numpy as np
from PIL import Image
d = sys.argv[1]
rng = np.random.default_rng(0)
with open(f"{d}/m.jsonl", "w") as f:
    for i in range(60):
        Image.fromarray(rng.integers(0, 255, (40, 50, 3), dtype=np.uint8)).save(f"{d}/{i}.png")
        n = i % 4
        f.write(json.dumps({"image": f"{i}.png", "score": float(i % 10),
            "split": "train" if i < 48 else "test",
            "descriptions": {"color": [f"colour note {i} {k}" for k in range(n)],
                             "light": "bright" if i % 3 else None}}) + "\n")
PY
"$AESNET" prep build --images "$WORK" --manifest "$WORK/m.jsonl" --out "$WORK/multi.h5" --size 24 \
  --vocab-size 300 --context-length 12 --quiet || fail "build"

for data in demo multi; do
  for W in 1 2 3; do
    if mpirun_q -np $W "$LC" "$WORK/$data.h5" 12 14 5 "$WORK/$data.$W.txt" >/dev/null; then ok
    else fail "$data: loader_check on $W ranks"; fi
  done
  for W in 2 3; do
    if cmp -s "$WORK/$data.1.txt" "$WORK/$data.$W.txt"; then ok
    else fail "$data: $W ranks read different batches than 1 rank"; fi
  done
  # The records are not trivially equal: another seed gives other batches.
  mpirun_q -np 1 "$LC" "$WORK/$data.h5" 12 14 6 "$WORK/$data.seed6.txt" >/dev/null
  if cmp -s "$WORK/$data.1.txt" "$WORK/$data.seed6.txt"; then fail "$data: seed has no effect"; else ok; fi
done
# 14 steps of 12 over 48 train rows: 4 steps per epoch, so epochs turn over.
if [ "$(wc -l < "$WORK/multi.1.txt")" -eq 168 ]; then ok; else fail "multi: expected 168 records"; fi
# Images without a light description are masked (mask bit 0 of the 2-bit field).
if awk '{print $5}' "$WORK/multi.1.txt" | sort -u | grep -qx 2; then ok; else fail "no masked light descriptions seen"; fi

expect_error "aesnet: error: the global batch 10 does not divide by the 3 ranks" \
  mpirun_q -np 3 "$LC" "$WORK/demo.h5" 10 2 5 "$WORK/x.txt"
finish
