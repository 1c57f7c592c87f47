#!/usr/bin/env bash
# Benchmark: the seed's flow as one number — `POST /v1/files {source_url}` → `ready` → a chat completion
# that hands the file to Vertex AI by `gs://` URI — beside streaming the same bytes by hand from the source
# into one object of the same bucket (`curl` from nginx piped into `curl -T -`), in the same run.
#
# Cloud Storage and Vertex AI are the fake of Google's services (tests/fakes/google.py, the one the tests
# use, checked against object_store's GCS client): a Python server that keeps objects in memory, so it
# bounds the absolute numbers; what counts is filegate's flow beside the plain transfer into it.
#
#   bench/seed_flow.sh [SIZE_MIB ...]       default 256
#
# Prints Markdown rows for docs/benchmarks.md.
set -euo pipefail
cd "$(dirname "$0")/.."
SIZES=("${@:-256}")
SERVICES=$(pwd)/scripts/services
export CARGO_TARGET_DIR=${CARGO_TARGET_DIR:-$HOME/.cache/filegate-target}
WORK=$(mktemp -d "${BENCH_DIR:-$PWD}/.bench-XXXXXX")
chmod 755 "$WORK"
cleanup() {
  [[ -n ${FG_PID:-} ]] && kill "$FG_PID" 2>/dev/null
  [[ -n ${FAKE_PID:-} ]] && kill "$FAKE_PID" 2>/dev/null
  for s in "$WORK"/*/stop.sh; do [[ -f $s ]] && bash "$s"; done
  rm -rf "$WORK"
}
trap cleanup EXIT
cargo build --release --locked -q
now() { date +%s.%N; }
KEY=bench-key-0001
BEARER=bench-bearer

NGINX=$(bash "$SERVICES/nginx.sh" "$WORK/nginx" 2>/dev/null | tail -1)
python3 tests/fakes/google.py --bearer "$BEARER" > "$WORK/fake.url" &
FAKE_PID=$!
until [[ -s $WORK/fake.url ]]; do sleep 0.1; done
FAKE=$(awk '{print $3}' "$WORK/fake.url")
cat > "$WORK/account.json" <<EOF
{"private_key": "unused", "private_key_id": "unused", "client_email": "bench@example.invalid",
 "disable_oauth": true, "gcs_base_url": "$FAKE/gcs"}
EOF

GOOGLE_SERVICE_ACCOUNT="$WORK/account.json" FILEGATE_LISTEN=127.0.0.1:0 FILEGATE_DATA_DIR="$WORK/data" \
  FILEGATE_API_KEYS="bench:$KEY" FILEGATE_BLOB_STORE=gs://bench/filegate FILEGATE_IMPORT_ALLOW_CIDRS=127.0.0.1/32 \
  FILEGATE_UPSTREAM=vertex FILEGATE_VERTEX_PROJECT=bench FILEGATE_VERTEX_ENDPOINT="$FAKE" \
  FILEGATE_UPSTREAM_BEARER_TOKEN="$BEARER" FILEGATE_MAX_FILE_BYTES=$((4 << 30)) \
  FILEGATE_PROJECT_QUOTA_BYTES=$((64 << 30)) RUST_LOG=warn \
  "$CARGO_TARGET_DIR/release/filegate" serve > "$WORK/fg.out" 2> "$WORK/fg.log" &
FG_PID=$!
until grep -q "listening on" "$WORK/fg.out" 2>/dev/null; do sleep 0.1; done
FG=$(awk '/listening on/ {print $3}' "$WORK/fg.out")

seconds() { python3 -c "print(f'{$2 - $1:.2f}')"; }

echo "| file | by hand: source → one object | filegate: import → ready | + chat completion via gs:// | total | total − by hand |"
echo "|---|---|---|---|---|---|"
for size in "${SIZES[@]}"; do
  head -c $((size << 20)) /dev/urandom > "$WORK/nginx/www/seed-$size.bin"
  chmod a+r "$WORK/nginx/www/seed-$size.bin"
  url="$NGINX/files/seed-$size.bin"

  start=$(now)
  # One streamed PUT of the source's response (with its length: no chunked encoding, no temporary file).
  python3 - "$url" "$FAKE/gcs/bench/by-hand-$size" <<'PY'
import sys, urllib.request
source = urllib.request.urlopen(sys.argv[1])
put = urllib.request.Request(sys.argv[2], data=source, method="PUT",
                             headers={"Content-Length": source.headers["Content-Length"]})
urllib.request.urlopen(put).read()
PY
  hand=$(seconds "$start" "$(now)")
  curl -sf -o /dev/null -X DELETE "$FAKE/gcs/bench/by-hand-$size"

  start=$(now)
  id=$(curl -sf -X POST "$FG/v1/files" -H "Authorization: Bearer $KEY" -H 'Content-Type: application/json' \
    -d "{\"source_url\": \"$url\", \"model\": \"gemini-2.5-flash\"}" | python3 -c 'import json,sys; print(json.load(sys.stdin)["id"])')
  while :; do
    status=$(curl -sf "$FG/v1/files/$id?wait=30" -H "Authorization: Bearer $KEY" | python3 -c 'import json,sys; print(json.load(sys.stdin)["status"])')
    [[ $status == ready || $status == failed ]] && break
  done
  [[ $status == ready ]] || { echo "import failed" >&2; exit 1; }
  ready=$(now)
  reply=$(curl -sf -X POST "$FG/v1/chat/completions" -H "Authorization: Bearer $KEY" -H 'Content-Type: application/json' \
    -d "{\"model\": \"gemini-2.5-flash\", \"messages\": [{\"role\": \"user\", \"content\": [
          {\"type\": \"text\", \"text\": \"Describe it\"},
          {\"type\": \"file\", \"file\": {\"file_id\": \"$id\", \"format\": \"video/mp4\"}}]}]}")
  done_at=$(now)
  grep -q '"choices"' <<<"$reply" || { echo "chat failed: $reply" >&2; exit 1; }
  # The model read the file by its gs:// URI, not a copy or inline bytes.
  curl -sf "$FAKE/_fake/requests" | grep -q 'gs://bench/filegate/files/' || { echo "no gs:// reference reached Vertex" >&2; exit 1; }
  imported=$(seconds "$start" "$ready")
  chat=$(seconds "$ready" "$done_at")
  total=$(seconds "$start" "$done_at")
  printf '| %s MiB | %s s | %s s | %s s | %s s | %+.2f s |\n' "$size" "$hand" "$imported" "$chat" "$total" \
    "$(python3 -c "print($total - $hand)")"
  curl -sf -o /dev/null -X DELETE "$FG/v1/files/$id" -H "Authorization: Bearer $KEY"
  rm -f "$WORK/nginx/www/seed-$size.bin"
done
