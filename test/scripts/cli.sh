# The command line: --version names the code version and every library;
# --help works on every command; unknown commands get one line.
source "$(dirname "$0")/lib.sh"
v=$("$AESNET" --version) || fail "--version"
for want in "aesnet 0." "(git " "build:" "MPI:       Open MPI" "HDF5:      1." "libconfig: 1." "BLAS:      OpenBLAS" "CUDA:"; do
  if printf '%s\n' "$v" | grep -qF -- "$want"; then ok; else fail "--version lacks '$want'"; fi
done
for cmd in "" "prep" "prep build" "prep synth" "prep info" "prep bench" "train" "bench"; do
  out=$("$AESNET" $cmd --help) && [[ "$out" == usage:* ]] && ok || fail "aesnet $cmd --help"
done
expect_error "aesnet: error: unknown command 'frobnicate' (try aesnet --help)" "$AESNET" frobnicate
expect_error "aesnet: error: prep: unknown command 'bake' (try aesnet prep --help)" "$AESNET" prep bake
finish
