#!/usr/bin/env bash
# The quick start's test command (and CI's): install what is needed, build,
# run the whole ctest suite; then build again with AddressSanitizer and
# UndefinedBehaviorSanitizer and run the suite there too: the unit tests
# with leak detection, the command tests without (Open MPI's own
# allocations at exit would drown the report), and without the tests
# labelled slow (end-to-end runs that would take ten times as long).
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
bash "$root/jobs/install-deps.sh" --test
bash "$root/jobs/build.sh" "$root/build"
(cd "$root/build" && ctest --output-on-failure -j2 --timeout 600)
bash "$root/jobs/build.sh" "$root/build-asan" -DAESNET_SANITIZE=ON -DAESNET_CUDA=OFF -DCMAKE_BUILD_TYPE=RelWithDebInfo
(cd "$root/build-asan" && ctest --output-on-failure -j2 -L unit --timeout 600)
(cd "$root/build-asan" && ASAN_OPTIONS=detect_leaks=0 ctest --output-on-failure -j2 -LE 'unit|slow' --timeout 600)
