#!/usr/bin/env bash
# A throw-away PostgreSQL server on loopback for the tests (Debian's `postgresql` package, installed once).
#
#   usage: scripts/services/postgres.sh DIR [PORT]
#
# Trust authentication, durability off (fsync, synchronous_commit, full_page_writes): tests only.
# DIR/env exports DATABASE_URL and PG*; the URL printed last is postgres://postgres@127.0.0.1:PORT/postgres.
set -euo pipefail
source "$(dirname "$0")/lib.sh"
DIR=${1:?usage: postgres.sh DIR [PORT]}
PORT=${2:-}
mkdir -p "$DIR"
DIR=$(cd "$DIR" && pwd)
already_running "$DIR" && exit 0

pg_bin() { ls -d /usr/lib/postgresql/*/bin 2>/dev/null | sort -V | tail -1; }
if [[ -z "$(pg_bin)" ]]; then
  echo "installing postgresql (Debian)..." >&2
  # The package must not create and start a cluster of its own.
  mkdir -p /etc/postgresql-common/createcluster.d
  echo "create_main_cluster = false" >/etc/postgresql-common/createcluster.d/50-no-main.conf
  apt_install postgresql
fi
PGBIN=$(pg_bin)
[[ -n $PGBIN ]] || { echo "no PostgreSQL server binaries found" >&2; exit 1; }

# initdb and postgres refuse to run as root: then they run as the `postgres` user.
AS=()
if [[ $(id -u) -eq 0 ]]; then
  id postgres >/dev/null 2>&1 || useradd --system --home-dir /var/lib/postgresql --shell /bin/bash postgres
  chown postgres: "$DIR"
  AS=(runuser -u postgres --)
  "${AS[@]}" test -w "$DIR" || { echo "user postgres cannot write $DIR (is a parent directory closed?)" >&2; exit 1; }
fi
[[ -n $PORT ]] || PORT=$(free_port)
if [[ ! -f $DIR/data/PG_VERSION ]]; then
  "${AS[@]}" "$PGBIN/initdb" -D "$DIR/data" -U postgres --auth=trust -E UTF8 --no-locale --no-sync \
    >"$DIR/initdb.log" 2>&1 || { cat "$DIR/initdb.log" >&2; exit 1; }
fi
"${AS[@]}" "$PGBIN/pg_ctl" -D "$DIR/data" -l "$DIR/log" -w -t 30 -s \
  -o "-c listen_addresses=127.0.0.1 -p $PORT -k $DIR -c fsync=off -c synchronous_commit=off -c full_page_writes=off -c max_connections=300" \
  start || { tail -20 "$DIR/log" >&2; exit 1; }
head -1 "$DIR/data/postmaster.pid" >"$DIR/pid"
URL="postgres://postgres@127.0.0.1:$PORT/postgres"
echo "$URL" >"$DIR/url"
cat >"$DIR/env" <<ENV
export DATABASE_URL=$URL
export PGHOST=127.0.0.1 PGPORT=$PORT PGUSER=postgres PGDATABASE=postgres
ENV
write_stop "$DIR" INT 100
echo "postgres pid $(cat "$DIR/pid") on 127.0.0.1:$PORT (stop: $DIR/stop.sh)" >&2
echo "$URL"
