"""Helpers of bench/metadata.sh.

  metadata_client.py starts URL KEY N            N upload starts, one at a time: prints "p50 ms / p99 ms"
  metadata_client.py seed-sqlite DB FROM TO      inserts files seed<FROM>..seed<TO-1> into project alpha
"""

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
    db.execute("ANALYZE")
    db.commit()
    # Seeding wrote a large journal; fold it into the database now, so that the first writes measured do
    # not pay for a checkpoint of a million rows.
    db.execute("PRAGMA wal_checkpoint(TRUNCATE)")


if __name__ == "__main__":
    if sys.argv[1] == "starts":
        starts(sys.argv[2], sys.argv[3], int(sys.argv[4]))
    elif sys.argv[1] == "seed-sqlite":
        seed_sqlite(sys.argv[2], int(sys.argv[3]), int(sys.argv[4]))
    else:
        sys.exit(__doc__)
