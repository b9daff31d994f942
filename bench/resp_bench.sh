#!/usr/bin/env bash
# RESP benchmark: redis-benchmark against rollblockd and against redis-server
# on the same machine in the same run. GET and MGET (10 keys), pipelining 1
# and 16, 50 clients. Both servers get the same 100,000 keys
# (key:000000000000 .. key:000000099999, 16 bytes: rollblockd runs with
# --key-bytes 16) with the same 8-byte values, so every read is a hit.
#
# usage: bench/resp_bench.sh [ROLLBLOCKD]    (default: build/app/rollblockd)
# env:   KEYS (100000), CLIENTS (50), N_P1 (1000000), N_P16 (5000000),
#        REPEAT (2: each figure is the best of REPEAT runs)
# Installs redis-server / redis-tools with apt-get when missing (needs root).
# Starts both servers on free loopback ports with temporary directories and
# stops them (and removes the directories) on exit.
set -euo pipefail

here=$(cd "$(dirname "$0")" && pwd)
rollblockd=${1:-$here/../build/app/rollblockd}
KEYS=${KEYS:-100000}
CLIENTS=${CLIENTS:-50}
N_P1=${N_P1:-1000000}
N_P16=${N_P16:-5000000}
REPEAT=${REPEAT:-2}
PY=/usr/bin/python3 # Debian's python3 (python3-redis); not a pyenv one

if [ ! -x "$rollblockd" ]; then
  echo "resp_bench: no rollblockd at $rollblockd (build it, or pass its path)" >&2
  exit 2
fi
missing=()
command -v redis-server >/dev/null || missing+=(redis-server)
command -v redis-benchmark >/dev/null || missing+=(redis-tools)
$PY -c 'import redis' 2>/dev/null || missing+=(python3-redis)
if [ ${#missing[@]} -gt 0 ]; then
  echo "resp_bench: installing ${missing[*]}" >&2
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq
  apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
fi

tmp=$(mktemp -d /tmp/resp-bench.XXXXXX)
pids=()
cleanup() {
  for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done
  for p in "${pids[@]}"; do wait "$p" 2>/dev/null || true; done
  rm -rf "$tmp"
}
trap cleanup EXIT

free_port() {
  $PY -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'
}

wait_ping() { # port
  for _ in $(seq 100); do
    if [ "$(redis-cli -p "$1" PING 2>/dev/null)" = PONG ]; then return 0; fi
    sleep 0.1
  done
  echo "resp_bench: no PONG on port $1" >&2
  exit 1
}

redis_port=$(free_port)
mkdir -p "$tmp/redis"
redis-server --port "$redis_port" --bind 127.0.0.1 --save "" --appendonly no \
  --dir "$tmp/redis" --logfile "$tmp/redis/log" &
pids+=($!)
rb_port=$(free_port)
"$rollblockd" --data-dir "$tmp/rollblockd" --port "$rb_port" --key-bytes 16 \
  --log-level warn 2>"$tmp/rollblockd.log" &
pids+=($!)
wait_ping "$redis_port"
wait_ping "$rb_port"

echo "loading $KEYS keys into both servers" >&2
$PY - "$redis_port" "$rb_port" "$KEYS" <<'PYEOF'
import struct, sys, redis
redis_port, rb_port, n = map(int, sys.argv[1:4])
r = redis.Redis(port=redis_port)
b = redis.Redis(port=rb_port)
chunk = 1000
for h, start in enumerate(range(0, n, chunk), start=1):
    kv = []
    for i in range(start, min(n, start + chunk)):
        kv += [b"key:%012d" % i, struct.pack("<Q", i)]
    r.mset(dict(zip(kv[0::2], kv[1::2])))
    b.execute_command("BLOCK.APPLY", h, *kv)
for port, c in ((redis_port, r), (rb_port, b)):
    k = b"key:%012d" % (n - 1)
    assert c.get(k) == struct.pack("<Q", n - 1), (port, c.get(k))
PYEOF

mget_keys=()
for _ in $(seq 10); do mget_keys+=("key:__rand_int__"); done

# run NAME PORT TEST PIPELINE -> best requests/s of REPEAT runs
run() {
  local port=$2 test=$3 p=$4 n best=0 rps
  n=$([ "$p" = 1 ] && echo "$N_P1" || echo "$N_P16")
  for _ in $(seq "$REPEAT"); do
    if [ "$test" = GET ]; then
      rps=$(redis-benchmark -h 127.0.0.1 -p "$port" -c "$CLIENTS" -n "$n" \
              -r "$KEYS" -P "$p" -t get --csv 2>/dev/null | awk -F'"' '/"GET"/ {print $4}')
    else
      rps=$(redis-benchmark -h 127.0.0.1 -p "$port" -c "$CLIENTS" -n "$n" \
              -r "$KEYS" -P "$p" --csv MGET "${mget_keys[@]}" 2>/dev/null \
              | awk -F'"' '/"MGET/ {print $4}')
    fi
    echo "  $1 $test -P $p: ${rps:-?} req/s" >&2
    best=$(awk -v a="$best" -v b="${rps:-0}" 'BEGIN{print (b+0 > a+0) ? b : a}')
  done
  echo "$best"
}

echo "machine: $(nproc) cores, $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | sed 's/^ //'), load $(cut -d' ' -f1-3 /proc/loadavg), $(date -u +%Y-%m-%dT%H:%MZ)"
echo "redis-server $(redis-server --version | awk '{print $3}' | sed 's/v=//'), $CLIENTS clients, $KEYS keys, best of $REPEAT; MGET = 10 keys"
printf '| %-7s | %-3s | %14s | %14s | %8s |\n' command P "rollblockd/s" "redis-server/s" ratio
printf '| %-7s | %-3s | %14s | %14s | %8s |\n' ------- --- -------------- -------------- --------
for test in GET MGET; do
  for p in 1 16; do
    rb=$(run rollblockd "$rb_port" "$test" "$p")
    rs=$(run redis-server "$redis_port" "$test" "$p")
    ratio=$(awk -v a="$rb" -v b="$rs" 'BEGIN{ if (b > 0) printf "%.0f%%", 100*a/b; else print "?" }')
    printf '| %-7s | %-3s | %14.0f | %14.0f | %8s |\n' "$test" "$p" "$rb" "$rs" "$ratio"
  done
done
