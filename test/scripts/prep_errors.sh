# Bad input to prep build / synth / info: one exact line on stderr, a
# non-zero exit, and no output or temporary file left behind.
source "$(dirname "$0")/lib.sh"
D=$WORK/img
mkdir -p "$D" "$WORK/out"
"$PYTHON" - "$D" <<'PY'
import sys, numpy as np
from PIL import Image
d = sys.argv[1]
a = (np.arange(30 * 40 * 3) % 251).astype(np.uint8).reshape(30, 40, 3)
Image.fromarray(a).save(f"{d}/a.jpg", quality=90)
Image.fromarray(a).save(f"{d}/b.png")
jpg = open(f"{d}/a.jpg", "rb").read()
open(f"{d}/cut.jpg", "wb").write(jpg[: len(jpg) // 2])
png = open(f"{d}/b.png", "rb").read()
open(f"{d}/cut.png", "wb").write(png[: len(png) // 2])
open(f"{d}/text.jpg", "wb").write(b"this is not an image\n")
# A large-ish noisy image so the full-disk case needs real space.
rng = np.random.default_rng(1)
Image.fromarray(rng.integers(0, 255, (300, 300, 3), dtype=np.uint8)).save(f"{d}/big.png")
PY
line() { printf '{"image": "%s", "descriptions": {"color": "warm tones", "light": "soft light"}, "score": 5}\n' "$1"; }
good() { line a.jpg; line b.png; }
OUT=$WORK/out/x.h5
build() { "$AESNET" prep build --images "$D" --manifest "$1" --out "$OUT" --size 16 --vocab-size 280 --quiet "${@:2}"; }

{ good; line missing.jpg; } > "$WORK/m1.jsonl"
expect_error "aesnet: error: $D/missing.jpg ($WORK/m1.jsonl:3): cannot read the image: No such file or directory" build "$WORK/m1.jsonl"

{ good; line cut.jpg; } > "$WORK/m2.jsonl"
expect_error "aesnet: error: $D/cut.jpg ($WORK/m2.jsonl:3): truncated JPEG" build "$WORK/m2.jsonl"

{ line cut.png; } > "$WORK/m3.jsonl"
out=$(build "$WORK/m3.jsonl" 2>&1); rc=$?
if [ $rc -ne 0 ] && [[ "$out" == "aesnet: error: $D/cut.png ($WORK/m3.jsonl:1): "*PNG* ]] && [ "$(printf '%s\n' "$out" | wc -l)" -eq 1 ]; then ok
else fail "truncated PNG: rc=$rc: $out"; fi

{ line text.jpg; } > "$WORK/m4.jsonl"
expect_error "aesnet: error: $D/text.jpg ($WORK/m4.jsonl:1): not a JPEG or PNG file" build "$WORK/m4.jsonl"

{ good; echo '{"image": "a.jpg", "descriptions": '; } > "$WORK/m5.jsonl"
out=$(build "$WORK/m5.jsonl" 2>&1); rc=$?
if [ $rc -ne 0 ] && [[ "$out" == "aesnet: error: $WORK/m5.jsonl:3: not valid JSON: "* ]]; then ok; else fail "bad JSON: $out"; fi

{ good; echo '{"image": "a.jpg", "descriptions": {"color": "x"}}'; } > "$WORK/m6.jsonl"
expect_error "aesnet: error: $WORK/m6.jsonl:3: descriptions: attribute 'light' is missing" build "$WORK/m6.jsonl"

{ good; echo '{"image": "a.jpg", "descriptions": {"color": "x", "light": "y", "focus": "z"}}'; } > "$WORK/m7.jsonl"
expect_error "aesnet: error: $WORK/m7.jsonl:3: descriptions: attribute 'focus' is not in the first line's set" build "$WORK/m7.jsonl"

{ good; echo '{"image": "a.jpg", "descriptions": {"color": "x", "light": "y"}, "split": "holdout"}'; } > "$WORK/m8.jsonl"
expect_error "aesnet: error: $WORK/m8.jsonl:3: field 'split' must be \"train\", \"val\" or \"test\"" build "$WORK/m8.jsonl"

{ good; echo '{"image": "a.jpg", "descriptions": {"color": "x", "light": "y"}, "score": [1, 2, 3]}'; } > "$WORK/m9.jsonl"
expect_error "aesnet: error: $WORK/m9.jsonl:3: field 'score': a list must hold 10 vote counts, found 3" build "$WORK/m9.jsonl"

{ echo '{"descriptions": {"color": "x"}}'; } > "$WORK/m10.jsonl"
expect_error "aesnet: error: $WORK/m10.jsonl:1: field 'image' is missing" build "$WORK/m10.jsonl"

{ good; echo '{"image": "a.jpg", "descriptions": {"color": "x", "light": "y"}, "scroe": 3}'; } > "$WORK/m11.jsonl"
expect_error "aesnet: error: $WORK/m11.jsonl:3: unknown field 'scroe' (expected image, descriptions, score, split, content, id)" build "$WORK/m11.jsonl"

expect_error "aesnet: error: $WORK/none.jsonl: cannot open the manifest: No such file or directory" build "$WORK/none.jsonl"
no_leftovers "$WORK/out"
if [ -e "$OUT" ]; then fail "output left behind after errors"; else ok; fi

# An existing output is kept unless --force.
good > "$WORK/good.jsonl"
build "$WORK/good.jsonl" || fail "good manifest"
sum=$(md5sum < "$OUT")
expect_error "aesnet: error: $OUT: output exists (use --force to replace it)" build "$WORK/good.jsonl"
expect_error "aesnet: error: $OUT: output exists (use --force to replace it)" "$AESNET" prep synth --out "$OUT" --n 10 --quiet
if [ "$(md5sum < "$OUT")" = "$sum" ]; then ok; else fail "existing output was modified"; fi
# A failing --force run leaves the old file as it was.
expect_error "aesnet: error: $D/missing.jpg ($WORK/m1.jsonl:3): cannot read the image: No such file or directory" build "$WORK/m1.jsonl" --force
if [ "$(md5sum < "$OUT")" = "$sum" ]; then ok; else fail "failed --force run damaged the old output"; fi
build "$WORK/good.jsonl" --force && ok || fail "--force"
rm -f "$OUT"

# A full disk, simulated with a file-size limit (SIGXFSZ ignored, so writes
# fail with EFBIG as they would with ENOSPC).
for i in $(seq 1 40); do line big.png; done > "$WORK/big.jsonl"
out=$( (trap '' XFSZ; ulimit -f 256; build "$WORK/big.jsonl" --size 128) 2>&1 ); rc=$?
if [ $rc -ne 0 ] && [[ "$out" == "aesnet: error: $OUT: cannot write the data set: "* ]] && [ "$(printf '%s\n' "$out" | wc -l)" -eq 1 ]; then ok
else fail "full disk: rc=$rc: $out"; fi
out=$( (trap '' XFSZ; ulimit -f 256; "$AESNET" prep synth --out "$OUT" --n 400 --size 64 --quiet) 2>&1 ); rc=$?
if [ $rc -ne 0 ] && [[ "$out" == "aesnet: error: $OUT: cannot write the data set: "* ]]; then ok
else fail "full disk (synth): rc=$rc: $out"; fi
no_leftovers "$WORK/out"
if [ -e "$OUT" ]; then fail "output left behind after a full disk"; else ok; fi

# Command-line mistakes.
expect_error "aesnet: error: prep build: --manifest is required" "$AESNET" prep build --images "$D" --out "$OUT"
expect_error "aesnet: error: --size: 'big' is not an integer" "$AESNET" prep build --images "$D" --manifest "$WORK/good.jsonl" --out "$OUT" --size big
expect_error "aesnet: error: --size: 2 is out of range [8, 4096]" "$AESNET" prep build --images "$D" --manifest "$WORK/good.jsonl" --out "$OUT" --size 2
expect_error "aesnet: error: prep synth: unknown option '--bogus' (try --help)" "$AESNET" prep synth --out "$OUT" --bogus
expect_error "aesnet: error: $WORK/nodir: not a folder (--images)" "$AESNET" prep build --images "$WORK/nodir" --manifest "$WORK/good.jsonl" --out "$OUT"

# Files that are not aesnet data sets.
echo "plain text" > "$WORK/plain.h5"
expect_error "aesnet: error: $WORK/plain.h5: not an HDF5 file (expected an aesnet data set)" "$AESNET" prep info "$WORK/plain.h5"
expect_error "aesnet: error: $WORK/absent.h5: no such file" "$AESNET" prep info "$WORK/absent.h5"
"$PYTHON" - "$WORK" <<'PY'
import sys, h5py, shutil
d = sys.argv[1]
with h5py.File(f"{d}/other.h5", "w") as f:
    f.attrs["format"] = "something-else"
PY
expect_error "aesnet: error: $WORK/other.h5: root attribute format: 'something-else', expected 'aesnet-dataset'" "$AESNET" prep info "$WORK/other.h5"
finish
