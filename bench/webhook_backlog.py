"""A million pending webhook deliveries: filegate's memory while it works through a backlog that large.

A release filegate on SQLite gets a webhook whose receiver refuses every connection (a port nothing listens
on, on loopback), then stops; a million deliveries are written into its outbox directly (the rows its own
transactions would write, each with a realistic event); filegate starts again and is watched for a while:
its peak RSS, the attempts it makes per second, and the outbox's size as /metrics reports it.

Usage: webhook_backlog.py FILEGATE_BINARY [ROWS] [SECONDS]"""

import json
import os
import re
import sqlite3
import subprocess
import sys
import tempfile
import time
import urllib.request

binary = sys.argv[1]
rows = int(sys.argv[2]) if len(sys.argv) > 2 else 1_000_000
seconds = int(sys.argv[3]) if len(sys.argv) > 3 else 30
KEY = "bench-key-0001"
work = tempfile.mkdtemp(dir=os.environ.get("BENCH_DIR"))
env = dict(os.environ, FILEGATE_LISTEN="127.0.0.1:0", FILEGATE_DATA_DIR=f"{work}/data",
           FILEGATE_API_KEYS=f"bench:{KEY}", RUST_LOG="warn", FILEGATE_WEBHOOK_ALLOW_HTTP="true",
           FILEGATE_IMPORT_ALLOW_CIDRS="127.0.0.1/32")


def start():
    proc = subprocess.Popen([binary, "serve"], env=env, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True)
    for line in proc.stdout:
        if line.startswith("listening on "):
            return proc, line.split()[-1]
    raise RuntimeError("filegate did not start")


def rss_kib(pid, field):
    with open(f"/proc/{pid}/status") as f:
        return int(re.search(rf"{field}:\s+(\d+)", f.read()).group(1))


proc, url = start()
request = urllib.request.Request(f"{url}/v1beta/webhooks", method="POST",
                                 data=json.dumps({"uri": "http://127.0.0.1:9/hook",
                                                  "subscribedEvents": ["file.active"]}).encode(),
                                 headers={"x-goog-api-key": KEY, "content-type": "application/json"})
webhook = json.load(urllib.request.urlopen(request))["name"].split("/")[1]
proc.terminate()
proc.wait()

db = sqlite3.connect(f"{work}/data/filegate.db")
now = int(time.time() * 1e6)
snapshot = {"id": "x", "display_name": "lecture.mp4", "mime_type": "video/mp4", "size_bytes": 123456789,
            "sha256": "ab" * 32, "state": "ready", "origin": "upload", "blob_key": "files/bench/x.abc",
            "created_at": now, "updated_at": now, "expires_at": now, "error": None, "import": None}
event = json.dumps({"type": "file.active", "timestamp": "2026-12-03T18:00:00Z", "project": "bench", "file": snapshot})
started = time.time()
db.executemany(
    "INSERT INTO webhook_deliveries (id, project_id, webhook_id, uri, event_type, event, created_at, next_attempt_at) "
    "VALUES (?, 'bench', ?, NULL, 'file.active', ?, ?, ?)",
    ((f"msg_{i:026d}", webhook, event, now, now) for i in range(rows)))
db.commit()
db.close()
filled = time.time() - started

proc, url = start()
time.sleep(1)
base = rss_kib(proc.pid, "VmRSS")


def metric(name, text):
    found = re.search(rf"^{re.escape(name)} (\S+)$", text, re.M)
    return float(found.group(1)) if found else 0.0


samples = []
for _ in range(seconds):
    time.sleep(1)
    text = urllib.request.urlopen(f"{url}/metrics").read().decode()
    samples.append((rss_kib(proc.pid, "VmRSS"), metric('filegate_webhook_deliveries_total{outcome="failed"}', text),
                    metric("filegate_webhook_pending_deliveries", text)))
peak = rss_kib(proc.pid, "VmHWM")
proc.terminate()
stopping = time.time()
proc.wait(timeout=30)
stopped_in = time.time() - stopping
attempts = samples[-1][1] - samples[0][1]
print(f"| {rows:,} pending deliveries to a receiver that refuses every connection | {filled:.0f} s to write them | "
      f"{base / 1024:.0f} MiB at start, peak {peak / 1024:.0f} MiB over {seconds} s | "
      f"{attempts / (len(samples) - 1):.0f} attempts/s | {samples[-1][2]:,.0f} pending at the end | "
      f"stopped {stopped_in:.1f} s after SIGTERM |")
subprocess.run(["rm", "-rf", work])
