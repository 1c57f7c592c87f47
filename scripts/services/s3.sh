#!/usr/bin/env bash
# A throw-away S3 server on loopback for the tests: moto (PyPI `moto[server]`, pinned, installed once in a
# venv under $FILEGATE_TEST_TOOLS). moto keeps S3's multipart rules (5 MiB minimum part, ListParts, abort)
# and checks no signature.
#
#   usage: [S3_BUCKET=files-test] scripts/services/s3.sh DIR [PORT]
#
# DIR/env exports the AWS_* variables object_store's AmazonS3Builder::from_env reads, and AWS_BUCKET.
set -euo pipefail
source "$(dirname "$0")/lib.sh"
DIR=${1:?usage: s3.sh DIR [PORT]}
PORT=${2:-}
BUCKET=${S3_BUCKET:-files-test}
MOTO='moto[server]==5.2.5'
mkdir -p "$DIR" "$TOOLS"
DIR=$(cd "$DIR" && pwd)
already_running "$DIR" && exit 0

if [[ ! -x $TOOLS/venv/bin/moto_server ]]; then
  echo "installing $MOTO (PyPI)..." >&2
  [[ -x $TOOLS/venv/bin/pip ]] || python3 -m venv "$TOOLS/venv"
  "$TOOLS/venv/bin/pip" install -q --disable-pip-version-check "$MOTO" >&2
fi
[[ -n $PORT ]] || PORT=$(free_port)
URL="http://127.0.0.1:$PORT"
mkdir -p "$DIR/tmp"
# Objects over 5 MiB spill to temporary files: keep them in DIR.
TMPDIR="$DIR/tmp" nohup "$TOOLS/venv/bin/moto_server" -H 127.0.0.1 -p "$PORT" >"$DIR/log" 2>&1 &
echo $! >"$DIR/pid"
wait_http "$URL/" 30 "$DIR/pid" "$DIR/log"
curl -sf -o /dev/null -X PUT "$URL/$BUCKET" || { echo "creating bucket $BUCKET failed" >&2; exit 1; }
echo "$URL" >"$DIR/url"
cat >"$DIR/env" <<ENV
export AWS_ENDPOINT=$URL AWS_ALLOW_HTTP=true AWS_BUCKET=$BUCKET
export AWS_ACCESS_KEY_ID=test AWS_SECRET_ACCESS_KEY=testsecret AWS_REGION=us-east-1 AWS_DEFAULT_REGION=us-east-1
ENV
write_stop "$DIR" TERM 100
echo "moto pid $(cat "$DIR/pid") on $URL, bucket $BUCKET (stop: $DIR/stop.sh)" >&2
echo "$URL"
