#!/usr/bin/env bash
# Benchmark: `filegate fsck` over 100 000 and 1 000 000 files (SQLite, local disk; release build): its time
# and peak RSS, which stays flat as the files grow tenfold (files are read and the store listed page by
# page). Each run also has one orphan object, one missing object and a drifted counter to find.
#
#   bench/fsck.sh [COUNTS...]      default 100000 1000000
#
# Files are seeded straight into the database and the disk (bench/fsck_client.py). Prints Markdown rows
# for docs/benchmarks.md.
set -euo pipefail
cd "$(dirname "$0")/.."
COUNTS=${*:-100000 1000000}
export CARGO_TARGET_DIR=${CARGO_TARGET_DIR:-$HOME/.cache/filegate-target}
BIN=$CARGO_TARGET_DIR/release/filegate
WORK=$(mktemp -d "${BENCH_DIR:-$PWD}/.bench-XXXXXX")
trap 'rm -rf "$WORK"' EXIT
cargo build --release --locked -q
echo "| files | fsck time | files/s | peak RSS | problems found | reference: find + sqlite3 |"
echo "|---|---|---|---|---|---|"
for count in $COUNTS; do
  data=$WORK/data-$count
  FILEGATE_DATA_DIR=$data "$BIN" migrate >/dev/null
  python3 bench/fsck_client.py seed "$data" "$count"
  FILEGATE_DATA_DIR=$data "$BIN" usage --recompute >/dev/null 2>&1
  # What fsck is to find: an orphan, a missing object, a drifted counter.
  echo orphan > "$data/blobs/files/alpha/orphan.bench"
  rm "$data/blobs/files/alpha/seed0000000007.bench"
  sqlite3 "$data/filegate.db" "UPDATE projects SET used_bytes = used_bytes + 1 WHERE id = 'alpha'"
  sync
  read -r seconds rss code < <(FILEGATE_DATA_DIR=$data python3 bench/fsck_client.py run "$BIN" fsck --grace-seconds 0 --json)
  found=$( (FILEGATE_DATA_DIR=$data "$BIN" fsck --grace-seconds 0 --json || true) | python3 -c 'import json,sys; print(json.load(sys.stdin)["problems"])')
  # The floor: listing every object with its size and reading every file row, what fsck must at least do.
  started=$(date +%s.%N)
  find "$data/blobs/files" -type f -printf '%s %p\n' | sort -k2 > /dev/null
  sqlite3 "$data/filegate.db" "SELECT project_id, id, size_bytes FROM files ORDER BY project_id, id" > /dev/null
  floor=$(python3 -c "print(f'{$(date +%s.%N) - $started:.2f}')")
  echo "| $count | ${seconds} s | $(python3 -c "print(round($count / max($seconds, 0.1)))") | $((rss / 1024)) MiB | $found (exit $code) | ${floor} s |"
  rm -rf "$data"
done
