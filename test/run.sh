#!/usr/bin/env bash
# Builds rollblock and runs the whole test suite: every test in a release
# build (the kill soak included: ctest label soak, 200 SIGKILLs), then the
# storage and actor tests again under AddressSanitizer and
# UndefinedBehaviorSanitizer, the libFuzzer targets (clang) for a bounded time
# each, and the concurrency tests under ThreadSanitizer. Installs missing
# packages first.
set -euo pipefail
cd "$(dirname "$0")/.."
# Names the stage that begins, after the seconds since the start.
stage_start=$SECONDS
stage() {
  echo "== [$((SECONDS - stage_start)) s] $*"
}
stage packages
bash deploy/install-deps.sh
jobs=$(nproc)
stage release build
cmake --preset default >/dev/null
cmake --build --preset default -j "$jobs"
stage release tests
ctest --preset default -j "$jobs"
stage sanitizer build
cmake --preset asan-ubsan >/dev/null
cmake --build --preset asan-ubsan -j "$jobs" --target engine_tests
stage sanitizer tests
ctest --preset asan-ubsan -j "$jobs" -L 'messages|storage|actors'
# Fuzzing: replay every seed, then 45 s of each target (all at once).
stage fuzz build
cmake --preset fuzz >/dev/null
cmake --build --preset fuzz -j "$jobs"
stage fuzz runs
ctest --preset fuzz
bash test/fuzz/run.sh 45
# ThreadSanitizer, against a TSan-built CAF (built once per machine).
stage thread sanitizer
bash test/tsan.sh
stage done
