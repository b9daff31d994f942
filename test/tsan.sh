#!/usr/bin/env bash
# ThreadSanitizer run of the concurrency tests (ctest label "tsan": the
# sharded in-memory state, the actors, the blocking facade, the store reader,
# supervision and the concurrent model test), in build-tsan/ (the tsan
# preset).
#
# CAF 0.17 as Debian ships it is not instrumented: TSan cannot see the atomics
# of its mailboxes, scheduler and reference counts, so it reports every
# message handed from one actor to another as a data race in our code. So
# this script first builds CAF 0.17.6 itself with -fsanitize=thread, from
# Debian's source tarball of the libcaf-dev package this project uses
# (checked against its SHA-256), once per machine, into
#   ${ROLLBLOCK_TSAN_CAF:-~/.cache/rollblock/caf-0.17.6-tsan}
# and builds the tests against it. Measured here: about 5 CPU
# minutes for CAF, once; about 1 CPU minute for the tests.
#
# TSAN_OPTIONS (the tsan test preset): suppressions=test/tsan.supp (races
# TSan reports inside the uninstrumented libleveldb; see that file) and
# detect_deadlocks=0, because
# memory_state::revert holds all 64 shard locks at once, and TSan's deadlock
# detector aborts (a CHECK failure, not a report) when a thread holds 64
# locks. Lock order there is fixed (shard 0 to 63), and the detector stays
# off for this run only. ROLLBLOCK_MODEL_STEPS=500 keeps the model tests
# within budget (TSan runs them ~10x slower).
set -euo pipefail
cd "$(dirname "$0")/.."
jobs=$(nproc)
caf_version=0.17.6
caf_sha256=e2bf5bd243f08bb7d8adde197cfe3e6d71314ed3378fe0692f8932f4c3b3928c
caf_tarball=actor-framework_${caf_version}.orig.tar.gz
caf_urls=(
  "http://deb.debian.org/debian/pool/main/a/actor-framework/$caf_tarball"
  "https://snapshot.debian.org/archive/debian/20250520T000000Z/pool/main/a/actor-framework/$caf_tarball"
)
caf_dir=${ROLLBLOCK_TSAN_CAF:-${XDG_CACHE_HOME:-$HOME/.cache}/rollblock/caf-$caf_version-tsan}

if [ ! -f "$caf_dir/lib/libcaf_core.so" ] || [ ! -f "$caf_dir/lib/libcaf_io.so" ]; then
  echo "building CAF $caf_version with ThreadSanitizer into $caf_dir"
  work=$(mktemp -d)
  trap 'rm -rf "$work"' EXIT
  for url in "${caf_urls[@]}"; do
    if curl -fsSL -o "$work/$caf_tarball" "$url"; then
      break
    fi
  done
  echo "$caf_sha256  $work/$caf_tarball" | sha256sum -c --quiet
  tar xzf "$work/$caf_tarball" -C "$work"
  src=$work/actor-framework-$caf_version
  # GCC 12 needs <limits> here (Debian's package patches the same).
  sed -i 's/#include <memory>/#include <limits>\n#include <memory>/' \
    "$src/libcaf_io/caf/io/network/receive_buffer.hpp"
  cmake -S "$src" -B "$work/build" -G Ninja -DCMAKE_BUILD_TYPE=None \
    -DCMAKE_CXX_FLAGS="-O1 -g -fsanitize=thread -fno-omit-frame-pointer" \
    -DCMAKE_SHARED_LINKER_FLAGS=-fsanitize=thread \
    -DCAF_NO_EXAMPLES=yes -DCAF_NO_UNIT_TESTS=yes -DCAF_NO_OPENSSL=yes \
    -DCAF_NO_TOOLS=yes -DCAF_NO_PYTHON=yes -DCAF_NO_OPENCL=yes \
    -DCAF_NO_COMPILER_CHECK=yes -DCMAKE_INSTALL_PREFIX="$caf_dir" >/dev/null
  cmake --build "$work/build" -j "$jobs" --target install >/dev/null
fi

# The paths themselves, not CAF_ROOT: a build-tsan/ configured before keeps
# the system CAF in its cache otherwise.
cmake --preset tsan -DCAF_INCLUDE_DIR="$caf_dir/include" \
  -DCAF_CORE_LIBRARY="$caf_dir/lib/libcaf_core.so" \
  -DCAF_IO_LIBRARY="$caf_dir/lib/libcaf_io.so" >/dev/null
cmake --build --preset tsan -j "$jobs" --target tsan_tests
ctest --preset tsan -j "$jobs" -L tsan
