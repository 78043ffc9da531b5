#!/usr/bin/env bash
# The layer's cost over real HTTP: the quickstart example served twice,
# without the layer (RATE_LIMIT=off) and with it at a quota the load never
# exhausts (QUOTA=1000000000/d), each loaded with wrk from one client IP;
# prints both requests/second and their ratio, per round and the median.
#
# Usage: scripts/wrk.sh
# Environment (defaults in brackets):
#   WRK_THREADS [1]  WRK_CONNECTIONS [16]  WRK_DURATION [10s]
#   WRK_WARMUP [2s]  a discarded wrk run before each measured one ("0" skips)
#   QUOTA_ON [1000000000/d]  the quota of the limited run
#   WRK_ON_ENV []  more VAR=value settings for the limited server, e.g.
#                  "HEADERS=none" to leave the rate-limit headers out
#   WRK_ROUNDS [5]  rounds of one run each without and with the layer (order
#                   alternating); the median of their ratios is the figure,
#                   since wrk and the server share the machine's cores and a
#                   single pair moves by ±0.07 on a 2-core VM
#
# Both servers run with RUST_LOG=warn: the quickstart's default filter turns
# on tollgate's debug span for every request, which would measure logging.
set -euo pipefail

cd "$(dirname "$0")/.."

THREADS=${WRK_THREADS:-1}
CONNECTIONS=${WRK_CONNECTIONS:-16}
DURATION=${WRK_DURATION:-10s}
WARMUP=${WRK_WARMUP:-2s}
QUOTA_ON=${QUOTA_ON:-1000000000/d}
ROUNDS=${WRK_ROUNDS:-5}
read -r -a ON_ENV <<<"${WRK_ON_ENV:-}"

if ! command -v wrk >/dev/null 2>&1; then
    echo "wrk is not installed (on Debian/Ubuntu: apt-get install -y wrk)" >&2
    exit 1
fi

echo "building the quickstart example (release)..." >&2
cargo build --release --example quickstart >&2
target_dir=$(cargo metadata --format-version 1 --no-deps 2>/dev/null |
    sed -n 's/.*"target_directory":"\([^"]*\)".*/\1/p')
BIN="${target_dir:-target}/release/examples/quickstart"
if [[ ! -x "$BIN" ]]; then
    echo "built binary not found at $BIN" >&2
    exit 1
fi

WORK=$(mktemp -d)
SERVER_PID=""
WRK_PID=""

stop_server() {
    if [[ -n "$SERVER_PID" ]] && kill -0 "$SERVER_PID" 2>/dev/null; then
        kill "$SERVER_PID" 2>/dev/null || true
        wait "$SERVER_PID" 2>/dev/null || true
    fi
    SERVER_PID=""
}

cleanup() {
    if [[ -n "$WRK_PID" ]]; then
        kill "$WRK_PID" 2>/dev/null || true
    fi
    stop_server
    rm -rf "$WORK"
}
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

# Whether something accepts connections on 127.0.0.1:$1.
port_open() {
    (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null
}

# A port nobody listens on (the server's bind is checked after start).
free_port() {
    local port
    for _ in $(seq 100); do
        port=$((20000 + RANDOM % 40000))
        if ! port_open "$port"; then
            echo "$port"
            return 0
        fi
    done
    echo "no free port found" >&2
    return 1
}

# start_server NAME ENV...: starts the quickstart with the given environment
# on a free port; sets SERVER_PID and PORT once it accepts connections.
start_server() {
    local name=$1
    shift
    local attempt
    for attempt in 1 2 3; do
        PORT=$(free_port)
        env RUST_LOG=warn PORT="$PORT" "$@" "$BIN" >"$WORK/$name.log" 2>&1 &
        SERVER_PID=$!
        local waited=0
        while ((waited < 200)); do
            if ! kill -0 "$SERVER_PID" 2>/dev/null; then
                break
            fi
            if port_open "$PORT"; then
                return 0
            fi
            sleep 0.05
            waited=$((waited + 1))
        done
        echo "server '$name' did not come up on port $PORT (attempt $attempt):" >&2
        cat "$WORK/$name.log" >&2
        stop_server
    done
    return 1
}

# load DURATION OUTPUT: runs wrk against the server into OUTPUT. In the
# background with `wait`, so a signal stops the script (and the trap kills
# wrk and the server) without waiting for wrk to finish.
load() {
    wrk -t"$THREADS" -c"$CONNECTIONS" -d"$1" "http://127.0.0.1:$PORT/" >"$2" &
    WRK_PID=$!
    wait "$WRK_PID"
    WRK_PID=""
}

# Prints the status line and headers of GET / (for a sanity check).
probe() {
    if command -v curl >/dev/null 2>&1; then
        curl -s -D - -o /dev/null "http://127.0.0.1:$PORT/"
    else
        printf 'GET / HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n' |
            (exec 3<>"/dev/tcp/127.0.0.1/$PORT" && cat >&3 && cat <&3)
    fi
}

# run NAME ENV...: serves, checks, loads with wrk; sets RPS to the
# requests/second. Runs in this shell (not in $(...)) so the EXIT trap
# still sees the server to stop if anything fails.
run() {
    local name=$1
    shift
    start_server "$name" "$@"
    local head
    head=$(probe | tr -d '\r')
    if ! grep -q '^HTTP/1.1 200' <<<"$head"; then
        echo "server '$name' did not answer 200:" >&2
        echo "$head" >&2
        exit 1
    fi
    echo "[$name] $(head -1 <<<"$head"), rate-limit headers: $(grep -ci '^x-ratelimit-\|^ratelimit' <<<"$head" || true)" >&2
    if [[ "$WARMUP" != "0" ]]; then
        load "$WARMUP" /dev/null
    fi
    load "$DURATION" "$WORK/$name.wrk"
    sed 's/^/    /' "$WORK/$name.wrk" >&2
    if grep -q 'Non-2xx or 3xx responses' "$WORK/$name.wrk"; then
        echo "WARNING [$name]: some responses were not 2xx (the quota was exhausted?)" >&2
    fi
    stop_server
    RPS=$(awk '/^Requests\/sec:/ {print $2}' "$WORK/$name.wrk")
    if [[ -z "$RPS" ]]; then
        echo "no Requests/sec in wrk's output for '$name'" >&2
        exit 1
    fi
}

echo "wrk -t$THREADS -c$CONNECTIONS -d$DURATION against the quickstart on $(nproc) cores, $ROUNDS round(s)" >&2
ratios=()
for round in $(seq "$ROUNDS"); do
    # Alternate the order so that a drift of the machine during a round
    # does not always favour the same server.
    if ((round % 2 == 1)); then
        run off RATE_LIMIT=off
        off=$RPS
        run on QUOTA="$QUOTA_ON" "${ON_ENV[@]}"
        on=$RPS
    else
        run on QUOTA="$QUOTA_ON" "${ON_ENV[@]}"
        on=$RPS
        run off RATE_LIMIT=off
        off=$RPS
    fi
    ratio=$(awk -v on="$on" -v off="$off" 'BEGIN { printf "%.3f", on / off }')
    ratios+=("$ratio")
    echo
    echo "round $round, requests/second, wrk -t$THREADS -c$CONNECTIONS -d$DURATION:"
    printf '  without the layer (RATE_LIMIT=off)   %12s\n' "$off"
    printf '  with the layer (QUOTA=%s) %12s\n' "$QUOTA_ON" "$on"
    printf '  ratio with/without                   %12s\n' "$ratio"
done
median=$(printf '%s\n' "${ratios[@]}" | sort -n | awk '{ r[NR] = $1 } END {
    if (NR % 2) print r[(NR + 1) / 2]; else printf "%.3f", (r[NR / 2] + r[NR / 2 + 1]) / 2 }')
echo
echo "median ratio with/without over $ROUNDS round(s): $median  (rounds: ${ratios[*]})"
