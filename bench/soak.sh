#!/usr/bin/env bash
# Soak: two nodes on PostgreSQL and S3 (moto), each dependency behind the test tree's fault proxy, clients
# uploading and importing while faults rotate (tests/integration/soak.rs). Prints the table for
# docs/operations.md; fails if a byte was lost or a 500 answered.
#
#   bench/soak.sh [SECONDS]      default 300
set -euo pipefail
cd "$(dirname "$0")/.."
SECONDS_TO_RUN=${1:-300}
export CARGO_TARGET_DIR=${CARGO_TARGET_DIR:-$HOME/.cache/filegate-target}
WORK=$(mktemp -d)
LOG=${SOAK_LOG:-${TMPDIR:-/tmp}/filegate-soak.log}
chmod 755 "$WORK"
trap 'for s in "$WORK"/*/stop.sh; do [[ -f $s ]] && bash "$s"; done; rm -rf "$WORK"' EXIT
FILEGATE_TEST_POSTGRES_URL=$(bash scripts/services/postgres.sh "$WORK/pg" | tail -n 1)
export FILEGATE_TEST_POSTGRES_URL
bash scripts/services/s3.sh "$WORK/s3" >/dev/null
# shellcheck disable=SC1091
source "$WORK/s3/env"
status=0
FILEGATE_TEST_DATABASE=postgres FILEGATE_TEST_BLOBS=s3 FILEGATE_SOAK_SECONDS=$SECONDS_TO_RUN \
  cargo nextest run --locked --test integration --run-ignored only -E 'test(/^soak::/)' --no-capture \
  >"$LOG" 2>&1 || status=$?
grep -E '^\||^[0-9]+ (s|files)|bytes lost|without an answer|fsck after|PASS|FAIL|panicked' "$LOG" || true
if [[ $status != 0 ]]; then
  grep -E -A3 'panicked' "$LOG" >&2 || tail -n 60 "$LOG" >&2
  echo "the whole log: $LOG" >&2
  exit "$status"
fi
