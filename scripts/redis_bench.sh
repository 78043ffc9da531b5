#!/usr/bin/env bash
# Checks per second through tollgate's Redis backend against redis-benchmark
# replaying the very same EVALSHA (captured with MONITOR) at the same
# concurrency on the same number of keys, on a private redis-server.
#
# Usage: scripts/redis_bench.sh   (CONCURRENCY [32], KEYS [500], DURATION seconds [5])
set -euo pipefail
cd "$(dirname "$0")/.."

CONCURRENCY=${CONCURRENCY:-32}
KEYS=${KEYS:-500}
DURATION=${DURATION:-5}
for tool in redis-server redis-cli redis-benchmark; do
    command -v "$tool" >/dev/null || { echo "$tool missing (apt-get install -y redis-server redis-tools)" >&2; exit 1; }
done

cargo build --release --example redis_load --features redis >&2
BIN=target/release/examples/redis_load

PORT=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')
WORK=$(mktemp -d)
redis-server --port "$PORT" --bind 127.0.0.1 --save '' --appendonly no --dir "$WORK" >/dev/null &
SERVER=$!
MON=""
cleanup() { kill "$SERVER" ${MON:+"$MON"} 2>/dev/null || true; rm -rf "$WORK"; }
trap cleanup EXIT
for _ in $(seq 50); do redis-cli -p "$PORT" ping >/dev/null 2>&1 && break; sleep 0.1; done

# One call under MONITOR gives the exact EVALSHA the backend sends.
redis-cli -p "$PORT" monitor > "$WORK/monitor" &
MON=$!
sleep 0.3
REDIS_URL="redis://127.0.0.1:$PORT/" CONCURRENCY=1 KEYS=1 SECONDS=1 "$BIN" >/dev/null
kill "$MON"; MON=""
LINE=$(grep -m1 -i '"evalsha"' "$WORK/monitor" || true)
[ -n "$LINE" ] || { echo "no EVALSHA seen" >&2; exit 1; }
# Turn the monitor line into arguments; spread calls over KEYS keys.
mapfile -t ARGS < <(python3 - "$LINE" <<'PY'
import re, sys, shlex
line = sys.argv[1]
args = re.findall(r'"((?:[^"\\]|\\.)*)"', line)
args = [bytes(a, "utf-8").decode("unicode_escape") for a in args]
# args[0] is "evalsha", args[3] the first key: make it vary per call.
args[3] = args[3][:-9] + "__rand_int__}"
for a in args:
    print(a)
PY
)
# Keep the quota from running out: the captured call carried `now`; drop
# nothing else, the script reads TIME when no time is passed.
OURS=$(REDIS_URL="redis://127.0.0.1:$PORT/" CONCURRENCY=$CONCURRENCY KEYS=$KEYS SECONDS=$DURATION "$BIN" | awk '/checks\/s/{print $2}')
THEIRS=$(redis-benchmark -p "$PORT" -c "$CONCURRENCY" -r "$KEYS" -n $((CONCURRENCY * 2000)) -q "${ARGS[@]}" 2>/dev/null \
    | tr '\r' '\n' | awk '/requests per second/{v=$(NF-5)} END{print v}')
echo "checks/s through RedisBackend:      $OURS"
echo "redis-benchmark, same EVALSHA:       $THEIRS"
python3 -c "print(f'ratio: {float(\"$OURS\")/float(\"$THEIRS\"):.2f}')"
