#!/usr/bin/env bash
# Installs missing packages, builds rollblock and starts rollblockd on ./data
# (RESP on 127.0.0.1:7390). Extra arguments go to rollblockd.
set -euo pipefail
cd "$(dirname "$0")/.."
bash deploy/install-deps.sh
cmake --preset default >/dev/null
cmake --build --preset default -j "$(nproc)" --target rollblockd rollblock
exec ./build/app/rollblockd --data-dir ./data "$@"
