#!/usr/bin/env bash
# Benchmark: the model front door (release build) against the fake of Google's services
# (tests/fakes/google.py, as the Gemini API), beside the same requests sent to the fake directly:
#   - a text-only generateContent, 300 times in a row: the latency filegate adds (authentication, the
#     reference walk, the upstream connection);
#   - a call with a 7 MiB file sent inline (streamed from storage as base64): time and filegate's peak RSS;
#   - a call with a SIZE_MIB file the Gemini API gets through its Files API (streamed upload, then polled):
#     time beside curl uploading the same bytes to the fake's upload URL, and filegate's peak RSS.
# The fake is Python and bounds the absolute numbers; what counts is filegate beside the direct path.
#
#   bench/models.sh [SIZE_MIB]       default 256
#
# Prints Markdown rows for docs/benchmarks.md.
set -euo pipefail
cd "$(dirname "$0")/.."
SIZE_MIB=${1:-256}
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

python3 tests/fakes/google.py --api-key "$UPSTREAM_KEY" > "$WORK/fake.url" &
FAKE_PID=$!
until [[ -s $WORK/fake.url ]]; do sleep 0.1; done
FAKE=$(awk '{print $3}' "$WORK/fake.url")

FILEGATE_LISTEN=127.0.0.1:0 FILEGATE_DATA_DIR="$WORK/data" FILEGATE_API_KEYS="bench:$KEY" \
  FILEGATE_UPSTREAM=gemini FILEGATE_GEMINI_ENDPOINT="$FAKE" FILEGATE_GEMINI_API_KEY="$UPSTREAM_KEY" \
  FILEGATE_MAX_FILE_BYTES=$((4 << 30)) RUST_LOG=warn \
  "$CARGO_TARGET_DIR/release/filegate" serve > "$WORK/fg.out" 2> "$WORK/fg.log" &
FG_PID=$!
until grep -q "listening on" "$WORK/fg.out" 2>/dev/null; do sleep 0.1; done
FG=$(awk '/listening on/ {print $3}' "$WORK/fg.out")

hwm_kib() { awk '/VmHWM/ {print $2}' "/proc/$FG_PID/status"; }
reset_hwm() { echo 5 > "/proc/$FG_PID/clear_refs"; }

upload() { # path → file name
  curl -sf "$FG/upload/v1beta/files" -H "x-goog-api-key: $KEY" -H "X-Goog-Upload-Protocol: raw" \
    -H "Content-Type: video/mp4" --data-binary "@$1" | python3 -c 'import json,sys; print(json.load(sys.stdin)["file"]["name"])'
}
head -c $((7 * 1024 * 1024)) /dev/urandom > "$WORK/inline.bin"
head -c $((SIZE_MIB * 1024 * 1024)) /dev/urandom > "$WORK/large.bin"
INLINE_FILE=$(upload "$WORK/inline.bin")
LARGE_FILE=$(upload "$WORK/large.bin")

python3 - "$FG" "$KEY" "$FAKE" "$UPSTREAM_KEY" "$INLINE_FILE" "$LARGE_FILE" "$SIZE_MIB" "$FG_PID" "$WORK" <<'EOF'
import http.client, json, statistics, subprocess, sys, time, urllib.parse

fg, key, fake, upstream_key, inline_file, large_file, size_mib, pid, work = sys.argv[1:]

def hwm():
    return next(int(l.split()[1]) for l in open(f"/proc/{pid}/status") if l.startswith("VmHWM"))

def reset_hwm():
    open(f"/proc/{pid}/clear_refs", "w").write("5")

def post(base, path, headers, body):
    url = urllib.parse.urlsplit(base)
    conn = post.conns.setdefault(base, http.client.HTTPConnection(url.hostname, url.port))
    conn.request("POST", path, body=json.dumps(body), headers={"Content-Type": "application/json", **headers})
    response = conn.getresponse()
    data = response.read()
    assert response.status == 200, (response.status, data[:300])
    return data
post.conns = {}

text = {"contents": [{"role": "user", "parts": [{"text": "Hello"}]}]}
def series(base, headers, n=300):
    times = []
    for _ in range(n):
        t = time.perf_counter()
        post(base, "/v1beta/models/bench:generateContent", headers, text)
        times.append((time.perf_counter() - t) * 1000)
    times.sort()
    return statistics.median(times), times[int(len(times) * 0.99)]

series(fake, {"x-goog-api-key": upstream_key}, 30)
series(fg, {"x-goog-api-key": key}, 30)
direct = series(fake, {"x-goog-api-key": upstream_key})
through = series(fg, {"x-goog-api-key": key})
print(f"| text-only generateContent, p50 / p99 | {direct[0]:.2f} / {direct[1]:.2f} ms direct | "
      f"{through[0]:.2f} / {through[1]:.2f} ms through filegate (+{through[0] - direct[0]:.2f} ms p50) |")

def ask(name):
    body = {"contents": [{"role": "user", "parts": [{"fileData": {"fileUri": name}}, {"text": "Describe"}]}]}
    reset_hwm()
    before = hwm()
    t = time.perf_counter()
    answer = json.loads(post(fg, "/v1beta/models/bench:generateContent", {"x-goog-api-key": key}, body))
    took = time.perf_counter() - t
    seen = json.loads(answer["candidates"][0]["content"]["parts"][0]["text"])["saw"][0]
    return took, seen["via"], hwm(), before

took, via, peak, before = ask(inline_file)
print(f"| a 7 MiB file inline ({via}) | {took * 1000:.0f} ms | peak RSS {peak // 1024} MiB (idle {before // 1024} MiB) |")

took, via, peak, before = ask(large_file)
size = int(size_mib) << 20
# The same bytes straight to the fake's upload URL: start, then one `upload, finalize`.
start = subprocess.run(["curl", "-sf", "-D", "-", "-o", "/dev/null", "-X", "POST", f"{fake}/upload/v1beta/files",
    "-H", f"x-goog-api-key: {upstream_key}", "-H", "x-goog-upload-protocol: resumable",
    "-H", "x-goog-upload-command: start", "-H", f"x-goog-upload-header-content-length: {size}",
    "-H", "x-goog-upload-header-content-type: video/mp4", "-H", "Content-Type: application/json",
    "-d", "{}"], capture_output=True, text=True, check=True).stdout
upload_url = next(l.split(": ", 1)[1].strip() for l in start.splitlines() if l.lower().startswith("x-goog-upload-url"))
t = time.perf_counter()
subprocess.run(["curl", "-sf", "-o", "/dev/null", "-X", "POST", upload_url, "-H", "x-goog-upload-command: upload, finalize",
    "-H", "x-goog-upload-offset: 0", "-H", "Expect:", "--data-binary", f"@{work}/large.bin"], check=True)
curl_s = time.perf_counter() - t
print(f"| a {size_mib} MiB file to the Files API ({via}) | {took:.2f} s through filegate "
      f"({size / took / 1e6:.0f} MB/s, incl. one poll) | curl to the same upload URL {curl_s:.2f} s "
      f"({size / curl_s / 1e6:.0f} MB/s); filegate peak RSS {peak // 1024} MiB (idle {before // 1024} MiB) |")
EOF
