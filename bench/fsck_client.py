"""Helpers of bench/fsck.sh.

  fsck_client.py seed DATA_DIR N     N ready files of one byte in project alpha, in the SQLite database and as
                                      objects on the local disk (hard links to 20 one-byte files: ext4 allows
                                      65 000 links to one)
  fsck_client.py run BIN ARGS...      runs BIN ARGS, prints "seconds peak_rss_kib exit_code"
"""

import hashlib
import os
import resource
import sqlite3
import subprocess
import sys
import time


def seed(data_dir, count):
    digest = hashlib.sha256(b"x").digest()
    db = sqlite3.connect(os.path.join(data_dir, "filegate.db"), timeout=30)
    db.execute("INSERT OR IGNORE INTO projects (id, created_at) VALUES ('alpha', 0)")
    batch = 50_000
    for start in range(0, count, batch):
        rows = [(f"seed{i:010d}", f"files/alpha/seed{i:010d}.bench", digest, 1_700_000_000_000_000 + i)
                for i in range(start, min(count, start + batch))]
        db.executemany(
            "INSERT INTO files (project_id, id, display_name, mime_type, size_bytes, sha256, state, origin, "
            "blob_key, charged_bytes, created_at, updated_at, expires_at) "
            "VALUES ('alpha', ?, 'seeded', 'video/mp4', 1, ?, 'ready', 'upload', ?, 1, ?, ?, 4102444800000000)",
            [(r[0], r[2], r[1], r[3], r[3]) for r in rows],
        )
        db.commit()
    db.execute("PRAGMA wal_checkpoint(TRUNCATE)")
    base = os.path.join(data_dir, "blobs", "bench-base")
    files = os.path.join(data_dir, "blobs", "files", "alpha")
    os.makedirs(base, exist_ok=True)
    os.makedirs(files, exist_ok=True)
    for k in range(20):
        with open(os.path.join(base, f"b{k}"), "wb") as f:
            f.write(b"x")
    for i in range(count):
        os.link(os.path.join(base, f"b{i % 20}"), os.path.join(files, f"seed{i:010d}.bench"))


def run(argv):
    started = time.monotonic()
    done = subprocess.run(argv, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    seconds = time.monotonic() - started
    peak = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss
    if done.returncode not in (0, 6):
        sys.stderr.write(done.stderr.decode())
    print(f"{seconds:.2f} {peak} {done.returncode}")


if __name__ == "__main__":
    if sys.argv[1] == "seed":
        seed(sys.argv[2], int(sys.argv[3]))
    elif sys.argv[1] == "run":
        run(sys.argv[2:])
