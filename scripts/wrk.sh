#!/usr/bin/env bash
# The layer's cost over real HTTP: the quickstart's app served without
# the layer (the baseline) and with it at a quota the load never exhausts
# (QUOTA=1000000000/d), both running side by side, loaded
# from one client IP with short wrk bursts that alternate between them.
# Each round pairs one burst on the baseline with one on the limited
# server (which goes first alternates); the figure is the median of the
# rounds' ratios, with its quartiles.
#
# The servers are `benches/examples/wrk_peers.rs`, built as an
# application builds tollgate. (Until 2026-11-30 they were tollgate's own
# quickstart example, which is compiled with tollgate's dev-dependencies:
# Tokio's `test-util`, under which every read of Tokio's clock takes a
# lock, and since then tollgate's `test-util` feature too.)
#
# Why bursts and not one long run each: on a small VM the machine's speed
# drifts by ±15 % over tens of seconds (other tenants, frequency), which
# swamps a 10 % effect when the two runs are far apart in time. Adjacent
# one-second bursts see the same machine; the control server
# (WRK_PEERS=control) shows the noise that is left. Medians still move by
# a few hundredths between invocations: run it more than once.
#
# Usage: scripts/wrk.sh
# Environment (defaults in brackets):
#   WRK_ROUNDS [30]       rounds (pairs of bursts) per compared server
#   WRK_DURATION [1s]     the length of one burst
#   WRK_THREADS [1]  WRK_CONNECTIONS [16]
#   QUOTA_ON [1000000000/d]  the quota of the limited server
#   WRK_ON_ENV []  more VAR=value settings for the limited server, e.g.
#                  "HEADERS=none" to leave the rate-limit headers out
#   WRK_PIN []     "1": every server on CPU 0 (so Tokio runs one worker)
#                  and wrk on CPU 1, with taskset. The server is then the
#                  bottleneck and the ratio is its own cost's, with less
#                  noise; without it, wrk and the servers share every core
#                  and wrk's own work per request dilutes the server's.
#   WRK_PEERS []   more servers to compare with the same baseline, in the
#                  same rounds, separated by spaces:
#                    control                 a second baseline (the noise:
#                                            its ratio should be 1.00)
#                    tower_governor          tower_governor, same quota
#                    tower_governor_headers  the same with .use_headers()
#                    five_headers            no limiting, only tollgate's
#                                            five headers as constants
#
# Every server runs with RUST_LOG=warn (they install no subscriber; a
# debug filter would measure logging).
set -euo pipefail

cd "$(dirname "$0")/.."

THREADS=${WRK_THREADS:-1}
CONNECTIONS=${WRK_CONNECTIONS:-16}
DURATION=${WRK_DURATION:-1s}
QUOTA_ON=${QUOTA_ON:-1000000000/d}
ROUNDS=${WRK_ROUNDS:-30}
read -r -a ON_ENV <<<"${WRK_ON_ENV:-}"
read -r -a PEERS <<<"${WRK_PEERS:-}"
PIN_SERVER=()
PIN_WRK=()
if [[ "${WRK_PIN:-}" == "1" ]]; then
    if ! command -v taskset >/dev/null 2>&1 || (($(nproc) < 2)); then
        echo "WRK_PIN=1 needs taskset (util-linux) and at least 2 CPUs" >&2
        exit 1
    fi
    PIN_SERVER=(taskset -c 0)
    PIN_WRK=(taskset -c 1)
fi

if ! command -v wrk >/dev/null 2>&1; then
    echo "wrk is not installed (on Debian/Ubuntu: apt-get install -y wrk)" >&2
    exit 1
fi
for peer in "${PEERS[@]}"; do
    case "$peer" in
    control | tower_governor | tower_governor_headers | five_headers) ;;
    *)
        echo "WRK_PEERS: unknown server '$peer'" >&2
        exit 1
        ;;
    esac
done

# One binary serves every server, so all have the same dependency features.
echo "building the servers (release)..." >&2
cargo build --release -p tollgate-benches --example wrk_peers >&2
target_dir=$(cargo metadata --format-version 1 --no-deps 2>/dev/null |
    sed -n 's/.*"target_directory":"\([^"]*\)".*/\1/p')
EXAMPLES="${target_dir:-target}/release/examples"
for bin in wrk_peers; do
    if [[ ! -x "$EXAMPLES/$bin" ]]; then
        echo "built binary not found at $EXAMPLES/$bin" >&2
        exit 1
    fi
done

WORK=$(mktemp -d)
WRK_PID=""
declare -A PID PORT

cleanup() {
    if [[ -n "$WRK_PID" ]]; then
        kill "$WRK_PID" 2>/dev/null || true
    fi
    local name
    for name in "${!PID[@]}"; do
        kill "${PID[$name]}" 2>/dev/null || true
        wait "${PID[$name]}" 2>/dev/null || true
    done
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

# The command line (environment and binary) that serves NAME.
command_for() {
    case "$1" in
    off | control) echo "PEER=bare $EXAMPLES/wrk_peers" ;;
    on) echo "PEER=tollgate QUOTA=$QUOTA_ON ${ON_ENV[*]} $EXAMPLES/wrk_peers" ;;
    *) echo "PEER=$1 $EXAMPLES/wrk_peers" ;;
    esac
}

# start_server NAME: serves NAME on a free port; sets PID[NAME] and
# PORT[NAME] once it accepts connections.
start_server() {
    local name=$1 attempt port pid waited
    local -a cmd
    read -r -a cmd <<<"$(command_for "$name")"
    for attempt in 1 2 3; do
        port=$(free_port)
        # The settings, then the pinning (if any), then the binary.
        env RUST_LOG=warn PORT="$port" "${cmd[@]:0:${#cmd[@]}-1}" \
            "${PIN_SERVER[@]}" "${cmd[-1]}" >"$WORK/$name.log" 2>&1 &
        pid=$!
        PID[$name]=$pid
        waited=0
        while ((waited < 200)); do
            if ! kill -0 "$pid" 2>/dev/null; then
                break
            fi
            if port_open "$port"; then
                PORT[$name]=$port
                return 0
            fi
            sleep 0.05
            waited=$((waited + 1))
        done
        echo "server '$name' did not come up on port $port (attempt $attempt):" >&2
        cat "$WORK/$name.log" >&2
        kill "$pid" 2>/dev/null || true
        wait "$pid" 2>/dev/null || true
        unset "PID[$name]"
    done
    return 1
}

# Prints the status line and headers of GET / on port $1.
probe() {
    if command -v curl >/dev/null 2>&1; then
        curl -s -D - -o /dev/null "http://127.0.0.1:$1/"
    else
        printf 'GET / HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n' |
            (exec 3<>"/dev/tcp/127.0.0.1/$1" && cat >&3 && cat <&3)
    fi
}

# burst NAME: one wrk burst on NAME; sets RPS. wrk runs in the background
# with `wait`, so a signal stops the script (and the trap kills wrk and the
# servers) without waiting for wrk to finish.
burst() {
    local out="$WORK/burst.wrk"
    "${PIN_WRK[@]}" wrk -t"$THREADS" -c"$CONNECTIONS" -d"$DURATION" "http://127.0.0.1:${PORT[$1]}/" >"$out" &
    WRK_PID=$!
    wait "$WRK_PID"
    WRK_PID=""
    if grep -q 'Non-2xx or 3xx responses' "$out"; then
        echo "WARNING [$1]: some responses were not 2xx (the quota was exhausted?)" >&2
    fi
    RPS=$(awk '/^Requests\/sec:/ {print $2}' "$out")
    if [[ -z "$RPS" ]]; then
        echo "no Requests/sec in wrk's output for '$1':" >&2
        cat "$out" >&2
        exit 1
    fi
}

COMPARED=(on "${PEERS[@]}")
for name in off "${COMPARED[@]}"; do
    start_server "$name"
    head=$(probe "${PORT[$name]}" | tr -d '\r')
    if ! grep -q '^HTTP/1.1 200' <<<"$head"; then
        echo "server '$name' did not answer 200:" >&2
        echo "$head" >&2
        exit 1
    fi
    echo "[$name] $(command_for "$name" | sed "s|$EXAMPLES/||"): $(head -1 <<<"$head"), rate-limit headers: $(grep -ci '^x-ratelimit-\|^ratelimit' <<<"$head" || true)" >&2
    burst "$name" # warm-up, discarded
done

pinning="sharing every core"
if ((${#PIN_WRK[@]} > 0)); then
    pinning="servers on CPU 0, wrk on CPU 1"
fi
echo "wrk -t$THREADS -c$CONNECTIONS -d$DURATION bursts on $(nproc) cores ($pinning), $ROUNDS round(s) per server" >&2
declare -A RATIOS
for round in $(seq "$ROUNDS"); do
    line="round $round:"
    count=${#COMPARED[@]}
    for i in $(seq 0 $((count - 1))); do
        # Rotate the order of the servers and alternate which of a pair goes
        # first, so no server is always measured right after the same one.
        name=${COMPARED[$(((i + round) % count))]}
        if (((round + i) % 2 == 1)); then
            burst off
            off=$RPS
            burst "$name"
            this=$RPS
        else
            burst "$name"
            this=$RPS
            burst off
            off=$RPS
        fi
        ratio=$(awk -v a="$this" -v b="$off" 'BEGIN { printf "%.3f", a / b }')
        RATIOS[$name]="${RATIOS[$name]:-} $ratio"
        line="$line  $name $ratio (${this%.*}/${off%.*})"
    done
    echo "$line" >&2
done

# Prints "median (q1–q3)" of the numbers on stdin.
summary() {
    sort -n | awk '{ v[NR] = $1 } END {
        m = (NR % 2) ? v[(NR + 1) / 2] : (v[NR / 2] + v[NR / 2 + 1]) / 2
        printf "%.3f (quartiles %.3f-%.3f, %d rounds)", m, v[int((NR + 3) / 4)], v[int((3 * NR + 3) / 4)], NR }'
}

echo
echo "requests/second against the app without a layer, median of the rounds' ratios:"
for name in "${COMPARED[@]}"; do
    # shellcheck disable=SC2086 # the ratios are words by design
    printf '  %-24s %s\n' "$name" "$(printf '%s\n' ${RATIOS[$name]} | summary)"
done
