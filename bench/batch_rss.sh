#!/usr/bin/env bash
# Benchmark: a batch's memory must not grow with its requests file. A fresh release filegate per size, its
# model calls going to the fake Gemini API (tests/fakes/google.py); 20 uploaded files; a JSONL of N requests
# (each naming one of the files and carrying ~1 KB of prompt) uploaded, then one batchGenerateContent, which
# reads the JSONL twice line by line (check, then rewrite while streaming to the upstream); then polls the
# batch until its results are a filegate file (streamed in from the fake's Files API) and downloads them
# through filegate. Reports, for N = 10 000 and 100 000: the JSONL's size, the create's wall time, filegate's
# peak RSS (VmHWM) before the create, after it, and after the results were collected and downloaded, and the
# results' size.
#
#   bench/batch_rss.sh
#
# Prints Markdown rows for docs/benchmarks.md.
set -euo pipefail
cd "$(dirname "$0")/.."
export CARGO_TARGET_DIR=${CARGO_TARGET_DIR:-$HOME/.cache/filegate-target}
WORK=$(mktemp -d "${BENCH_DIR:-$PWD}/.bench-XXXXXX")
cleanup() {
  [[ -n ${FAKE_PID:-} ]] && kill "$FAKE_PID" 2>/dev/null
  rm -rf "$WORK"
}
trap cleanup EXIT
cargo build --release --locked -q
UPSTREAM_KEY=gemini-upstream-key
python3 tests/fakes/google.py --api-key "$UPSTREAM_KEY" >"$WORK/fake.url" &
FAKE_PID=$!
until [[ -s $WORK/fake.url ]]; do sleep 0.1; done
FAKE=$(awk '{print $3}' "$WORK/fake.url")

python3 - "$CARGO_TARGET_DIR/release/filegate" "$FAKE" "$UPSTREAM_KEY" "$WORK" <<'PY'
import json, os, subprocess, sys, time, urllib.request

binary, fake, upstream_key, work = sys.argv[1:]
KEY = "bench-key-0001"

def vm_hwm(pid):
    for line in open(f"/proc/{pid}/status"):
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024

def run(n):
    env = dict(os.environ, FILEGATE_LISTEN="127.0.0.1:0", FILEGATE_DATA_DIR=f"{work}/data-{n}",
               FILEGATE_API_KEYS=f"bench:{KEY}", FILEGATE_UPSTREAM="gemini", FILEGATE_GEMINI_ENDPOINT=fake,
               FILEGATE_GEMINI_API_KEY=upstream_key, RUST_LOG="warn")
    proc = subprocess.Popen([binary, "serve"], env=env, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True)
    url = None
    while url is None:
        line = proc.stdout.readline()
        if line.startswith("listening on "):
            url = line.split()[-1]

    def post(path, body, headers):
        request = urllib.request.Request(f"{url}{path}", data=body, method="POST",
                                         headers={"x-goog-api-key": KEY, **headers})
        with urllib.request.urlopen(request, timeout=1200) as response:
            return json.loads(response.read())

    def upload(body, mime):
        return post("/upload/v1beta/files", body, {"X-Goog-Upload-Protocol": "raw", "Content-Type": mime})["file"]

    try:
        files = [upload(os.urandom(2000), "image/png")["uri"] for _ in range(20)]
        prompt = "x" * 1000
        path = f"{work}/requests-{n}.jsonl"
        with open(path, "w") as out:
            for i in range(n):
                parts = [{"fileData": {"fileUri": files[i % 20], "mimeType": "image/png"}}, {"text": prompt}]
                out.write(json.dumps({"key": str(i), "request": {"contents": [{"role": "user", "parts": parts}]}}) + "\n")
        size = os.path.getsize(path)
        with open(path, "rb") as f:
            requests = upload(f.read(), "application/jsonl")
        before = vm_hwm(proc.pid)
        started = time.monotonic()
        body = json.dumps({"batch": {"inputConfig": {"fileName": requests["name"]}}}).encode()
        created = post("/v1beta/models/gemini-test:batchGenerateContent", body, {"Content-Type": "application/json"})
        assert created["name"].startswith("batches/"), created
        wall = time.monotonic() - started
        after_create = vm_hwm(proc.pid)
        while True:
            request = urllib.request.Request(f"{url}/v1beta/{created['name']}", headers={"x-goog-api-key": KEY})
            with urllib.request.urlopen(request, timeout=600) as response:
                batch = json.loads(response.read())
            if batch["done"]:
                break
            time.sleep(0.5)
        results = batch["metadata"]["output"]["responsesFile"]
        request = urllib.request.Request(f"{url}/v1beta/{results}:download?alt=media", headers={"x-goog-api-key": KEY})
        lines = received = 0
        with urllib.request.urlopen(request, timeout=600) as response:
            while chunk := response.read(1 << 20):
                received += len(chunk)
                lines += chunk.count(b"\n")
        assert lines == n, (lines, n)
        print(f"| {n:,} | {size / 1e6:.0f} MB | {wall:.1f} s | {before:.0f} MiB | {after_create:.0f} MiB "
              f"| {received / 1e6:.0f} MB | {vm_hwm(proc.pid):.0f} MiB |", flush=True)
    finally:
        proc.terminate()
        proc.wait()

print("| requests | JSONL | create (2 passes + upload to the fake) | peak RSS before | after the create "
      "| results | after collecting and downloading them |")
print("|---|---|---|---|---|---|---|")
for n in (10_000, 100_000):
    run(n)
PY
