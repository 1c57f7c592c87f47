#!/usr/bin/env bash
# Benchmark: uploads and imports into a bucket (moto, scripts/services/s3.sh) beside the local disk,
# and beside plain clients of the same bucket in the same run:
#   - a multipart PUT loop (boto3 from moto's venv: create, 8 MiB parts one after another, complete), the
#     shape of filegate's own writes;
#   - boto3's upload_file (what `aws s3 cp` does: 8 MiB parts, 10 in parallel);
#   - `rclone copyurl` (Debian's rclone) from nginx into the same bucket: the plain way to put a URL in a
#     bucket (streamed, 4 parts in parallel);
#   - filegate: a resumable upload in 8 MiB chunks (the SDKs' shape: each chunk's reply waits for its part),
#     the same file in one raw request (curl: parts in flight), and a URL import from nginx, to moto and to
#     local disk;
# with filegate's peak RSS for two file sizes (it must not grow with the file).
#
#   bench/buckets.sh [SIZE_MIB]       default 512
#   FILEGATE_PARTS_IN_FLIGHT=1 bench/buckets.sh 256     filegate's settings pass through
#
# Prints Markdown rows for docs/benchmarks.md.
set -euo pipefail
cd "$(dirname "$0")/.."
SIZE_MIB=${1:-512}
SERVICES=$(pwd)/scripts/services
TOOLS=${FILEGATE_TEST_TOOLS:-$HOME/.cache/filegate-test-tools}
export CARGO_TARGET_DIR=${CARGO_TARGET_DIR:-$HOME/.cache/filegate-target}
WORK=$(mktemp -d "${BENCH_DIR:-$PWD}/.bench-XXXXXX")
chmod 755 "$WORK"
cleanup() {
  [[ -n ${FG_PID:-} ]] && kill "$FG_PID" 2>/dev/null
  for s in "$WORK"/*/stop.sh; do [[ -f $s ]] && bash "$s"; done
  rm -rf "$WORK"
}
trap cleanup EXIT
cargo build --release --locked -q
command -v rclone >/dev/null || { apt-get update -q >/dev/null; apt-get install -y -q rclone >/dev/null; }
now() { date +%s.%N; }

bash "$SERVICES/s3.sh" "$WORK/s3" >/dev/null 2>&1
# shellcheck disable=SC1091
source "$WORK/s3/env"
NGINX=$(bash "$SERVICES/nginx.sh" "$WORK/nginx" 2>/dev/null | tail -1)

source_file() { # MiB → path (random bytes, also served by nginx)
  local path="$WORK/nginx/www/source-$1.bin"
  [[ -f $path ]] || head -c $(($1 * 1024 * 1024)) /dev/urandom > "$path"
  chmod a+r "$path"
  echo "$path"
}
mbps() { python3 -c "print(f'{$1 * 1048576 / $2 / 1e6:.0f}')"; }

baseline() { # mode MiB → seconds
  "$TOOLS/venv/bin/python" - "$1" "$(source_file "$2")" <<'EOF'
import os, sys, time, boto3
from boto3.s3.transfer import TransferConfig
mode, path = sys.argv[1:3]
# The endpoint explicitly: boto3 does not read object_store's AWS_ENDPOINT, and must never leave loopback.
s3 = boto3.client("s3", endpoint_url=os.environ["AWS_ENDPOINT"])
bucket, key = os.environ["AWS_BUCKET"], f"baseline/{mode}"
started = time.monotonic()
if mode == "loop":
    upload = s3.create_multipart_upload(Bucket=bucket, Key=key)["UploadId"]
    parts = []
    with open(path, "rb") as f:
        n = 1
        while chunk := f.read(8 << 20):
            etag = s3.upload_part(Bucket=bucket, Key=key, UploadId=upload, PartNumber=n, Body=chunk)["ETag"]
            parts.append({"PartNumber": n, "ETag": etag})
            n += 1
    s3.complete_multipart_upload(Bucket=bucket, Key=key, UploadId=upload, MultipartUpload={"Parts": parts})
else:
    s3.upload_file(path, bucket, key, Config=TransferConfig(multipart_chunksize=8 << 20, max_concurrency=10))
print(time.monotonic() - started)
EOF
}

serve() { # store → starts filegate (FG, FG_PID)
  local store=()
  [[ $1 == s3 ]] && store=(--blob-store "s3://$AWS_BUCKET/bench")
  "$CARGO_TARGET_DIR/release/filegate" serve --listen 127.0.0.1:0 --data-dir "$WORK/data-$1-$2" \
    --api-keys bench:bench-key-0001 --import-allow-cidrs 127.0.0.1/32 "${store[@]}" > "$WORK/fg.out" 2> "$WORK/fg.err" &
  FG_PID=$!
  for _ in $(seq 1 100); do grep -q '^listening on ' "$WORK/fg.out" && break; sleep 0.1; done
  FG=$(sed -n 's/^listening on //p' "$WORK/fg.out")
}

stop() { kill "$FG_PID"; wait "$FG_PID" 2>/dev/null || true; FG_PID=; }
rss() { awk '/VmHWM/ {print int($2 / 1024)}' "/proc/$FG_PID/status"; }

raw_upload() { # store MiB → "seconds rss"
  serve "$1" "raw-$2"
  local start
  start=$(now)
  curl -sf -o /dev/null -H 'x-goog-api-key: bench-key-0001' -H 'X-Goog-Upload-Protocol: raw' \
    -H 'Content-Type: application/octet-stream' -H 'Expect:' -T "$(source_file "$2")" "$FG/upload/v1beta/files"
  echo "$(python3 -c "print($(now) - $start)") $(rss)"
  stop
}

concurrent_uploads() { # store MiB N → "seconds rss": N raw uploads of the same file at once
  local start pids=() file
  file=$(source_file "$2")
  serve "$1" "conc-$2"
  start=$(now)
  for _ in $(seq 1 "$3"); do
    curl -sf -o /dev/null -H 'x-goog-api-key: bench-key-0001' -H 'X-Goog-Upload-Protocol: raw' \
      -H 'Content-Type: application/octet-stream' -H 'Expect:' -T "$file" "$FG/upload/v1beta/files" &
    pids+=($!)
  done
  for pid in "${pids[@]}"; do wait "$pid"; done
  echo "$(python3 -c "print($(now) - $start)") $(rss)"
  stop
}

rclone_copyurl() { # MiB → seconds (the remote from the environment: moto's endpoint and keys)
  local start
  start=$(now)
  env -u AWS_CA_BUNDLE RCLONE_CONFIG_MOTO_TYPE=s3 RCLONE_CONFIG_MOTO_PROVIDER=Other RCLONE_CONFIG_MOTO_ENDPOINT=$AWS_ENDPOINT \
    RCLONE_CONFIG_MOTO_ACCESS_KEY_ID=$AWS_ACCESS_KEY_ID RCLONE_CONFIG_MOTO_SECRET_ACCESS_KEY=$AWS_SECRET_ACCESS_KEY \
    RCLONE_CONFIG_MOTO_REGION=${AWS_DEFAULT_REGION:-us-east-1} \
    rclone copyurl --config /dev/null "$NGINX/files/source-$1.bin" "moto:$AWS_BUCKET/baseline/rclone-$1" || return 1
  python3 -c "print($(now) - $start)"
}

upload() { # store MiB → "seconds rss"
  serve "$1" "up-$2"
  read -r seconds _ < <(python3 bench/upload_client.py "$FG" bench-key-0001 "$(source_file "$2")")
  echo "$seconds $(rss)"
  stop
}

import() { # store MiB → "seconds rss"
  serve "$1" "imp-$2"
  local start id task status
  start=$(now)
  id=$(curl -s -X POST "$FG/v1/files" -H 'Authorization: bench-key-0001' -H 'Content-Type: application/json' \
    -d "{\"source_url\": \"$NGINX/files/source-$2.bin\", \"model\": \"bench\"}" | python3 -c 'import json,sys; print(json.load(sys.stdin)["id"])')
  while :; do
    task=$(curl -s "$FG/v1/files/$id?wait=30" -H 'Authorization: bench-key-0001')
    status=$(python3 -c 'import json,sys; print(json.loads(sys.argv[1])["status"])' "$task")
    [[ $status == ready || $status == failed ]] && break
  done
  [[ $status == ready ]] || { echo "import failed: $task" >&2; exit 1; }
  echo "$(python3 -c "print($(now) - $start)") $(rss)"
  stop
}

LOOP_S=$(baseline loop "$SIZE_MIB")
CP_S=$(baseline cp "$SIZE_MIB")
RCLONE_S=$(rclone_copyurl "$SIZE_MIB" 2>"$WORK/rclone.err" || echo nan)
read -r RAW_S3 RSS_RAW_S3 < <(raw_upload s3 "$SIZE_MIB")
read -r UP_S3 RSS_UP_S3 < <(upload s3 "$SIZE_MIB")
read -r UP_LOCAL RSS_UP_LOCAL < <(upload local "$SIZE_MIB")
read -r IMP_S3 RSS_IMP_S3 < <(import s3 "$SIZE_MIB")
read -r IMP_LOCAL RSS_IMP_LOCAL < <(import local "$SIZE_MIB")
# Eight at once of at most 256 MiB each: memory is what is measured, and moto keeps every object in RAM.
CONC_MIB=$((SIZE_MIB < 256 ? SIZE_MIB : 256))
read -r CONC_S RSS_CONC < <(concurrent_uploads s3 "$CONC_MIB" 8)
SMALL=$((SIZE_MIB / 8))
read -r _ RSS_UP_S3_SMALL < <(upload s3 "$SMALL")

echo "| $SIZE_MIB MiB | time | MB/s | filegate peak RSS |"
echo "|---|---|---|---|"
printf '| moto: multipart PUT loop (boto3, 8 MiB parts in sequence) | %.1f s | %s | |\n' "$LOOP_S" "$(mbps "$SIZE_MIB" "$LOOP_S")"
printf '| moto: boto3 upload_file (aws s3 cp: 8 MiB parts, 10 in parallel) | %.1f s | %s | |\n' "$CP_S" "$(mbps "$SIZE_MIB" "$CP_S")"
printf '| **filegate upload → moto** | %.1f s | **%s** | %s MiB (%s MiB for %s MiB) |\n' "$UP_S3" "$(mbps "$SIZE_MIB" "$UP_S3")" "$RSS_UP_S3" "$RSS_UP_S3_SMALL" "$SMALL"
printf '| **filegate raw upload → moto** (one request) | %.1f s | **%s** | %s MiB |\n' "$RAW_S3" "$(mbps "$SIZE_MIB" "$RAW_S3")" "$RSS_RAW_S3"
printf '| filegate: 8 raw uploads of %s MiB at once → moto | %.1f s | %s (together) | %s MiB |\n' "$CONC_MIB" "$CONC_S" "$(mbps $((8 * CONC_MIB)) "$CONC_S")" "$RSS_CONC"
printf '| filegate upload → local disk | %.1f s | %s | %s MiB |\n' "$UP_LOCAL" "$(mbps "$SIZE_MIB" "$UP_LOCAL")" "$RSS_UP_LOCAL"
if [[ $RCLONE_S == nan ]]; then
  printf '| rclone copyurl nginx → moto | failed: %s | | |\n' "$(grep -o 'BadRequest[^|]*' "$WORK/rclone.err" | tail -1)"
else
  printf '| rclone copyurl nginx → moto | %.1f s | %s | |\n' "$RCLONE_S" "$(mbps "$SIZE_MIB" "$RCLONE_S")"
fi
printf '| **filegate import nginx → moto** | %.1f s | **%s** | %s MiB |\n' "$IMP_S3" "$(mbps "$SIZE_MIB" "$IMP_S3")" "$RSS_IMP_S3"
printf '| filegate import nginx → local disk | %.1f s | %s | %s MiB |\n' "$IMP_LOCAL" "$(mbps "$SIZE_MIB" "$IMP_LOCAL")" "$RSS_IMP_LOCAL"
