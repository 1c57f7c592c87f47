#!/usr/bin/env bash
# Benchmark: uploads and imports into each kind of bucket — moto (S3), Azurite (Azure Blob) and the GCS fake
# of the test tree (tests/fakes/google.py, Cloud Storage's XML API) — beside the local disk, and beside each
# bucket's own parallel client putting the same file into the same bucket in the same run
# (bench/bucket_client.py: boto3 `upload_file`, azure-storage-blob `upload_blob`, google-cloud-storage
# `upload_chunks_concurrently`; 8 MiB parts, 10 in parallel). On moto the reference declares no checksum, as
# filegate by default (moto then computes a CRC64NVME of the whole object in Python at completion: seconds
# per GiB that real S3 spends natively); boto3's default (CRC32 declared) is set beside filegate with
# AWS_CHECKSUM_ALGORITHM=SHA256, and a multipart PUT loop (8 MiB parts one after another) beside the SDKs'
# chunk-at-a-time shape. `rclone copyurl` (Debian's rclone) from nginx into the same bucket is the reference for
# imports (S3 and Azure; rclone speaks Cloud Storage's JSON API, which the fake has not).
# filegate: a resumable upload in 8 MiB chunks (the SDKs' shape: each chunk's reply waits for its part), the
# same file in one raw request (curl: parts in flight), eight raw uploads at once, and a URL import from nginx;
# with filegate's peak RSS (VmHWM).
#
#   bench/buckets.sh [SIZE_MIB [STORE ...]]      default 512; STORE: s3 azure gcs local (default all)
#   BENCH_CONCURRENT_MIB=1024 bench/buckets.sh 1024 gcs     the eight at once of 1 GiB each (default: ≤ 256 MiB)
#   FILEGATE_PARTS_IN_FLIGHT=1 bench/buckets.sh 256         filegate's settings pass through
#
# Prints one Markdown table per store for docs/benchmarks.md. The clients' libraries are installed once,
# pinned, into $FILEGATE_TEST_TOOLS/bench-venv.
set -euo pipefail
cd "$(dirname "$0")/.."
SIZE_MIB=${1:-512}
shift || true
STORES=("${@:-s3 azure gcs local}")
read -r -a STORES <<<"${STORES[*]}"
SERVICES=$(pwd)/scripts/services
TOOLS=${FILEGATE_TEST_TOOLS:-$HOME/.cache/filegate-test-tools}
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
command -v rclone >/dev/null || { apt-get update -q >/dev/null; apt-get install -y -q rclone >/dev/null; }
CLIENTS=$TOOLS/bench-venv
if [[ ! -x $CLIENTS/bin/python ]] || ! "$CLIENTS/bin/python" -c 'import boto3, azure.storage.blob, google.cloud.storage' 2>/dev/null; then
  python3 -m venv "$CLIENTS"
  "$CLIENTS/bin/pip" install -q boto3==1.44.8 azure-storage-blob==12.31.1 google-cloud-storage==3.17.1 >&2
fi
now() { date +%s.%N; }
NGINX=$(bash "$SERVICES/nginx.sh" "$WORK/nginx" 2>/dev/null | tail -1)

source_file() { # MiB → path (random bytes, also served by nginx)
  local path="$WORK/nginx/www/source-$1.bin"
  [[ -f $path ]] || head -c $(($1 * 1024 * 1024)) /dev/urandom > "$path"
  chmod a+r "$path"
  echo "$path"
}
mbps() { python3 -c "print(f'{$1 * 1048576 / $2 / 1e6:.0f}')"; }
ratio() { python3 -c "print(f'{$2 / $1:.2f}×')"; } # filegate's seconds, the reference's → speed ratio

start_store() { # store → the service up, its environment exported, STORE_URL and NAME set
  case $1 in
    s3)
      bash "$SERVICES/s3.sh" "$WORK/s3" >/dev/null 2>&1
      # shellcheck disable=SC1091
      source "$WORK/s3/env"
      STORE_URL=s3://$AWS_BUCKET/bench NAME="moto (S3)" ;;
    azure)
      bash "$SERVICES/azurite.sh" "$WORK/azure" >/dev/null 2>&1
      # shellcheck disable=SC1091
      source "$WORK/azure/env"
      STORE_URL=az://$AZURE_CONTAINER_NAME/bench NAME="Azurite (Azure Blob)" ;;
    gcs)
      mkdir -p "$WORK/gcs"
      python3 tests/fakes/google.py > "$WORK/gcs/url" &
      FAKE_PID=$!
      until [[ -s $WORK/gcs/url ]]; do sleep 0.1; done
      export FAKE_GCS_URL FAKE_GCS_BUCKET=bench
      FAKE_GCS_URL=$(awk '{print $3}' "$WORK/gcs/url")
      printf '{"private_key": "unused", "private_key_id": "unused", "client_email": "bench@example.invalid", "disable_oauth": true, "gcs_base_url": "%s/gcs"}' \
        "$FAKE_GCS_URL" > "$WORK/gcs/account.json"
      export GOOGLE_SERVICE_ACCOUNT=$WORK/gcs/account.json
      STORE_URL=gs://$FAKE_GCS_BUCKET/bench NAME="the GCS fake" ;;
    local) STORE_URL= NAME="the local disk" ;;
  esac
}

stop_store() {
  case $1 in
    s3 | azure) bash "$WORK/$1/stop.sh" && rm -rf "${WORK:?}/$1" ;;
    gcs) kill "$FAKE_PID"; wait "$FAKE_PID" 2>/dev/null || true; FAKE_PID= ;;
  esac
}

client() { # mode MiB → seconds
  "$CLIENTS/bin/python" bench/bucket_client.py "$1" "$(source_file "$2")" "baseline/$1-$2"
}

wipe() { [[ $1 == local ]] || "$CLIENTS/bin/python" bench/bucket_client.py wipe "$1"; }

rclone_copyurl() { # store MiB → seconds (the remote from the store's environment)
  local start remote
  start=$(now)
  case $1 in
    s3) remote=(RCLONE_CONFIG_B_TYPE=s3 RCLONE_CONFIG_B_PROVIDER=Other RCLONE_CONFIG_B_ENDPOINT=$AWS_ENDPOINT
                RCLONE_CONFIG_B_ACCESS_KEY_ID=$AWS_ACCESS_KEY_ID RCLONE_CONFIG_B_SECRET_ACCESS_KEY=$AWS_SECRET_ACCESS_KEY
                RCLONE_CONFIG_B_REGION=${AWS_DEFAULT_REGION:-us-east-1}) bucket=$AWS_BUCKET ;;
    azure) remote=(RCLONE_CONFIG_B_TYPE=azureblob RCLONE_CONFIG_B_USE_EMULATOR=true
                   RCLONE_CONFIG_B_ENDPOINT=$AZURITE_BLOB_STORAGE_URL/$AZURE_STORAGE_ACCOUNT_NAME) bucket=$AZURE_CONTAINER_NAME ;;
    *) return 1 ;;
  esac
  env -u AWS_CA_BUNDLE "${remote[@]}" rclone copyurl --config /dev/null "$NGINX/files/source-$2.bin" "b:$bucket/baseline/rclone-$2" || return 1
  python3 -c "print($(now) - $start)"
}

serve() { # store stage → starts filegate (FG, FG_PID)
  local store=()
  [[ -n $STORE_URL ]] && store=(--blob-store "$STORE_URL/$2")
  "$CARGO_TARGET_DIR/release/filegate" serve --listen 127.0.0.1:0 --data-dir "$WORK/data-$1-$2" \
    --api-keys bench:bench-key-0001 --import-allow-cidrs 127.0.0.1/32 "${store[@]}" > "$WORK/fg.out" 2> "$WORK/fg.err" &
  FG_PID=$!
  for _ in $(seq 1 100); do grep -q '^listening on ' "$WORK/fg.out" && break; sleep 0.1; done
  FG=$(sed -n 's/^listening on //p' "$WORK/fg.out")
  [[ -n $FG ]] || { echo "filegate did not start:" >&2; cat "$WORK/fg.err" >&2; exit 1; }
}

# Stops filegate and prints the stage's result after it: a `read < <(stage)` returns only once it is gone.
stop() { kill "$FG_PID"; wait "$FG_PID" 2>/dev/null || true; FG_PID=; rm -rf "$WORK/data-"*; echo "$1"; }
rss() { awk '/VmHWM/ {print int($2 / 1024)}' "/proc/$FG_PID/status"; }

raw_uploads() { # store MiB N → "seconds rss": N raw uploads of the same file at once
  local start pids=() file
  file=$(source_file "$2")
  serve "$1" "raw-$2-$3"
  start=$(now)
  for _ in $(seq 1 "$3"); do
    curl -sf -o /dev/null -H 'x-goog-api-key: bench-key-0001' -H 'X-Goog-Upload-Protocol: raw' \
      -H 'Content-Type: application/octet-stream' -H 'Expect:' -T "$file" "$FG/upload/v1beta/files" &
    pids+=($!)
  done
  for pid in "${pids[@]}"; do wait "$pid"; done
  stop "$(python3 -c "print($(now) - $start)") $(rss)"
}

upload() { # store MiB → "seconds rss"
  serve "$1" "up-$2"
  read -r seconds _ < <(python3 bench/upload_client.py "$FG" bench-key-0001 "$(source_file "$2")")
  stop "$seconds $(rss)"
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
  stop "$(python3 -c "print($(now) - $start)") $(rss)"
}

row() { # label seconds [reference-seconds] [rss] → one Markdown row
  local times="n/a | |" against=${3:-}
  [[ $2 != nan ]] && times="$(printf '%.1f s' "$2") | $(mbps "$SIZE_MIB" "$2")"
  [[ -n $against && $against != nan && $2 != nan ]] && against=$(ratio "$2" "$against") || against=
  printf '| %s | %s | %s | %s |\n' "$1" "$times" "$against" "${4:+$4 MiB}"
}

# Eight at once, of at most 256 MiB each unless asked: moto keeps parts in RAM and Azurite on disk.
CONC_MIB=${BENCH_CONCURRENT_MIB:-$((SIZE_MIB < 256 ? SIZE_MIB : 256))}
for store in "${STORES[@]}"; do
  start_store "$store"
  CLIENT_S=nan LOOP_S=nan RCLONE_S=nan CRC_S=nan
  # Every measurement starts from an empty bucket (wipe).
  case $store in
    s3) LOOP_S=$(client s3-loop "$SIZE_MIB"); wipe s3; CRC_S=$(client s3 "$SIZE_MIB"); wipe s3
        CLIENT_S=$(client s3-plain "$SIZE_MIB"); CLIENT="boto3 upload_file, no checksum declared (as filegate)" ;;
    azure) CLIENT_S=$(client azure "$SIZE_MIB"); CLIENT="azure-storage-blob upload_blob" ;;
    gcs) CLIENT_S=$(client gcs "$SIZE_MIB"); CLIENT="google-cloud-storage upload_chunks_concurrently" ;;
  esac
  wipe "$store"
  if [[ $store == s3 || $store == azure ]]; then
    RCLONE_S=$(rclone_copyurl "$store" "$SIZE_MIB" 2>"$WORK/rclone.err") || RCLONE_S=nan
    wipe "$store"
  fi
  read -r UP UP_RSS < <(upload "$store" "$SIZE_MIB"); wipe "$store"
  read -r RAW RAW_RSS < <(raw_uploads "$store" "$SIZE_MIB" 1); wipe "$store"
  read -r CONC CONC_RSS < <(raw_uploads "$store" "$CONC_MIB" 8); wipe "$store"
  if [[ $store == s3 ]]; then
    read -r RAW_SHA RAW_SHA_RSS < <(AWS_CHECKSUM_ALGORITHM=SHA256 raw_uploads "$store" "$SIZE_MIB" 1); wipe "$store"
  fi
  read -r IMP IMP_RSS < <(import "$store" "$SIZE_MIB")
  stop_store "$store"

  echo
  echo "| $SIZE_MIB MiB → $NAME | time | MB/s | filegate ÷ reference | filegate peak RSS |"
  echo "|---|---|---|---|---|"
  [[ $store == s3 ]] && row "boto3 multipart PUT loop (8 MiB parts in sequence)" "$LOOP_S"
  [[ $store != local ]] && row "**reference:** $CLIENT (8 MiB parts, 10 in parallel)" "$CLIENT_S"
  row "filegate resumable upload (8 MiB chunks, as the SDKs)" "$UP" "$CLIENT_S" "$UP_RSS"
  row "**filegate raw upload** (one request)" "$RAW" "$CLIENT_S" "$RAW_RSS"
  if [[ $store == s3 ]]; then
    row "boto3 upload_file declaring CRC32 checksums (its default)" "$CRC_S"
    row "filegate raw upload with AWS_CHECKSUM_ALGORITHM=SHA256, ÷ the row above" "$RAW_SHA" "$CRC_S" "$RAW_SHA_RSS"
  fi
  printf '| filegate: 8 raw uploads of %s MiB at once | %.1f s | %s (together) | | %s MiB |\n' \
    "$CONC_MIB" "$CONC" "$(mbps $((8 * CONC_MIB)) "$CONC")" "$CONC_RSS"
  if [[ $store == s3 || $store == azure ]]; then
    if [[ $RCLONE_S == nan ]]; then
      printf '| **reference:** rclone copyurl from nginx | failed: %s | | | |\n' "$(grep -o 'BadRequest[^|]*\|ERROR[^|]*' "$WORK/rclone.err" | tail -1)"
    else
      row "**reference:** rclone copyurl from nginx" "$RCLONE_S"
    fi
  fi
  row "**filegate import** from nginx" "$IMP" "$RCLONE_S" "$IMP_RSS"
done
