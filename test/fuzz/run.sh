#!/usr/bin/env bash
# Runs every libFuzzer target of test/fuzz for a bounded time, all at once,
# each starting from its seed corpus (test/fuzz/corpus/<name>/, left
# unchanged: new inputs go to a scratch directory). Fails when any target
# finds a crash, a sanitizer report or a broken invariant; the input that
# did it is kept as <build dir>/fuzz-artifacts/<name>-crash-... (replay:
# <build dir>/test/fuzz/<name>_fuzz <that file>).
#
#   test/fuzz/run.sh [seconds per target (default 60)] [build dir (default build-fuzz)]
#
# Build first: cmake --preset fuzz && cmake --build --preset fuzz.
set -euo pipefail
cd "$(dirname "$0")/../.."
seconds=${1:-60}
build=$(realpath "${2:-build-fuzz}")
targets=(resp_parser journal_entry journal_segment daemon_options)
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
mkdir -p "$build/fuzz-artifacts"
pids=()
for name in "${targets[@]}"; do
  mkdir -p "$work/$name"
  "$build/test/fuzz/${name}_fuzz" -max_total_time="$seconds" -timeout=10 \
    -rss_limit_mb=2048 -print_final_stats=1 \
    -artifact_prefix="$build/fuzz-artifacts/$name-" \
    "$work/$name" "$PWD/test/fuzz/corpus/$name" >"$work/$name.log" 2>&1 &
  pids+=($!)
done
status=0
for i in "${!targets[@]}"; do
  name=${targets[$i]}
  if wait "${pids[$i]}"; then
    runs=$(grep -m1 'stat::number_of_executed_units' "$work/$name.log" \
           | awk '{print $2}')
    echo "fuzz $name: ${runs:-?} runs in ${seconds} s, no crash"
  else
    status=1
    echo "fuzz $name: FAILED; its output:"
    grep -v '^INFO:' "$work/$name.log" | tail -60
  fi
done
exit $status
