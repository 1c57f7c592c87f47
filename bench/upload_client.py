#!/usr/bin/env python3
"""Resumable upload of one file in 8 MiB chunks over one keep-alive connection, as the SDKs send it.

usage: upload_client.py BASE_URL API_KEY PATH  → prints seconds, the File's sha256Hash and its name.
Reads the file chunk by chunk: the client never holds more than one chunk.
"""

import http.client
import json
import os
import sys
import time
import urllib.parse

CHUNK = 8 * 1024 * 1024


def main():
    base, key, path = sys.argv[1:4]
    size = os.path.getsize(path)
    url = urllib.parse.urlsplit(base)
    conn = http.client.HTTPConnection(url.hostname, url.port, timeout=600)
    started = time.monotonic()
    conn.request(
        "POST",
        "/upload/v1/files",
        body=json.dumps({"file": {"display_name": os.path.basename(path)}}),
        headers={
            "x-goog-api-key": key,
            "X-Goog-Upload-Protocol": "resumable",
            "X-Goog-Upload-Command": "start",
            "X-Goog-Upload-Header-Content-Length": str(size),
            "X-Goog-Upload-Header-Content-Type": "application/octet-stream",
            "Content-Type": "application/json",
        },
    )
    resp = conn.getresponse()
    resp.read()
    upload = urllib.parse.urlsplit(resp.headers["x-goog-upload-url"])
    target = f"{upload.path}?{upload.query}"
    offset = 0
    file = None
    with open(path, "rb") as f:
        while True:
            chunk = f.read(CHUNK)
            last = offset + len(chunk) >= size
            conn.request(
                "POST",
                target,
                body=chunk,
                headers={"X-Goog-Upload-Command": "upload, finalize" if last else "upload", "X-Goog-Upload-Offset": str(offset)},
            )
            resp = conn.getresponse()
            body = resp.read()
            status = resp.headers["x-goog-upload-status"]
            if resp.status != 200 or status != ("final" if last else "active"):
                sys.exit(f"chunk at {offset}: {resp.status} {status} {body[:300]!r}")
            offset += len(chunk)
            if last:
                file = json.loads(body)["file"]
                break
    elapsed = time.monotonic() - started
    print(f"{elapsed:.3f} {file['sha256Hash']} {file['name']}")


if __name__ == "__main__":
    main()
