#!/usr/bin/env python3
"""Bytes through filegate beside the machine's limits and a peer, measured in one run (see bench/run).

  throughput.py BIN [--size-mib N] [--quick]   → Markdown on stdout, progress on stderr

Same run, same file, same kind of client:
  - limits: dd conv=fdatasync (disk), curl → nginx /sink (loopback upload), curl ← nginx (loopback
    download, sendfile), SHA-256 (hashlib/OpenSSL);
  - filegate (release BIN): resumable upload in 8 MiB chunks to disk and to tmpfs (median of 3, on
    prefaulted pages: see prefault()), URL import from nginx,
    download, 64 concurrent Range reads; without --quick also 8 concurrent uploads and 8 concurrent imports;
  - the peer: @tus/server + @tus/file-store receiving the same file in 8 MiB PATCHes (disk and tmpfs).
CPU is user + sys of the server's processes (/proc/PID/stat), per GiB; memory is filegate's peak RSS.
"""

import argparse
import base64
import hashlib
import http.client
import json
import os
import shutil
import subprocess
import sys
import tempfile
import threading
import time
import urllib.parse

HERE = os.path.dirname(os.path.abspath(__file__))
SERVICES = os.path.join(HERE, "..", "scripts", "services")
TICK = os.sysconf("SC_CLK_TCK")
KEY = "bench-key-0001"
GIB = 1 << 30
WARM = []  # files read into the page cache after each settle (the disk copy of the source, nginx's)


def log(*args):
    print(*args, file=sys.stderr, flush=True)


def cpu_seconds(pids):
    total = 0
    for pid in pids:
        try:
            fields = open(f"/proc/{pid}/stat").read().rsplit(")", 1)[1].split()
        except FileNotFoundError:
            continue
        total += int(fields[11]) + int(fields[12])  # utime, stime
    return total / TICK


def children(pid):
    found = []
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                if open(f"/proc/{entry}/stat").read().rsplit(")", 1)[1].split()[1] == str(pid):
                    found.append(int(entry))
            except (FileNotFoundError, IndexError):
                pass
    return found


def peak_rss_mib(pid):
    for line in open(f"/proc/{pid}/status"):
        if line.startswith("VmHWM"):
            return int(line.split()[1]) / 1024
    return 0.0


def reset_peak(pid):
    with open(f"/proc/{pid}/clear_refs", "w") as f:
        f.write("5")


def settle(*warm):
    """Before each measurement: dirty pages written out and the page cache dropped (root only), so that one
    step's writeback and memory reclaim are not charged to the next; then `warm` files read back in."""
    subprocess.run(["sync"], check=True)
    try:
        with open("/proc/sys/vm/drop_caches", "w") as f:
            f.write("3")
    except OSError:
        pass
    for path in warm:
        with open(path, "rb") as f:
            while f.read(8 << 20):
                pass


class Measured:
    """Wall time and the CPU of `pids` (callable, read at start and end) around a block."""

    def __init__(self, pids):
        self.pids = pids

    def __enter__(self):
        settle(*WARM)
        self.cpu0, self.t0 = cpu_seconds(self.pids()), time.monotonic()
        return self

    def __exit__(self, *exc):
        self.seconds = time.monotonic() - self.t0
        self.cpu = cpu_seconds(self.pids()) - self.cpu0


class Filegate:
    def __init__(self, bin_path, data_dir, extra=()):
        self.out = open(os.path.join(os.path.dirname(data_dir), os.path.basename(data_dir) + ".log"), "w")
        self.proc = subprocess.Popen(
            [bin_path, "serve", "--listen", "127.0.0.1:0", "--data-dir", data_dir, "--api-keys", f"bench:{KEY}",
             "--import-allow-cidrs", "127.0.0.1/32", "--max-file-bytes", str(64 * GIB),
             "--project-quota-bytes", str(1 << 40), *extra],
            stdout=subprocess.PIPE, stderr=self.out, text=True, env={**os.environ, "RUST_LOG": "warn"})
        line = ""
        while not line.startswith("listening on"):
            line = self.proc.stdout.readline()
            if not line:
                sys.exit(f"filegate did not start: see {self.out.name}")
        self.url = line.split()[2]

    def pids(self):
        return [self.proc.pid]

    def stop(self):
        self.proc.terminate()
        self.proc.wait()


def upload(url, path):
    """→ (seconds, sha256Hash, file name)"""
    out = subprocess.run([sys.executable, os.path.join(HERE, "upload_client.py"), url, KEY, path],
                         check=True, capture_output=True, text=True).stdout.split()
    return float(out[0]), out[1], out[2]


def delete_file(url, name):
    status, body = request(url, "DELETE", f"/v1beta/{name}", headers={"x-goog-api-key": KEY})
    assert status == 200, body


def prefault(directory, size):
    """Makes the next `size` bytes written to tmpfs land on memory already touched. In a virtual machine
    the first write to a never-used guest page traps to the hypervisor, and copying 1 GiB into fresh tmpfs
    pages was measured at 2.4 s against 0.47 s into recycled ones: whichever server ran first on tmpfs paid
    for it. Allocating (and so zeroing) twice the size and freeing it leaves hot pages on the free lists."""
    path = os.path.join(directory, "prefault")
    fd = os.open(path, os.O_CREAT | os.O_WRONLY, 0o600)
    try:
        os.posix_fallocate(fd, 0, 2 * size)
    finally:
        os.close(fd)
        os.remove(path)


def median_on_tmpfs(directory, size, pids, once, runs=3):
    """The median of `runs` measurements of `once()` (which returns a clean-up to run after its
    measurement), each on prefaulted tmpfs: single runs on tmpfs spread by ±20 % here."""
    results = []
    for _ in range(runs):
        prefault(directory, size)
        with Measured(pids) as m:
            cleanup = once()
        cleanup()
        results.append(m)
    log("  runs: " + ", ".join(f"{m.seconds:.2f} s" for m in results))
    return sorted(results, key=lambda m: m.seconds)[runs // 2]


def tus_upload(url, path):
    return float(subprocess.run([sys.executable, os.path.join(HERE, "tus_client.py"), url, path],
                                check=True, capture_output=True, text=True).stdout)


def request(base, method, path, body=None, headers=None):
    u = urllib.parse.urlsplit(base)
    conn = http.client.HTTPConnection(u.hostname, u.port, timeout=600)
    conn.request(method, path, body=body, headers=headers or {})
    resp = conn.getresponse()
    data = resp.read()
    conn.close()
    return resp.status, data


def import_and_wait(fg_url, source_url):
    status, body = request(fg_url, "POST", "/v1/files", json.dumps({"source_url": source_url, "model": "bench"}),
                           {"Authorization": KEY, "Content-Type": "application/json"})
    assert status == 200, body
    task = json.loads(body)
    while task["status"] not in ("ready", "failed"):
        _, body = request(fg_url, "GET", f"/v1/files/{task['id']}?wait=30", headers={"Authorization": KEY})
        task = json.loads(body)
    assert task["status"] == "ready", task
    return task


def curl_time(*args):
    return float(subprocess.run(["curl", "-s", "-f", "-w", "%{time_total}", *args], check=True,
                                capture_output=True, text=True).stdout)


def range_reads(base, path, size, headers, readers=64):
    """`readers` connections at once, each reading its own slice of the file with Range."""
    step = size // readers
    errors = []

    def read(i):
        start, end = i * step, (size if i == readers - 1 else (i + 1) * step) - 1
        try:
            status, data = request(base, "GET", path, headers={**headers, "Range": f"bytes={start}-{end}"})
            if status != 206 or len(data) != end - start + 1:
                errors.append((i, status, len(data)))
        except Exception as e:  # noqa: BLE001 - reported below
            errors.append((i, repr(e)))

    threads = [threading.Thread(target=read, args=(i,)) for i in range(readers)]
    t0 = time.monotonic()
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not errors, errors[:3]
    return time.monotonic() - t0


def in_parallel(fn, args_list):
    results = [None] * len(args_list)

    def run(i):
        results[i] = fn(*args_list[i])

    threads = [threading.Thread(target=run, args=(i,)) for i in range(len(args_list))]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    return results


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("bin")
    parser.add_argument("--size-mib", type=int, default=1024)
    parser.add_argument("--quick", action="store_true")
    parser.add_argument("--tus-modules", help="node_modules holding @tus/server and @tus/file-store")
    args = parser.parse_args()
    size = args.size_mib << 20
    gib = size / GIB
    mbps = lambda seconds, n=1: f"{n * size / seconds / 1e6:.0f}"  # noqa: E731
    rows, notes = [], []

    disk = tempfile.mkdtemp(prefix=".bench-", dir=os.environ.get("BENCH_DIR", os.getcwd()))
    ram = tempfile.mkdtemp(prefix="filegate-bench-", dir="/dev/shm")
    os.chmod(disk, 0o755)
    servers = []
    try:
        log("starting nginx")
        nginx_url = subprocess.run(["bash", os.path.join(SERVICES, "nginx.sh"),
                                    os.path.join(disk, "nginx")], check=True, capture_output=True,
                                   text=True).stdout.split()[-1]
        nginx_master = int(open(os.path.join(disk, "nginx", "pid")).read())
        nginx_pids = lambda: [nginx_master, *children(nginx_master)]  # noqa: E731
        source = os.path.join(disk, "nginx", "www", "source.bin")
        with open("/dev/urandom", "rb") as r, open(source, "wb") as w:
            for _ in range(args.size_mib):
                w.write(r.read(1 << 20))
        os.chmod(source, 0o644)
        WARM.append(source)
        ram_source = os.path.join(ram, "source.bin")
        shutil.copyfile(source, ram_source)
        subprocess.run(["sync"], check=True)

        log("limits: dd, curl → nginx, curl ← nginx, sha256")
        settle(*WARM)
        t0 = time.monotonic()
        subprocess.run(["dd", f"if={source}", f"of={disk}/dd.out", "bs=8M", "conv=fdatasync", "status=none"], check=True)
        dd_s = time.monotonic() - t0
        os.remove(f"{disk}/dd.out")
        with Measured(nginx_pids) as sink:
            curl_time("-o", "/dev/null", "-T", ram_source, "-H", "Expect:", f"{nginx_url}/sink")
        with Measured(nginx_pids) as served:
            curl_time("-o", "/dev/null", f"{nginx_url}/files/source.bin")
        t0 = time.monotonic()
        h = hashlib.sha256()
        with open(ram_source, "rb") as f:
            while b := f.read(8 << 20):
                h.update(b)
        sha_s = time.monotonic() - t0
        expected = h.hexdigest()
        settle(*WARM)
        nginx_ranges = range_reads(nginx_url, "/files/source.bin", size, {})
        rows += [
            ("dd conv=fdatasync (disk limit)", dd_s, "", ""),
            ("curl → nginx /sink (loopback upload limit)", sink.seconds, sink.cpu, "nginx"),
            ("curl ← nginx, sendfile (loopback download limit)", served.seconds, served.cpu, "nginx"),
            ("SHA-256 (hashlib, OpenSSL)", sha_s, sha_s, "hashing alone"),
        ]

        log("filegate on disk: upload, import, download, Range reads")
        fg = Filegate(args.bin, os.path.join(disk, "fg-data"))
        servers.append(fg)
        reset_peak(fg.proc.pid)
        with Measured(fg.pids) as up:
            _, digest, _ = upload(fg.url, ram_source)
        assert base64.b64decode(digest).hex() == expected, "upload digest"
        rss_upload = peak_rss_mib(fg.proc.pid)
        with Measured(fg.pids) as imp:
            task = import_and_wait(fg.url, f"{nginx_url}/files/source.bin")
        assert task["sha256"] == expected, "import digest"
        file_id = task["gemini_file"]["name"].split("/")[1]
        media = f"/v1beta/files/{file_id}:download?alt=media"
        # Served from the page cache, as nginx serves its copy: the stored object is warmed like the source.
        stored = next(os.path.join(d, f) for d, _, fs in os.walk(os.path.join(disk, "fg-data", "blobs"))
                      for f in fs if f.startswith(file_id) and os.path.getsize(os.path.join(d, f)) == size)
        WARM.append(stored)
        with Measured(fg.pids) as down:
            curl_time("-o", "/dev/null", "-H", f"x-goog-api-key: {KEY}", f"{fg.url}{media}")
        settle(*WARM)
        fg_ranges = range_reads(fg.url, media, size, {"x-goog-api-key": KEY})
        WARM.remove(stored)
        rows += [
            ("**filegate upload → disk**", up.seconds, up.cpu, f"peak RSS {rss_upload:.0f} MiB"),
            ("**filegate import nginx → disk**", imp.seconds, imp.cpu, ""),
            ("**filegate download** (curl)", down.seconds, down.cpu, ""),
        ]

        log("filegate on tmpfs: upload (median of 3)")
        fg_ram = Filegate(args.bin, os.path.join(ram, "fg-data"))
        servers.append(fg_ram)
        prefault(ram, size)
        t0 = time.monotonic()
        subprocess.run(["dd", f"if={ram_source}", f"of={ram}/dd.out", "bs=8M", "status=none"], check=True)
        dd_ram_s = time.monotonic() - t0
        os.remove(f"{ram}/dd.out")

        def chunked():
            name = upload(fg_ram.url, ram_source)[2]
            return lambda: delete_file(fg_ram.url, name)

        def raw():
            # The same bytes in one request (the raw protocol, curl): the CPU path without the chunks'
            # round trips.
            reply = os.path.join(ram, "raw.json")
            curl_time("-o", reply, "-H", f"x-goog-api-key: {KEY}", "-H", "X-Goog-Upload-Protocol: raw",
                      "-H", "Content-Type: video/mp4", "-H", "Expect:", "-T", ram_source, f"{fg_ram.url}/upload/v1beta/files")
            name = json.load(open(reply))["file"]["name"]
            return lambda: delete_file(fg_ram.url, name)

        up_ram = median_on_tmpfs(ram, size, fg_ram.pids, chunked)
        raw_ram = median_on_tmpfs(ram, size, fg_ram.pids, raw)
        fg_ram.stop()
        servers.remove(fg_ram)
        rows.append(("dd → tmpfs (the tmpfs write alone)", dd_ram_s, "", ""))
        rows.append(("**filegate upload → tmpfs** (the CPU path alone)", up_ram.seconds, up_ram.cpu, "median of 3"))
        rows.append(("filegate raw upload → tmpfs, one request (curl)", raw_ram.seconds, raw_ram.cpu, "median of 3"))

        tus_rows = []
        if args.tus_modules:
            log("the peer: @tus/server + @tus/file-store")
            # ES modules resolve packages from the script's own directory (NODE_PATH does not apply).
            script = os.path.join(os.path.dirname(args.tus_modules), "tus_server.mjs")
            shutil.copyfile(os.path.join(HERE, "tus_server.mjs"), script)
            for where, base in (("disk", disk), ("tmpfs", ram)):
                store = os.path.join(base, "tus")
                os.makedirs(store)
                tus = subprocess.Popen(["node", script, store], stdout=subprocess.PIPE, text=True)
                tus_url = tus.stdout.readline().split()[-1]
                if where == "disk":
                    with Measured(lambda: [tus.pid]) as peer:
                        tus_upload(tus_url, ram_source)
                    note = ""
                else:
                    def once():
                        tus_upload(tus_url, ram_source)
                        return lambda: [os.remove(os.path.join(store, f)) for f in os.listdir(store)]

                    peer = median_on_tmpfs(ram, size, lambda: [tus.pid], once)
                    note = "median of 3"
                tus.terminate()
                tus.wait()
                tus_rows.append((f"@tus/server + file-store → {where}", peer.seconds, peer.cpu, note))
            rows += tus_rows

        concurrency = []
        if not args.quick:
            log("8 concurrent uploads, 8 concurrent imports")
            reset_peak(fg.proc.pid)
            with Measured(fg.pids) as many_up:
                times = [t for t, *_ in in_parallel(upload, [(fg.url, ram_source)] * 8)]
            rss_many = peak_rss_mib(fg.proc.pid)
            concurrency.append(("8 uploads at once → disk", many_up.seconds, many_up.cpu, min(times), max(times), rss_many))
            reset_peak(fg.proc.pid)

            def timed_import():
                t0 = time.monotonic()
                import_and_wait(fg.url, f"{nginx_url}/files/source.bin")
                return time.monotonic() - t0

            with Measured(fg.pids) as many_imp:
                times = in_parallel(timed_import, [()] * 8)
            concurrency.append(("8 imports at once → disk", many_imp.seconds, many_imp.cpu, min(times), max(times),
                                peak_rss_mib(fg.proc.pid)))
    finally:
        for server in servers:
            server.stop()
        subprocess.run(["bash", os.path.join(disk, "nginx", "stop.sh")], capture_output=True)
        shutil.rmtree(disk, ignore_errors=True)
        shutil.rmtree(ram, ignore_errors=True)

    print(f"{args.size_mib} MiB per transfer; CPU = user + sys seconds of the server's processes, per GiB moved.\n")
    print("| what | time | MB/s | server CPU s/GiB | note |")
    print("|---|---|---|---|---|")
    for what, seconds, cpu, note in rows:
        cpu_text = f"{cpu / gib:.2f}" if cpu != "" else ""
        print(f"| {what} | {seconds:.2f} s | {mbps(seconds)} | {cpu_text} | {note} |")
    limit_up = max(dd_s, sink.seconds)
    ratio = lambda a, b: f"{b / a:.2f}×"  # noqa: E731  (throughput ratio of a over b = time b / time a)
    print()
    print("| ratio (same run) | value | target |")
    print("|---|---|---|")
    print(f"| upload → tmpfs ÷ curl → nginx | {ratio(up_ram.seconds, sink.seconds)} | ≥ 0.8× |")
    print(f"| raw upload → tmpfs, one request ÷ curl → nginx | {ratio(raw_ram.seconds, sink.seconds)} | |")
    print(f"| SHA-256 alone ÷ curl → nginx (the ceiling of any server hashing every byte on one core) | "
          f"{ratio(sha_s, sink.seconds)} | |")
    print(f"| upload → disk ÷ dd conv=fdatasync | {ratio(up.seconds, dd_s)} | ≥ 0.9× |")
    print(f"| upload → disk ÷ the slower limit | {ratio(up.seconds, limit_up)} | |")
    if tus_rows:
        print(f"| upload → disk ÷ @tus/server → disk | {ratio(up.seconds, tus_rows[0][1])} | ≥ 2× |")
        print(f"| upload → tmpfs ÷ @tus/server → tmpfs | {ratio(up_ram.seconds, tus_rows[1][1])} | |")
    print(f"| download ÷ nginx sendfile | {ratio(down.seconds, served.seconds)} | ≥ 0.8× |")
    print(f"| 64 concurrent Range reads ÷ nginx's | {ratio(fg_ranges, nginx_ranges)} ({fg_ranges:.2f} s vs {nginx_ranges:.2f} s) | |")
    if concurrency:
        print()
        print("| concurrent (8 × the file) | time | aggregate MB/s | ÷ disk limit | CPU s/GiB | slowest ÷ fastest | peak RSS |")
        print("|---|---|---|---|---|---|---|")
        for what, seconds, cpu, fastest, slowest, rss in concurrency:
            print(f"| {what} | {seconds:.2f} s | {mbps(seconds, 8)} | {dd_s * 8 / seconds:.2f}× | {cpu / gib / 8:.2f} | "
                  f"{slowest / fastest:.2f} | {rss:.0f} MiB |")


if __name__ == "__main__":
    main()
