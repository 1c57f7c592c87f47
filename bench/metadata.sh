#!/usr/bin/env bash
# Benchmark: metadata under load, on SQLite and PostgreSQL side by side (release build).
#
#   - with 100 000 files in the project: `get`, `list` (first page of 100, and a page deep in the list) and
#     upload `start` under load from wrk (2 threads, 32 connections, 10 s each): requests/s, p50, p99;
#   - upload `start` latency, one request at a time, with 0, 100 000 and 1 000 000 files: p50, p99;
#   - with 1 000 000 files: `get` and a deep `list` page under load, `get` at a fixed 2 000 requests/s
#     (bench/metadata_client.py rate: open loop, latency from when each request was due), the start-up time, and the janitor's
#     time to remove 100 000 expired files.
#
#   bench/metadata.sh [sqlite|postgres|both]      default both
#
# Files are seeded straight into the database (uploading a million files through the API would take
# hours), then `filegate usage --recompute` sets the project's counters from them, as an operator would
# after an import. Needs wrk (installed from Debian if missing) and, for PostgreSQL,
# scripts/services/postgres.sh. Prints Markdown rows for docs/benchmarks.md.
set -euo pipefail
cd "$(dirname "$0")/.."
ENGINES=${1:-both}
[[ $ENGINES == both ]] && ENGINES="sqlite postgres"
SERVICES=$(pwd)/scripts/services
export CARGO_TARGET_DIR=${CARGO_TARGET_DIR:-$HOME/.cache/filegate-target}
BIN=$CARGO_TARGET_DIR/release/filegate
KEY=bench-key-000001
WORK=$(mktemp -d "${BENCH_DIR:-$PWD}/.bench-XXXXXX")
chmod 755 "$WORK"
cleanup() {
  [[ -n ${FG_PID:-} ]] && kill "$FG_PID" 2>/dev/null
  [[ -f $WORK/pg/stop.sh ]] && bash "$WORK/pg/stop.sh"
  rm -rf "$WORK"
}
trap cleanup EXIT
command -v wrk >/dev/null || apt-get install -y -q wrk >/dev/null
cargo build --release --locked -q

serve() { # engine → starts filegate, sets URL and FG_PID (FILEGATE_SWEEP_INTERVAL_SECONDS passes through)
  local env=(FILEGATE_SWEEP_INTERVAL_SECONDS="${FILEGATE_SWEEP_INTERVAL_SECONDS:-60}" FILEGATE_LISTEN=127.0.0.1:0 FILEGATE_DATA_DIR="$WORK/data-$1" FILEGATE_API_KEYS="alpha:$KEY"
    FILEGATE_PROJECT_MAX_FILES=100000000 FILEGATE_PROJECT_MAX_OPEN_UPLOADS=100000000 RUST_LOG=warn)
  [[ $1 == postgres ]] && env+=(FILEGATE_DATABASE_URL="$DB_URL")
  env "${env[@]}" "$BIN" serve > "$WORK/out-$1" 2> "$WORK/log-$1" &
  FG_PID=$!
  for _ in $(seq 100); do grep -q "^listening on " "$WORK/out-$1" 2>/dev/null && break; sleep 0.1; done
  URL=$(sed -n 's/^listening on //p' "$WORK/out-$1")
}

seed() { # engine from to: files seed<from>..seed<to-1>, one byte each, created one microsecond apart
  if [[ $1 == sqlite ]]; then
    python3 bench/metadata_client.py seed-sqlite "$WORK/data-sqlite/filegate.db" "$2" "$3"
  else
    psql "$DB_URL" -q -v ON_ERROR_STOP=1 -c "INSERT INTO files (project_id, id, display_name, mime_type, size_bytes,
        state, origin, blob_key, charged_bytes, created_at, updated_at, expires_at)
      SELECT 'alpha', 'seed' || lpad(i::text, 10, '0'), 'seeded', 'video/mp4', 1, 'ready', 'upload',
        'files/alpha/seed' || lpad(i::text, 10, '0') || '.bench', 1, 1700000000000000 + i, 1700000000000000 + i,
        4102444800000000 FROM generate_series($2, $3 - 1) AS i" -c "ANALYZE files" # as autovacuum would, soon
  fi
  local db_env=(FILEGATE_DATA_DIR="$WORK/data-$1")
  [[ $1 == postgres ]] && db_env+=(FILEGATE_DATABASE_URL="$DB_URL")
  env "${db_env[@]}" "$BIN" usage --recompute > /dev/null 2>&1
}

page_after() { # N → the list's pageToken for the page after seeded file N (its created_at and id)
  python3 -c "import base64; print(base64.urlsafe_b64encode(b'%d.seed%010d' % (1700000000000000 + $1, $1)).decode().rstrip('='))"
}

expire() { # engine count: the first COUNT seeded files expired an hour ago
  local past=$(( ($(date +%s) - 3600) * 1000000 ))
  if [[ $1 == sqlite ]]; then
    python3 -c "import sqlite3,sys; c=sqlite3.connect(sys.argv[1]); c.execute(\"UPDATE files SET expires_at=? WHERE id < 'seed' || printf('%010d', ?)\", ($past, $2)); c.commit()" "$WORK/data-sqlite/filegate.db"
  else
    psql "$DB_URL" -q -c "UPDATE files SET expires_at = $past WHERE id < 'seed' || lpad('$2', 10, '0')"
  fi
}

# wrk's requests/s and its p50 and p99 latency, as "rps | p50 | p99".
load() {
  local out
  out=$(wrk -t2 -c32 -d10s --latency -H "x-goog-api-key: $KEY" "$@")
  python3 - "$out" <<'EOF'
import re, sys
out = sys.argv[1]
rps = float(re.search(r"Requests/sec:\s+([\d.]+)", out).group(1))
def ms(p):
    v, unit = re.search(rf"^\s+{p}%\s+([\d.]+)(us|ms|s)\s*$", out, re.M).groups()
    return float(v) * {"us": 0.001, "ms": 1, "s": 1000}[unit]
print(f"{rps:,.0f} | {ms(50):.2f} ms | {ms(99):.2f} ms")
EOF
}

cat > "$WORK/start.lua" <<'EOF'
wrk.method = "POST"
wrk.body = "{}"
wrk.headers["X-Goog-Upload-Protocol"] = "resumable"
wrk.headers["X-Goog-Upload-Command"] = "start"
wrk.headers["X-Goog-Upload-Header-Content-Length"] = "1"
wrk.headers["Content-Type"] = "application/json"
EOF

declare -A ROWS
for engine in $ENGINES; do
  if [[ $engine == postgres ]]; then
    PG=$(bash "$SERVICES/postgres.sh" "$WORK/pg" | tail -1)
    psql "$PG" -q -c "CREATE DATABASE fg_bench"
    DB_URL=${PG%/*}/fg_bench
  fi
  serve "$engine"
  start0=$(python3 bench/metadata_client.py starts "$URL" "$KEY" 300)
  seed "$engine" 0 100000
  start100k=$(python3 bench/metadata_client.py starts "$URL" "$KEY" 300)
  deep=$(page_after 50000)
  ROWS[$engine,get]=$(load "$URL/v1beta/files/seed0000050000")
  ROWS[$engine,list]=$(load "$URL/v1beta/files?pageSize=100")
  ROWS[$engine,deep]=$(load "$URL/v1beta/files?pageSize=100&pageToken=$deep")
  ROWS[$engine,start]=$(load -s "$WORK/start.lua" "$URL/upload/v1beta/files")
  seed "$engine" 100000 1000000
  start1m=$(python3 bench/metadata_client.py starts "$URL" "$KEY" 300)
  ROWS[$engine,latency]="$start0 | $start100k | $start1m"
  ROWS[$engine,get1m]=$(load "$URL/v1beta/files/seed0000500000")
  ROWS[$engine,rate1m]=$(python3 bench/metadata_client.py rate "$URL/v1beta/files/seed0000500000" "$KEY" 2000 10)
  ROWS[$engine,deep1m]=$(load "$URL/v1beta/files?pageSize=100&pageToken=$(page_after 500000)")
  kill "$FG_PID"; wait "$FG_PID" 2>/dev/null || true; FG_PID=
  # 100 000 of the million expire; then a restart: time to listen (reconciliation included), and the
  # janitor's time to remove them (it sweeps at start, then every second here).
  expire "$engine" 100000
  t0=$(date +%s.%N)
  FILEGATE_SWEEP_INTERVAL_SECONDS=1 serve "$engine"
  ROWS[$engine,startup]=$(python3 -c "print(f'{$(date +%s.%N) - $t0:.2f} s')")
  ROWS[$engine,janitor]="> 600 s"
  for _ in $(seq 3000); do
    if [[ $(curl -s "$URL/metrics" | awk '/^filegate_files_expired_total/ {print int($2)}') -ge 100000 ]]; then
      ROWS[$engine,janitor]=$(python3 -c "print(f'{$(date +%s.%N) - $t0:.1f} s')")
      break
    fi
    sleep 0.2
  done
  kill "$FG_PID"; wait "$FG_PID" 2>/dev/null || true; FG_PID=
done

echo
echo "Under load (wrk -t2 -c32 -d10s; requests/s | p50 | p99), 100 000 files unless said:"
echo
echo "| request | ${ENGINES// / | } |"
echo "|---|$(for _ in $ENGINES; do printf -- '---|'; done)"
for what in get list deep start get1m rate1m deep1m; do
  label=$(case $what in get) echo "get a file";; list) echo "list, first page of 100";;
    deep) echo "list, page of 100 from the middle";; start) echo "start an upload";;
    get1m) echo "get a file, 1 000 000 files";;
    rate1m) echo "get a file at a fixed 2 000 req/s (open loop, 32 connections), 1 000 000 files";; deep1m) echo "list, page from the middle, 1 000 000 files";; esac)
  printf '| %s |' "$label"
  for engine in $ENGINES; do printf ' %s |' "${ROWS[$engine,$what]}"; done
  echo
done
echo
echo "Upload start, one at a time (p50 / p99) with 0 | 100 000 | 1 000 000 files:"
echo
echo "| engine | 0 files | 100 000 files | 1 000 000 files |"
echo "|---|---|---|---|"
for engine in $ENGINES; do echo "| $engine | ${ROWS[$engine,latency]} |"; done
echo
echo "With 1 000 000 files, 100 000 of them expired: start-up (to listening, reconciliation included) and the"
echo "janitor's time to remove the 100 000 (from the same start):"
echo
echo "| engine | start-up | 100 000 expirations |"
echo "|---|---|---|"
for engine in $ENGINES; do echo "| $engine | ${ROWS[$engine,startup]} | ${ROWS[$engine,janitor]} |"; done
