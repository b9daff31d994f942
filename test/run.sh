#!/usr/bin/env bash
# Builds rollblock and runs the whole test suite: every test in a release
# build, then the storage and actor tests again under AddressSanitizer and
# UndefinedBehaviorSanitizer. Installs missing packages first.
set -euo pipefail
cd "$(dirname "$0")/.."
bash deploy/install-deps.sh
jobs=$(nproc)
cmake --preset default >/dev/null
cmake --build --preset default -j "$jobs"
ctest --preset default -j "$jobs"
cmake --preset asan-ubsan >/dev/null
cmake --build --preset asan-ubsan -j "$jobs" --target engine_tests
ctest --preset asan-ubsan -j "$jobs" -L 'messages|storage|actors'
