#!/usr/bin/env bash
# Installs the Debian 12 packages rollblock builds, tests and runs with,
# skipping those already installed. Run as root.
set -euo pipefail
packages=(
  cmake ninja-build g++ pkg-config
  libcaf-dev libleveldb-dev libsnappy-dev libspdlog-dev libfmt-dev
  libboost-program-options-dev libxxhash-dev
  libgtest-dev libgmock-dev libbenchmark-dev liblmdb-dev
  libcpp-httplib-dev redis-tools python3-redis
  clang libclang-rt-14-dev
  curl ca-certificates
)
missing=()
for p in "${packages[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" \
    || missing+=("$p")
done
if [ ${#missing[@]} -gt 0 ]; then
  echo "installing: ${missing[*]}"
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq
  apt-get install -y -qq --no-install-recommends "${missing[@]}"
fi
