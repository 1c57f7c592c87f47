# Shared helpers of the service scripts (sourced, not run).
#
# Every service script takes `DIR [PORT]`, installs what it needs once (Debian packages, or PyPI/npm
# packages under $FILEGATE_TEST_TOOLS, default ~/.cache/filegate-test-tools), starts its server on
# 127.0.0.1 only, writes DIR/pid, DIR/log, DIR/url, DIR/env (source it) and DIR/stop.sh, and prints its
# URL as the last line of stdout. Re-running it on a DIR whose server is up prints the URL again.

TOOLS=${FILEGATE_TEST_TOOLS:-$HOME/.cache/filegate-test-tools}

free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }

# Already running in DIR? Then print its URL and stop here.
already_running() {
  if [[ -f "$1/pid" && -f "$1/url" ]] && kill -0 "$(cat "$1/pid")" 2>/dev/null; then
    cat "$1/url"
    return 0
  fi
  return 1
}

apt_install() {
  DEBIAN_FRONTEND=noninteractive apt-get install -y -q "$@" >/dev/null 2>&1 \
    || { apt-get update -q >/dev/null && DEBIAN_FRONTEND=noninteractive apt-get install -y -q "$@" >/dev/null; }
}

# wait_http URL SECONDS PIDFILE LOG: 0 once anything answers HTTP on URL.
wait_http() {
  local end=$((SECONDS + $2))
  while ((SECONDS < end)); do
    kill -0 "$(cat "$3")" 2>/dev/null || { echo "server exited:" >&2; tail -20 "$4" >&2; return 1; }
    [[ $(curl -s -o /dev/null -w '%{http_code}' "$1" || true) != 000 ]] && return 0
    sleep 0.1
  done
  echo "server did not answer on $1 within $2 s" >&2
  tail -20 "$4" >&2
  kill "$(cat "$3")" 2>/dev/null
  return 1
}

# write_stop DIR SIGNAL WAIT_TENTHS: DIR/stop.sh sends SIGNAL to the pid in DIR/pid, then SIGKILL after the wait.
write_stop() {
  cat >"$1/stop.sh" <<STOP
#!/usr/bin/env bash
pid=\$(cat "$1/pid" 2>/dev/null) || exit 0
kill -$2 "\$pid" 2>/dev/null || exit 0
for _ in \$(seq 1 $3); do kill -0 "\$pid" 2>/dev/null || exit 0; sleep 0.1; done
kill -9 "\$pid" 2>/dev/null
exit 0
STOP
  chmod +x "$1/stop.sh"
}
