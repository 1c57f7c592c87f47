#!/usr/bin/env bash
# Benchmark: the cost of a model call's file references, which must grow linearly with their number
# (issue: 2 000 parts took 1.8 s and 8 000 parts 20.5 s of CPU when the outgoing body was searched once
# per inline file). One small file, referenced by N parts of one generateContent, each sent inline, through
# a release build to the fake Gemini API (tests/fakes/google.py). For N = 2 000, 8 000 and 32 000 (the
# per-request cap raised to allow them): filegate's CPU time for the call (user + sys from /proc, so the
# Python fake's own time is not counted), the wall time, and /healthz latency while two such calls run.
#
#   bench/model_parts.sh
#
# Prints Markdown rows for docs/benchmarks.md.
set -euo pipefail
cd "$(dirname "$0")/.."
export CARGO_TARGET_DIR=${CARGO_TARGET_DIR:-$HOME/.cache/filegate-target}
WORK=$(mktemp -d "${BENCH_DIR:-$PWD}/.bench-XXXXXX")
cleanup() {
  [[ -n ${FG_PID:-} ]] && kill "$FG_PID" 2>/dev/null
  [[ -n ${FAKE_PID:-} ]] && kill "$FAKE_PID" 2>/dev/null
  rm -rf "$WORK"
}
trap cleanup EXIT
cargo build --release --locked -q
KEY=bench-key-0001
UPSTREAM_KEY=gemini-upstream-key
python3 tests/fakes/google.py --api-key "$UPSTREAM_KEY" >"$WORK/fake.url" &
FAKE_PID=$!
until [[ -s $WORK/fake.url ]]; do sleep 0.1; done
FAKE=$(awk '{print $3}' "$WORK/fake.url")
FILEGATE_LISTEN=127.0.0.1:0 FILEGATE_DATA_DIR="$WORK/data" FILEGATE_API_KEYS="bench:$KEY" \
  FILEGATE_UPSTREAM=gemini FILEGATE_GEMINI_ENDPOINT="$FAKE" FILEGATE_GEMINI_API_KEY="$UPSTREAM_KEY" \
  FILEGATE_MODEL_MAX_FILE_REFERENCES=100000 RUST_LOG=warn \
  "$CARGO_TARGET_DIR/release/filegate" serve >"$WORK/fg.out" 2>"$WORK/fg.log" &
FG_PID=$!
until grep -q "listening on" "$WORK/fg.out" 2>/dev/null; do sleep 0.1; done
FG=$(awk '/listening on/ {print $3}' "$WORK/fg.out")

python3 - "$FG" "$KEY" "$FG_PID" <<'PY'
import json, os, statistics, sys, threading, time, urllib.request

fg, key, pid = sys.argv[1:]
tick = os.sysconf("SC_CLK_TCK")

def cpu():
    fields = open(f"/proc/{pid}/stat").read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / tick

def post(path, body, headers=None):
    request = urllib.request.Request(f"{fg}{path}", data=body, method="POST",
                                     headers={"x-goog-api-key": key, **(headers or {})})
    with urllib.request.urlopen(request, timeout=600) as response:
        return response.status, response.read()

_, reply = post("/upload/v1beta/files", os.urandom(300),
                {"X-Goog-Upload-Protocol": "raw", "Content-Type": "image/png"})
name = json.loads(reply)["file"]["name"]

def call(n):
    part = {"fileData": {"fileUri": name, "mimeType": "image/png"}}
    body = json.dumps({"contents": [{"role": "user", "parts": [part] * n}]}).encode()
    status, reply = post("/v1beta/models/gemini-test:generateContent", body, {"Content-Type": "application/json"})
    assert status == 200
    seen = json.loads(json.loads(reply)["candidates"][0]["content"]["parts"][0]["text"])["saw"]
    assert len(seen) == n, len(seen)
    return len(body)

call(100)  # warm up
print("| file references in one call | request body | filegate CPU | wall (with the Python fake) |")
print("|---|---|---|---|")
for n in (2000, 8000, 32000):
    cpus, walls = [], []
    for _ in range(3):
        before, started = cpu(), time.monotonic()
        size = call(n)
        walls.append(time.monotonic() - started)
        cpus.append(cpu() - before)
    print(f"| {n:,} | {size / 1e6:.2f} MB | {statistics.median(cpus) * 1000:.0f} ms | {statistics.median(walls):.2f} s |")

# /healthz while two 32 000-part calls run at once.
done = []
threads = [threading.Thread(target=lambda: done.append(call(32000))) for _ in range(2)]
[t.start() for t in threads]
latencies = []
while any(t.is_alive() for t in threads):
    started = time.monotonic()
    urllib.request.urlopen(f"{fg}/healthz", timeout=60).read()
    latencies.append(time.monotonic() - started)
    time.sleep(0.05)
[t.join() for t in threads]
print()
print(f"/healthz during two 32 000-part calls: {len(latencies)} probes, "
      f"max {max(latencies) * 1000:.1f} ms, median {statistics.median(latencies) * 1000:.1f} ms.")
PY
