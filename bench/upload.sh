#!/usr/bin/env bash
# Benchmark: a resumable upload in 8 MiB chunks through filegate (release build), beside the machine's
# limits measured in the same run on the same disk:
#   - disk:     dd of the same file with conv=fdatasync
#   - loopback: curl POSTing the same file to an nginx sink (scripts/services/nginx.sh)
#   - hashing:  sha256 of the same file (Python's hashlib, OpenSSL)
# and filegate's peak RSS (VmHWM) before and after.
#
#   bench/upload.sh [SIZE_MIB]       default 1024 (1 GiB)
#
# Prints a Markdown table row set for docs/benchmarks.md. Needs nginx (installed by the shared script).
set -euo pipefail
cd "$(dirname "$0")/.."
SIZE_MIB=${1:-1024}
SERVICES=$(pwd)/scripts/services
export CARGO_TARGET_DIR=${CARGO_TARGET_DIR:-$HOME/.cache/filegate-target}
WORK=$(mktemp -d "${BENCH_DIR:-$PWD}/.bench-XXXXXX")
cleanup() { [[ -n ${FG_PID:-} ]] && kill "$FG_PID" 2>/dev/null; "$WORK/nginx/stop.sh" 2>/dev/null || true; rm -rf "$WORK"; }
trap cleanup EXIT

cargo build --release --locked -q
SRC=$WORK/source.bin
head -c $((SIZE_MIB * 1024 * 1024)) /dev/urandom > "$SRC"
BYTES=$(stat -c %s "$SRC")
mbps() { python3 -c "print(f'{$BYTES / $1 / 1e6:.0f}')"; }

# Disk: the same bytes, written and fdatasync'ed.
start=$(date +%s.%N)
dd if="$SRC" of="$WORK/dd.out" bs=8M conv=fdatasync status=none
DD_S=$(python3 -c "print($(date +%s.%N) - $start)")
rm -f "$WORK/dd.out"

# Loopback HTTP: curl to nginx's sink, which discards the body.
URL=$("$SERVICES/nginx.sh" "$WORK/nginx" 2>/dev/null | tail -1)
CURL_S=$(curl -s -o /dev/null -w '%{time_total}' -T "$SRC" -H 'Expect:' "$URL/sink")

# Hashing: the same bytes through SHA-256.
HASH_S=$(python3 -c "
import hashlib, time
h = hashlib.sha256(); t = time.monotonic()
with open('$SRC', 'rb') as f:
    while b := f.read(8 << 20): h.update(b)
print(time.monotonic() - t)")

# filegate: one resumable upload, 8 MiB chunks, keep-alive.
"$CARGO_TARGET_DIR/release/filegate" serve --listen 127.0.0.1:0 --data-dir "$WORK/data" \
  --api-keys bench:bench-key-0001 > "$WORK/fg.out" 2> "$WORK/fg.err" &
FG_PID=$!
for _ in $(seq 1 100); do grep -q '^listening on ' "$WORK/fg.out" && break; sleep 0.1; done
FG_URL=$(sed -n 's/^listening on //p' "$WORK/fg.out")
RSS_IDLE=$(awk '/VmHWM/ {print $2}' /proc/$FG_PID/status)
read -r FG_S DIGEST _ < <(python3 bench/upload_client.py "$FG_URL" bench-key-0001 "$SRC")
RSS_PEAK=$(awk '/VmHWM/ {print $2}' /proc/$FG_PID/status)
EXPECTED=$(python3 -c "import hashlib,base64; h=hashlib.sha256(); f=open('$SRC','rb')
while b := f.read(8<<20): h.update(b)
print(base64.b64encode(h.digest()).decode())")
[[ $DIGEST == "$EXPECTED" ]] || { echo "digest mismatch: $DIGEST != $EXPECTED" >&2; exit 1; }

LIMIT=$(python3 -c "print(min($(mbps "$DD_S"), $(mbps "$CURL_S")))")
echo "| what | time | MB/s |"
echo "|---|---|---|"
printf '| dd conv=fdatasync (disk limit) | %.2f s | %s |\n' "$DD_S" "$(mbps "$DD_S")"
printf '| curl → nginx /sink (loopback limit) | %.2f s | %s |\n' "$CURL_S" "$(mbps "$CURL_S")"
printf '| sha256 (hashlib) | %.2f s | %s |\n' "$HASH_S" "$(mbps "$HASH_S")"
printf '| **filegate resumable upload, 8 MiB chunks** | %.2f s | **%s** |\n' "$FG_S" "$(mbps "$FG_S")"
echo
echo "size: $SIZE_MIB MiB; filegate = $(python3 -c "print(f'{$(mbps "$FG_S") / $LIMIT:.0%}')") of the slower limit ($LIMIT MB/s);"
echo "filegate peak RSS: $((RSS_IDLE / 1024)) MiB idle → $((RSS_PEAK / 1024)) MiB after the upload (VmHWM)"
