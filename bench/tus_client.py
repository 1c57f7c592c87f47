#!/usr/bin/env python3
"""A tus 1.0 upload of one file in 8 MiB PATCHes over one keep-alive connection: the same shape as
upload_client.py sends to filegate, for the peer in bench/throughput.sh.

usage: tus_client.py BASE_URL PATH  → prints seconds.
"""

import http.client
import os
import sys
import time
import urllib.parse

CHUNK = 8 * 1024 * 1024


def main():
    base, path = sys.argv[1:3]
    size = os.path.getsize(path)
    url = urllib.parse.urlsplit(base)
    conn = http.client.HTTPConnection(url.hostname, url.port, timeout=600)
    started = time.monotonic()
    conn.request("POST", "/files", headers={"Tus-Resumable": "1.0.0", "Upload-Length": str(size)})
    resp = conn.getresponse()
    resp.read()
    if resp.status != 201:
        sys.exit(f"create: {resp.status}")
    target = urllib.parse.urlsplit(resp.headers["Location"]).path
    offset = 0
    with open(path, "rb") as f:
        while offset < size:
            chunk = f.read(CHUNK)
            conn.request("PATCH", target, body=chunk, headers={
                "Tus-Resumable": "1.0.0", "Upload-Offset": str(offset),
                "Content-Type": "application/offset+octet-stream"})
            resp = conn.getresponse()
            resp.read()
            if resp.status != 204:
                sys.exit(f"patch at {offset}: {resp.status}")
            offset += len(chunk)
    print(f"{time.monotonic() - started:.3f}")


if __name__ == "__main__":
    main()
