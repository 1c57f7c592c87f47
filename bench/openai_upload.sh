#!/usr/bin/env bash
# Benchmark: an OpenAI `files.create` (multipart/form-data on POST /v1/files) of 1 GiB must stream like every
# upload. A release filegate on local disk; the same 1 GiB file sent by curl as the openai SDKs send it (-F
# purpose=user_data -F file=@…), then as a Gemini raw upload, in the same run; filegate's peak RSS (VmHWM)
# after each, and the disk's own write speed (dd conv=fdatasync) for scale.
#
#   bench/openai_upload.sh [SIZE_MIB]
#
# Prints Markdown rows for docs/benchmarks.md.
set -euo pipefail
cd "$(dirname "$0")/.."
export CARGO_TARGET_DIR=${CARGO_TARGET_DIR:-$HOME/.cache/filegate-target}
SIZE_MIB=${1:-1024}
WORK=$(mktemp -d "${BENCH_DIR:-$PWD}/.bench-XXXXXX")
cleanup() {
  [[ -n ${FG_PID:-} ]] && kill "$FG_PID" 2>/dev/null
  rm -rf "$WORK"
}
trap cleanup EXIT
cargo build --release --locked -q
KEY=bench-key-0001
head -c $((SIZE_MIB * 1024 * 1024)) /dev/urandom >"$WORK/payload.bin"
FILEGATE_LISTEN=127.0.0.1:0 FILEGATE_DATA_DIR="$WORK/data" FILEGATE_API_KEYS="bench:$KEY" RUST_LOG=warn \
  "$CARGO_TARGET_DIR/release/filegate" serve >"$WORK/fg.out" 2>"$WORK/fg.log" &
FG_PID=$!
until grep -q "listening on" "$WORK/fg.out" 2>/dev/null; do sleep 0.1; done
FG=$(awk '/listening on/ {print $3}' "$WORK/fg.out")
hwm() { awk '/VmHWM/ {printf "%.0f MiB", $2 / 1024}' "/proc/$FG_PID/status"; }
rate() { awk -v b=$((SIZE_MIB * 1048576)) -v t="$1" 'BEGIN {printf "%.0f MB/s", b / t / 1e6}'; }

echo "| $SIZE_MIB MiB, local disk | time | rate | filegate peak RSS after |"
echo "|---|---|---|---|"
t=$(curl -sS -o "$WORK/openai.json" -w '%{time_total}' -H "Authorization: Bearer $KEY" \
  -F purpose=user_data -F "file=@$WORK/payload.bin;type=application/octet-stream" "$FG/v1/files")
grep -q '"status":"processed"' "$WORK/openai.json" || { cat "$WORK/openai.json"; exit 1; }
echo "| OpenAI files.create (multipart/form-data) | ${t} s | $(rate "$t") | $(hwm) |"
t=$(curl -sS -o "$WORK/raw.json" -w '%{time_total}' -H "x-goog-api-key: $KEY" -H "X-Goog-Upload-Protocol: raw" \
  -H "Content-Type: application/octet-stream" -X POST --upload-file "$WORK/payload.bin" "$FG/upload/v1beta/files")
grep -q '"state":"ACTIVE"' "$WORK/raw.json" || { cat "$WORK/raw.json"; exit 1; }
echo "| Gemini raw upload | ${t} s | $(rate "$t") | $(hwm) |"
dd_out=$(dd if=/dev/zero of="$WORK/dd.bin" bs=8M count=$((SIZE_MIB / 8)) conv=fdatasync 2>&1 | tail -1)
echo "| dd conv=fdatasync (the disk) | $(echo "$dd_out" | awk -F, '{print $3}' | xargs) | $(echo "$dd_out" | awk -F, '{print $4}' | xargs) | |"
