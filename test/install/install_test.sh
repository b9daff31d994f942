#!/usr/bin/env bash
# Installs rollblock from a build tree into a temporary prefix, builds the
# README's two embedding examples as an outside project with
# find_package(rollblock), and runs them.
# Usage: install_test.sh BUILD_DIR SOURCE_DIR
set -euo pipefail
build=$1
source=$2
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
cmake --install "$build" --prefix "$work/prefix" >/dev/null
mkdir -p "$work/src"
# Each example is the fenced block after a line <!-- example: NAME -->.
awk -v dir="$work/src" '
  /^<!-- example: .* -->$/ { name = $3; next }
  name != "" && /^```cpp$/ { out = dir "/" name; next }
  out != "" && /^```$/ { close(out); out = ""; name = ""; next }
  out != "" { print > out }
' "$source/README.md"
for f in actor_example.cpp blocking_example.cpp; do
  [ -s "$work/src/$f" ] || { echo "README has no example $f"; exit 1; }
done
cp "$source/test/install/CMakeLists.txt.in" "$work/src/CMakeLists.txt"
cmake -S "$work/src" -B "$work/build" -G Ninja \
  -DCMAKE_PREFIX_PATH="$work/prefix" >/dev/null
cmake --build "$work/build" >/dev/null
out=$("$work/build/blocking_example" "$work/blocking-data")
[ "$out" = "alice = 100 at block 1" ] || { echo "blocking_example said: $out"; exit 1; }
out=$("$work/build/actor_example" "$work/actor-data")
[ "$out" = "alice = 100 at block 1" ] || { echo "actor_example said: $out"; exit 1; }
echo "installed package, find_package(rollblock) and both README examples work"
