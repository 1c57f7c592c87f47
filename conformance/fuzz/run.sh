#!/usr/bin/env bash
# Fuzzes a live filegate from its own OpenAPI document with schemathesis (config: schemathesis.toml here):
# any 5xx (but the documented 501s) or any status, content type or body the document does not describe
# fails. Bounded: a fixed number of examples per operation and a time limit.
#
#   conformance/fuzz/run.sh SCHEMATHESIS_BIN FILEGATE_BIN
#
# Imports are created with a model no pattern allows, so the fuzzer's random source URLs are refused at
# create and no import worker ever resolves a host name.
set -euo pipefail
cd "$(dirname "$0")"
ST=${1:?schemathesis binary}
BIN=${2:?filegate binary}
KEY=fuzz-key-0000001
tmp=$(mktemp -d)
trap 'kill "$pid" 2>/dev/null || true; wait "$pid" 2>/dev/null || true; rm -rf "$tmp"' EXIT
FILEGATE_LISTEN=127.0.0.1:0 FILEGATE_DATA_DIR="$tmp/data" FILEGATE_API_KEYS="fuzz:$KEY" \
  FILEGATE_IMPORT_MODELS="no-model-is-allowed-while-fuzzing" FILEGATE_MAX_FILE_BYTES=1048576 \
  "$BIN" serve > "$tmp/out" 2> "$tmp/server.log" &
pid=$!
for _ in $(seq 100); do grep -q "^listening on " "$tmp/out" && break; sleep 0.1; done
url=$(sed -n 's/^listening on //p' "$tmp/out")
[[ -n $url ]] || { cat "$tmp/server.log"; exit 1; }
status=0
# filter_too_much is the generator's own health (too many of its examples unsendable, e.g. header values a
# request cannot carry), not filegate's: it failed one run in several on an unchanged document, so it is off.
timeout "${FILEGATE_FUZZ_SECONDS:-600}" "$ST" run "$url/openapi.json" -H "x-goog-api-key: $KEY" \
  --max-examples "${FILEGATE_FUZZ_EXAMPLES:-100}" --seed "${FILEGATE_FUZZ_SEED:-20261128}" \
  --suppress-health-check filter_too_much --no-color || status=$?
if [[ $status -ne 0 ]]; then
  echo "--- filegate log ---"; tail -n 200 "$tmp/server.log"
fi
exit $status
