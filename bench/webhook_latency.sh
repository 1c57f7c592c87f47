#!/usr/bin/env bash
# Benchmark: webhook delivery latency, from the change an event reports (its commit) to the receiver, with
# files made at a steady rate (default 100 per second for 30 s) through a release filegate on SQLite and
# local disk; a loopback receiver in Python, and for scale the same receiver's latency for a plain POST.
#
#   bench/webhook_latency.sh [RATE] [SECONDS]
#
# Prints Markdown rows for docs/benchmarks.md.
set -euo pipefail
cd "$(dirname "$0")/.."
export CARGO_TARGET_DIR=${CARGO_TARGET_DIR:-$HOME/.cache/filegate-target}
RATE=${1:-100}
SECONDS_=${2:-30}
WORK=$(mktemp -d "${BENCH_DIR:-$PWD}/.bench-XXXXXX")
cleanup() {
  [[ -n ${FG_PID:-} ]] && kill "$FG_PID" 2>/dev/null
  rm -rf "$WORK"
}
trap cleanup EXIT
cargo build --release --locked -q
KEY=bench-key-0001
FILEGATE_LISTEN=127.0.0.1:0 FILEGATE_DATA_DIR="$WORK/data" FILEGATE_API_KEYS="bench:$KEY" RUST_LOG=warn \
  FILEGATE_WEBHOOK_ALLOW_HTTP=true FILEGATE_IMPORT_ALLOW_CIDRS=127.0.0.1/32 \
  "$CARGO_TARGET_DIR/release/filegate" serve >"$WORK/fg.out" 2>"$WORK/fg.log" &
FG_PID=$!
until grep -q "listening on" "$WORK/fg.out" 2>/dev/null; do sleep 0.1; done
FG=$(awk '/listening on/ {print $3}' "$WORK/fg.out")
echo "| Events | received | p50 | p99 | max |"
echo "|---|---|---|---|---|"
python3 bench/webhook_latency.py "$FG" "$KEY" "$RATE" "$SECONDS_"
