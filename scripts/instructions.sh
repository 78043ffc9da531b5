#!/usr/bin/env bash
# Instructions per request of each mode of benches/examples/instructions.rs,
# counted by callgrind: (count at 6,000 requests - count at 2,000) / 4,000,
# each count without the calibration of quanta's clock (which varies from
# run to run; everything else is the same to the instruction). Reproducible to the instruction, unlike wall-clock figures
# on a VM: use it to see a small change, and criterion for time.
#
# Usage: scripts/instructions.sh MODE...   (e.g. bare http_none tower_governor)
# Needs valgrind (apt-get install valgrind).
set -euo pipefail
cd "$(dirname "$0")/.."
cargo build --release -q -p tollgate-benches --example instructions
out=$(mktemp -d)
trap 'rm -rf "$out"' EXIT
count() {
    local file=$1 total calibration
    total=$(callgrind_annotate --inclusive=yes "$file" | awk '/PROGRAM TOTALS/ {gsub(",", "", $1); print $1}')
    # quanta calibrates its clock once, in a once_cell, for as long as it
    # takes to converge: the only part of a count that varies between runs.
    calibration=$(callgrind_annotate --inclusive=yes "$file" | awk '/once_cell::imp::OnceCell<T>::initialize \[/ {gsub(",", "", $1); print $1; exit}')
    echo $((total - ${calibration:-0}))
}
for mode in "$@"; do
    for n in 2000 6000; do
        valgrind -q --tool=callgrind --callgrind-out-file="$out/$n" \
            "${CARGO_TARGET_DIR:-target}/release/examples/instructions" "$mode" "$n" >/dev/null
    done
    printf '%-28s %6d\n' "$mode" $(( ($(count "$out/6000") - $(count "$out/2000")) / 4000 ))
done
