#!/usr/bin/env bash
# Kill soak, locally: builds soak_test and crash_writer and runs the four
# soak tests (one per durability mode) with 1,000 SIGKILLs or more, each
# restart checked against the model (test/actors/crash_run.hpp). Prints each
# test's tally and one summary line:
#   soak: <kills> kills, <blocks> blocks checked, <lost> lost acknowledged blocks ...
# and exits non-zero when any check fails or any acknowledged block is lost.
#
#   test/soak.sh [kills (default 1000)] [build dir (default build)]
#   ROLLBLOCK_SOAK_SEED=<seed> test/soak.sh ...   reruns a printed seed
set -euo pipefail
cd "$(dirname "$0")/.."
kills=${1:-1000}
build=${2:-build}
if [ ! -f "$build/build.ninja" ] && [ ! -f "$build/Makefile" ]; then
  cmake -S . -B "$build" -G Ninja -DCMAKE_BUILD_TYPE=RelWithDebInfo >/dev/null
fi
cmake --build "$build" --target soak_test crash_writer >/dev/null
# The stores' own log (each reopen) goes to a file; the checks and the tallies
# to the terminal.
echo "store log: $build/soak.log"
ROLLBLOCK_SOAK_KILLS=$kills "$build/test/soak_test" 2>"$build/soak.log"
