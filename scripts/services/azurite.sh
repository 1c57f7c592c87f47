#!/usr/bin/env bash
# A throw-away Azure Blob emulator on loopback for the tests: Azurite (npm `azurite`, pinned, installed once
# under $FILEGATE_TEST_TOOLS/npm), blob service only, with one container created.
#
#   usage: [AZURE_CONTAINER=files-test] scripts/services/azurite.sh DIR [PORT]
#
# DIR/env exports the AZURE_* variables object_store's MicrosoftAzureBuilder::from_env reads (emulator
# mode, the well-known devstoreaccount1 key) and AZURE_CONTAINER_NAME.
set -euo pipefail
source "$(dirname "$0")/lib.sh"
DIR=${1:?usage: azurite.sh DIR [PORT]}
PORT=${2:-}
CONTAINER=${AZURE_CONTAINER:-files-test}
ACCOUNT=devstoreaccount1
KEY='Eby8vdM02xNOcqFlqUwJPLlmEtlCDXJ1OUzFT50uSRZ6IFsuFq2UVErCz4I6tq/K1SZFPTOtr/KBHBeksoGMGw=='
mkdir -p "$DIR" "$TOOLS/npm"
DIR=$(cd "$DIR" && pwd)
already_running "$DIR" && exit 0

BIN=$TOOLS/npm/node_modules/.bin/azurite-blob
if [[ ! -x $BIN ]]; then
  echo "installing azurite 3.37.0 (npm, ~40 s once)..." >&2
  npm install -s --no-audit --no-fund --prefix "$TOOLS/npm" azurite@3.37.0 >&2
fi
[[ -n $PORT ]] || PORT=$(free_port)
mkdir -p "$DIR/data"
nohup "$BIN" --blobHost 127.0.0.1 --blobPort "$PORT" --location "$DIR/data" --skipApiVersionCheck --loose \
  --disableTelemetry --silent >"$DIR/log" 2>&1 &
echo $! >"$DIR/pid"
BASE="http://127.0.0.1:$PORT"
wait_http "$BASE/$ACCOUNT?comp=list" 60 "$DIR/pid" "$DIR/log"

# Create the container with a SharedKey-signed request (Node's crypto: no Azure SDK needed).
node - "$BASE" "$ACCOUNT" "$KEY" "$CONTAINER" <<'JS'
const [base, account, key, container] = process.argv.slice(2);
const crypto = require('crypto'), http = require('http');
const date = new Date().toUTCString(), version = '2021-08-06';
const toSign = ['PUT', '', '', '', '', '', '', '', '', '', '', '',
  `x-ms-date:${date}`, `x-ms-version:${version}`,
  `/${account}/${account}/${container}\nrestype:container`].join('\n');
const signature = crypto.createHmac('sha256', Buffer.from(key, 'base64')).update(toSign, 'utf8').digest('base64');
const req = http.request(`${base}/${account}/${container}?restype=container`, { method: 'PUT', headers: {
  'x-ms-date': date, 'x-ms-version': version, 'Content-Length': 0,
  Authorization: `SharedKey ${account}:${signature}` } }, res => {
  let body = ''; res.on('data', d => body += d);
  res.on('end', () => { if (res.statusCode === 201 || res.statusCode === 409) process.exit(0);
    console.error('creating the container failed', res.statusCode, body); process.exit(1); });
});
req.on('error', e => { console.error(e); process.exit(1); });
req.end();
JS

URL="$BASE/$ACCOUNT"
echo "$URL" >"$DIR/url"
cat >"$DIR/env" <<ENV
export AZURE_STORAGE_USE_EMULATOR=true AZURITE_BLOB_STORAGE_URL=$BASE AZURE_STORAGE_ENDPOINT=$BASE
export AZURE_STORAGE_ACCOUNT_NAME=$ACCOUNT AZURE_STORAGE_ACCOUNT_KEY=$KEY AZURE_CONTAINER_NAME=$CONTAINER AZURE_ALLOW_HTTP=true
ENV
write_stop "$DIR" TERM 100
echo "azurite pid $(cat "$DIR/pid") on $BASE, container $CONTAINER (stop: $DIR/stop.sh)" >&2
echo "$URL"
