#!/usr/bin/env bash
# nginx on loopback as an import source and an upload sink for the tests and benchmarks (Debian's `nginx`).
#
#   usage: scripts/services/nginx.sh DIR [PORT]
#
# Serves the files put in DIR/www:
#   GET  /files/NAME               the file, with Range (206), ETag, Last-Modified, sendfile
#   GET  /files/NAME?rate=BYTES    the same, throttled per connection (nginx limit_rate; "1m" = 1 MiB/s)
#   GET  /chunked/NAME             the same bytes without Content-Length and without Range
#   GET  /redirect?to=URL          302 to URL (an open redirect, for the redirect and SSRF tests)
#   PUT|POST /sink                 discards a body of any size, answers 204 (a throughput baseline)
# DIR/env exports HTTP_SOURCE_URL and HTTP_SOURCE_ROOT; DIR/access.log logs bytes sent per request.
set -euo pipefail
source "$(dirname "$0")/lib.sh"
DIR=${1:?usage: nginx.sh DIR [PORT]}
PORT=${2:-}
mkdir -p "$DIR/www" "$DIR/tmp"
DIR=$(cd "$DIR" && pwd)
already_running "$DIR" && exit 0

command -v nginx >/dev/null || { echo "installing nginx (Debian)..." >&2; apt_install nginx; }
[[ -n $PORT ]] || PORT=$(free_port)
# Started as root, the workers run as nobody: the served tree must be world-readable.
chmod a+rx "$DIR" "$DIR/www"
USERLINE=""
[[ $(id -u) -eq 0 ]] && USERLINE="user nobody nogroup;"
cat >"$DIR/nginx.conf" <<CONF
daemon off;
worker_processes 1;
pid $DIR/nginx.pid;
error_log $DIR/error.log warn;
$USERLINE
events { worker_connections 1024; }
http {
  access_log $DIR/access.log;
  client_body_temp_path $DIR/tmp/body; proxy_temp_path $DIR/tmp/proxy; fastcgi_temp_path $DIR/tmp/fcgi;
  uwsgi_temp_path $DIR/tmp/uwsgi; scgi_temp_path $DIR/tmp/scgi;
  types { application/octet-stream bin; text/plain txt; application/json json; application/pdf pdf; image/png png; }
  default_type application/octet-stream;
  sendfile on;
  server {
    listen 127.0.0.1:$PORT;
    client_max_body_size 0;
    location /files/   { alias $DIR/www/; set \$lr 0; if (\$arg_rate) { set \$lr \$arg_rate; } limit_rate \$lr; }
    # The same bytes without Content-Length (chunked) and without Range: sub_filter drops the length.
    location /chunked/ { alias $DIR/www/; sub_filter_types *; sub_filter 'filegate-no-such-marker-7f3a' ''; max_ranges 0;
                         set \$lr 0; if (\$arg_rate) { set \$lr \$arg_rate; } limit_rate \$lr; }
    location = /redirect { return 302 \$arg_to; }
    location = /sink   { client_body_buffer_size 1m; return 204; }
  }
}
CONF
nginx -t -q -c "$DIR/nginx.conf" -p "$DIR" 2>"$DIR/configtest.log" || { cat "$DIR/configtest.log" >&2; exit 1; }
nohup nginx -c "$DIR/nginx.conf" -p "$DIR" >"$DIR/log" 2>&1 &
echo $! >"$DIR/pid"
URL="http://127.0.0.1:$PORT"
wait_http "$URL/files/" 10 "$DIR/pid" "$DIR/log"
echo "$URL" >"$DIR/url"
echo "export HTTP_SOURCE_URL=$URL HTTP_SOURCE_ROOT=$DIR/www" >"$DIR/env"
write_stop "$DIR" QUIT 100
echo "nginx pid $(cat "$DIR/pid") on $URL serving $DIR/www (stop: $DIR/stop.sh)" >&2
echo "$URL"
