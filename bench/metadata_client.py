"""Helpers of bench/metadata.sh.

  metadata_client.py starts URL KEY N            N upload starts, one at a time: prints "p50 ms / p99 ms"
  metadata_client.py seed-sqlite DB FROM TO      inserts files seed<FROM>..seed<TO-1> into project alpha
  metadata_client.py rate URL KEY RPS SECONDS    GETs of URL at a fixed rate: prints "rps | p50 | p99"
"""

import asyncio
import http.client
import sqlite3
import statistics
import sys
import time
import urllib.parse


def starts(url, key, n):
    parsed = urllib.parse.urlparse(url)
    conn = http.client.HTTPConnection(parsed.hostname, parsed.port)
    headers = {
        "x-goog-api-key": key,
        "X-Goog-Upload-Protocol": "resumable",
        "X-Goog-Upload-Command": "start",
        "X-Goog-Upload-Header-Content-Length": "1",
        "Content-Type": "application/json",
    }
    took = []
    # The first few after a bulk seed pay for folding its journal into the database: not per-request cost.
    for i in range(n + 20):
        began = time.perf_counter()
        conn.request("POST", "/upload/v1beta/files", body=b"{}", headers=headers)
        resp = conn.getresponse()
        resp.read()
        if resp.status != 200:
            sys.exit(f"start answered {resp.status}")
        if i >= 20:
            took.append((time.perf_counter() - began) * 1000)
    took.sort()
    p99 = took[min(len(took) - 1, int(len(took) * 0.99))]
    print(f"{statistics.median(took):.2f} ms / {p99:.2f} ms")


def seed_sqlite(path, first, end):
    db = sqlite3.connect(path, timeout=30)
    db.execute("INSERT OR IGNORE INTO projects (id, created_at) VALUES ('alpha', 0)")
    batch = 50_000
    for start in range(first, end, batch):
        rows = [
            (
                f"seed{i:010d}",
                f"files/alpha/seed{i:010d}.bench",
                1_700_000_000_000_000 + i,
                1_700_000_000_000_000 + i,
            )
            for i in range(start, min(end, start + batch))
        ]
        db.executemany(
            "INSERT INTO files (project_id, id, display_name, mime_type, size_bytes, state, origin, blob_key, "
            "charged_bytes, created_at, updated_at, expires_at) "
            "VALUES ('alpha', ?, 'seeded', 'video/mp4', 1, 'ready', 'upload', ?, 1, ?, ?, 4102444800000000)",
            rows,
        )
        db.commit()
    # No ANALYZE: filegate never runs it, so a database it grew has no statistics, and the planner must be
    # measured as it runs there. (An ANALYZE here once hid a list plan that sorted every file per page.)
    # Seeding wrote a large journal; fold it into the database now, so that the first writes measured do
    # not pay for a checkpoint of a million rows.
    db.execute("PRAGMA wal_checkpoint(TRUNCATE)")


def rate(url, key, rps, seconds):
    """Open loop: request i is due at i / rps whatever came before, and its latency counts from when it was
    due (a slow answer delays nothing else, and is not hidden by the requests it would have delayed)."""
    parsed = urllib.parse.urlparse(url)
    target = parsed.path + (f"?{parsed.query}" if parsed.query else "")
    request = (f"GET {target} HTTP/1.1\r\nHost: {parsed.netloc}\r\nx-goog-api-key: {key}\r\n\r\n").encode()
    total = rps * seconds
    latencies = []

    async def connection(queue):
        reader, writer = await asyncio.open_connection(parsed.hostname, parsed.port)
        while (due := await queue.get()) is not None:
            writer.write(request)
            head = await reader.readuntil(b"\r\n\r\n")
            length = int(next(l.split(b":")[1] for l in head.split(b"\r\n") if l.lower().startswith(b"content-length")))
            await reader.readexactly(length)
            if not head.startswith(b"HTTP/1.1 200"):
                sys.exit(f"answered {head.splitlines()[0]!r}")
            latencies.append(time.perf_counter() - due)
        writer.close()

    async def main():
        queue = asyncio.Queue()
        workers = [asyncio.create_task(connection(queue)) for _ in range(32)]
        start = time.perf_counter()
        for i in range(total):
            due = start + i / rps
            await asyncio.sleep(max(0, due - time.perf_counter()))
            queue.put_nowait(due)
        for _ in workers:
            queue.put_nowait(None)
        await asyncio.gather(*workers)
        return time.perf_counter() - start

    elapsed = asyncio.run(main())
    latencies.sort()
    ms = lambda q: latencies[min(len(latencies) - 1, int(len(latencies) * q))] * 1000  # noqa: E731
    print(f"{len(latencies) / elapsed:,.0f} | {ms(0.5):.2f} ms | {ms(0.99):.2f} ms")


if __name__ == "__main__":
    if sys.argv[1] == "starts":
        starts(sys.argv[2], sys.argv[3], int(sys.argv[4]))
    elif sys.argv[1] == "rate":
        rate(sys.argv[2], sys.argv[3], int(sys.argv[4]), int(sys.argv[5]))
    elif sys.argv[1] == "seed-sqlite":
        seed_sqlite(sys.argv[2], int(sys.argv[3]), int(sys.argv[4]))
    else:
        sys.exit(__doc__)
