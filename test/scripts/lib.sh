# Shared helpers for the script tests (sourced, not a test itself).
set -u
: "${AESNET:?run through ctest, which sets AESNET}"
: "${TEST_BIN_DIR:?run through ctest}"
MPIEXEC=${MPIEXEC:-mpirun}
PYTHON=${PYTHON:-/usr/bin/python3}
WORK=$(mktemp -d "${TEST_BIN_DIR}/work.XXXXXX")
trap 'rm -rf "$WORK"' EXIT
PASSED=0
FAILED=0

ok() { PASSED=$((PASSED + 1)); }
fail() { FAILED=$((FAILED + 1)); echo "FAIL: $*" >&2; }

# expect_error "exact stderr line" command...: non-zero exit, exactly that
# one line on stderr.
expect_error() {
  local want=$1; shift
  local err rc
  err=$("$@" 2>&1 >/dev/null); rc=$?
  if [ $rc -eq 0 ]; then fail "expected failure: $*"; return; fi
  if [ "$err" != "$want" ]; then
    fail "wrong message for: $*"$'\n'"  want: $want"$'\n'"  got:  $err"; return
  fi
  ok
}

# no_leftovers DIR: no temporary files left behind.
no_leftovers() {
  if ls "$1" | grep -q '\.tmp$'; then fail "temporary file left in $1: $(ls "$1")"; else ok; fi
}

mpirun_q() { "$MPIEXEC" -q --oversubscribe "$@"; }

finish() {
  echo "$PASSED passed, $FAILED failed"
  [ "$FAILED" -eq 0 ]
}
