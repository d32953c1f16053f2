"""The tests' tiny harness: check() records, finish() prints the closing
"N passed, N failed" line and gives the exit code."""
import sys

passed = 0
failed = 0


def check(cond, what):
    global passed, failed
    if cond:
        passed += 1
    else:
        failed += 1
        print("FAIL:", what, file=sys.stderr)


def finish():
    print(f"{passed} passed, {failed} failed")
    return 1 if failed else 0
