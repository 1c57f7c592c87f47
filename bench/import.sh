#!/usr/bin/env bash
# Benchmark: URL import of one file from a local nginx (scripts/services/nginx.sh) through
# filegate (release build), beside the same run's `curl -o` + `sync` of the same file to the same disk,
# and filegate's peak RSS (VmHWM).
#
#   bench/import.sh [SIZE_MIB]       default 1024 (1 GiB)
set -euo pipefail
cd "$(dirname "$0")/.."
SIZE_MIB=${1:-1024}
SERVICES=$(pwd)/scripts/services
export CARGO_TARGET_DIR=${CARGO_TARGET_DIR:-$HOME/.cache/filegate-target}
WORK=$(mktemp -d "${BENCH_DIR:-$PWD}/.bench-XXXXXX")
chmod 755 "$WORK"
cleanup() { [[ -n ${FG_PID:-} ]] && kill "$FG_PID" 2>/dev/null; bash "$WORK/nginx/stop.sh" 2>/dev/null || true; rm -rf "$WORK"; }
trap cleanup EXIT

cargo build --release --locked -q
URL=$(bash "$SERVICES/nginx.sh" "$WORK/nginx" 2>/dev/null | tail -1)
SRC=$WORK/nginx/www/source.bin
head -c $((SIZE_MIB * 1024 * 1024)) /dev/urandom > "$SRC"
BYTES=$(stat -c %s "$SRC")
EXPECTED=$(sha256sum "$SRC" | cut -c1-64)
sync
mbps() { python3 -c "print(f'{$BYTES / $1 / 1e6:.0f}')"; }
now() { date +%s.%N; }

# The limit: the same bytes over loopback HTTP into a file on the same disk, then flushed.
start=$(now)
curl -s -o "$WORK/curl.out" "$URL/files/source.bin"
sync
CURL_S=$(python3 -c "print($(now) - $start)")
rm -f "$WORK/curl.out"
# The same, flushing only this file: curl into dd with conv=fdatasync.
start=$(now)
curl -s "$URL/files/source.bin" | dd of="$WORK/dd.out" bs=8M iflag=fullblock conv=fdatasync status=none
DD_S=$(python3 -c "print($(now) - $start)")
rm -f "$WORK/dd.out"

"$CARGO_TARGET_DIR/release/filegate" serve --listen 127.0.0.1:0 --data-dir "$WORK/data" \
  --api-keys bench:bench-key-0001 --import-allow-cidrs 127.0.0.1/32 > "$WORK/fg.out" 2> "$WORK/fg.err" &
FG_PID=$!
for _ in $(seq 1 100); do grep -q '^listening on ' "$WORK/fg.out" && break; sleep 0.1; done
FG=$(sed -n 's/^listening on //p' "$WORK/fg.out")
RSS_IDLE=$(awk '/VmHWM/ {print $2}' /proc/$FG_PID/status)

start=$(now)
ID=$(curl -s -X POST "$FG/v1/files" -H 'Authorization: bench-key-0001' -H 'Content-Type: application/json' \
  -d "{\"source_url\": \"$URL/files/source.bin\", \"model\": \"bench\"}" | python3 -c 'import json,sys; print(json.load(sys.stdin)["id"])')
while :; do
  TASK=$(curl -s "$FG/v1/files/$ID?wait=30" -H 'Authorization: bench-key-0001')
  STATUS=$(python3 -c 'import json,sys; print(json.loads(sys.argv[1])["status"])' "$TASK")
  [[ $STATUS == ready || $STATUS == failed ]] && break
done
FG_S=$(python3 -c "print($(now) - $start)")
RSS_PEAK=$(awk '/VmHWM/ {print $2}' /proc/$FG_PID/status)
DIGEST=$(python3 -c 'import json,sys; print(json.loads(sys.argv[1])["sha256"])' "$TASK")
[[ $STATUS == ready && $DIGEST == "$EXPECTED" ]] || { echo "import failed or digest mismatch: $TASK" >&2; exit 1; }

echo "| what | time | MB/s |"
echo "|---|---|---|"
printf '| curl -o + sync (loopback + disk limit) | %.2f s | %s |\n' "$CURL_S" "$(mbps "$CURL_S")"
printf '| curl \\| dd conv=fdatasync (the same, flushing one file) | %.2f s | %s |\n' "$DD_S" "$(mbps "$DD_S")"
printf '| **filegate URL import (create → ready)** | %.2f s | **%s** |\n' "$FG_S" "$(mbps "$FG_S")"
echo
echo "size: $SIZE_MIB MiB; filegate = $(python3 -c "print(f'{$(mbps "$FG_S") / $(mbps "$CURL_S"):.0%}')") of curl -o + sync, $(python3 -c "print(f'{$(mbps "$FG_S") / $(mbps "$DD_S"):.0%}')") of curl | dd"
echo "filegate peak RSS: $((RSS_IDLE / 1024)) MiB idle → $((RSS_PEAK / 1024)) MiB after the import (VmHWM)"
