"""Webhook delivery latency: files made at a steady rate through a release filegate, each `file.active`
received by a loopback receiver; latency is the receiver's clock minus the event's `timestamp` (the commit
of the change). The receiver runs in a process of its own. For scale, the same receiver's latency for a
plain POST sent straight to it, in the same run. Usage: webhook_latency.py FILEGATE_URL KEY RATE SECONDS"""

import http.server
import json
import statistics
import sys
import threading
import time
import urllib.request
from datetime import datetime

import os
import subprocess

if sys.argv[1] == "receive":
    # The receiver, in a process of its own (the uploads' threads would otherwise slow it down: one GIL).
    out = open(sys.argv[2], "a", buffering=1)
    latencies, direct = out, out
else:
    url, key, rate, seconds = sys.argv[1], sys.argv[2], float(sys.argv[3]), float(sys.argv[4])
lock = threading.Lock()


class Handler(http.server.BaseHTTPRequestHandler):
    def do_POST(self):
        body = json.loads(self.rfile.read(int(self.headers["content-length"])))
        now = time.time()
        with lock:
            if "sent_at" in body:
                out.write(f"direct {now - body['sent_at']}\n")
            elif body.get("type") == "file.active":
                sent = datetime.fromisoformat(body["timestamp"].replace("Z", "+00:00")).timestamp()
                out.write(f"event {now - sent}\n")
        self.send_response(200)
        self.send_header("content-length", "0")
        self.end_headers()

    def log_message(self, *args):
        pass


if sys.argv[1] == "receive":
    receiver = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    print(receiver.server_address[1], flush=True)
    receiver.serve_forever()
    sys.exit(0)

record = f"/tmp/webhook-latency-{os.getpid()}.txt"
receiver = subprocess.Popen([sys.executable, __file__, "receive", record], stdout=subprocess.PIPE, text=True)
hook_url = f"http://127.0.0.1:{receiver.stdout.readline().strip()}/hook"


def recorded(kind):
    with open(record) as f:
        return [float(line.split()[1]) for line in f if line.startswith(kind)]


def post(path, body, headers):
    request = urllib.request.Request(path, data=body, method="POST", headers=headers)
    with urllib.request.urlopen(request) as response:
        return json.load(response) if response.headers.get("content-length") != "0" else None


post(f"{url}/v1beta/webhooks", json.dumps({"uri": hook_url, "subscribedEvents": ["file.active"]}).encode(),
     {"x-goog-api-key": key, "content-type": "application/json"})
for _ in range(200):
    post(hook_url, json.dumps({"sent_at": time.time()}).encode(), {"content-type": "application/json"})


def make_file(i):
    post(f"{url}/upload/v1beta/files?uploadType=media", f"file {i}\n".encode(),
         {"x-goog-api-key": key, "content-type": "text/plain"})


total = int(rate * seconds)
start = time.time()
threads = []
for i in range(total):
    delay = start + i / rate - time.time()
    if delay > 0:
        time.sleep(delay)
    t = threading.Thread(target=make_file, args=(i,))
    t.start()
    threads.append(t)
for t in threads:
    t.join()
made_in = time.time() - start
deadline = time.time() + 60
while len(recorded("event")) < total and time.time() < deadline:
    time.sleep(0.1)
latencies, direct = recorded("event"), recorded("direct")
receiver.kill()
os.unlink(record)


def pct(values, p):
    values = sorted(values)
    return values[min(len(values) - 1, int(len(values) * p / 100))] * 1000


print(f"| {total} files at {rate:.0f}/s ({total / made_in:.0f}/s achieved) | {len(latencies)} of {total} | "
      f"{pct(latencies, 50):.0f} ms | {pct(latencies, 99):.0f} ms | {max(latencies) * 1000:.0f} ms |")
print(f"| a POST straight to the same receiver (200) | {len(direct)} | {pct(direct, 50):.1f} ms | "
      f"{pct(direct, 99):.1f} ms | {max(direct) * 1000:.1f} ms |")
assert len(latencies) == total, "every event arrived"
