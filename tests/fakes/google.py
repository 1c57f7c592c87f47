#!/usr/bin/env python3
"""A small fake of the Google services filegate talks to, for tests on loopback (nothing real can run here).

One process serves:

- Cloud Storage's XML API under /gcs (object PUT/GET with Range/HEAD/DELETE, multipart uploads, list-type=2),
  for object_store's GCS client pointed at it with a service-account file holding gcs_base_url and
  disable_oauth (its documented test hook);
- the model APIs: Vertex AI (POST /v1/projects/P/locations/L/publishers/google/models/M:method, Bearer) and the
  Gemini API (POST /{v1,v1beta,v1alpha}/models/M:method, x-goog-api-key): generateContent, streamGenerateContent (?alt=sse
  or a JSON array) and countTokens;
- context caches (cachedContents: create, get, PATCH ttl/expireTime, delete) in both shapes, Vertex AI's
  (/v1/projects/P/locations/L/cachedContents, the model as a full resource name) and the Gemini API's
  (/v1beta/cachedContents, models/M); a cache reads its parts when made, and a model call naming it in
  `cachedContent` sees the cache's parts first ("saw");
- batch jobs in both shapes: the Gemini API's (POST models/M:batchGenerateContent from a Files API file,
  GET batches/N, :cancel, DELETE; results as a Files API file, downloadable) and Vertex AI's
  (batchPredictionJobs reading gs:// and writing predictions.jsonl under the output prefix); a job is
  PENDING, then RUNNING, then SUCCEEDED at its third look, each line run through the "model" (one whose
  display name starts with "fake-hold" runs until cancelled);
- the Gemini API's Files API: resumable upload (/upload/v1beta/files: start with an 8 MiB granularity, upload,
  query, finalize), get with PROCESSING then ACTIVE and `sha256Hash` in Google's spelling, delete.

The fake "model" reads what it was given and says so: its answer text is JSON listing each part, with the
SHA-256 of every file's bytes however they came (inline, gs:// from the GCS side, or a Files API upload), so a
test proves which bytes the model could read. Every upstream request is recorded (GET /_fake/requests;
the caches made, GET /_fake/caches; the Files API's files with the text of small ones, GET /_fake/google-files);
POST /_fake/script queues scripted replies for the next model calls, one object each: {"status", "body",
"headers", "content_type"} replies with that error (a string body as it is: an HTML page, say); {"hang": s} waits s seconds first; {"chunk_delay": s} paces a stream's
events; {"break_after_chunks": n} drops the connection mid-stream. A stream the client abandoned is recorded
with "aborted": true.
Its wire is checked against the real clients: conformance/python/test_fake_google.py (google-genai) and
tests/integration/gcs.rs (object_store).

Standard library only. Usage: google.py [--port 0] [--api-key K] [--bearer T] [--gcs-url URL] [--parent-pid N];
prints "listening on http://127.0.0.1:PORT".
"""

import argparse
import base64
import calendar
import hashlib
import json
import os
import re
import sys
import threading
import time
import urllib.parse
import urllib.request
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

# Cloud Storage's XML API answers in the S3 namespace, as google-cloud-storage's parser expects.
S3_XMLNS = "http://s3.amazonaws.com/doc/2006-03-01/"
LOCK = threading.RLock()
OBJECTS = {}  # "bucket/key" -> Pieces
ETAGS = {}  # "bucket/key" -> its ETag, computed once when stored (hashing 2 GiB on every HEAD would be the fake's cost)
MODIFIED = {}  # "bucket/key" -> when it was stored (Unix seconds), as listings and HEADs say it
UPLOADS = {}  # multipart upload id -> {"key": "bucket/key", "parts": {n: bytes}}
FILES = {}  # Google file id -> {"bytes", "mime", "polls", "deleted", "key"}
BATCHES = {}  # full job name -> {"flavour", "name", "model", "display", "lines", "output", "state", "polls", ...}
CACHES = {}  # full cache name -> {"flavour", "name", "model", "saw", "created", "updated", "expire", "display"}
SESSIONS = {}  # resumable upload id -> {"mime", "size", "name", "key"}
REQUESTS = []
SCRIPT = []
COUNTER = [0]
ARGS = None
PROCESSING_POLLS = 1
PART_OPTIONS = [("videoMetadata", "videoMetadata"), ("video_metadata", "videoMetadata"),
                ("mediaResolution", "mediaResolution"), ("media_resolution", "mediaResolution")]


def next_id(prefix):
    with LOCK:
        COUNTER[0] += 1
        return f"{prefix}{COUNTER[0]}"


class Pieces:
    """An object's bytes as the pieces they arrived in. A multipart object is its parts, as at a real bucket,
    where completing an upload moves no bytes: joining 2 GiB in this process at completion was most of what
    the fake cost the seed's-flow bench. Read by range or hashed piece by piece, never joined unless asked."""

    def __init__(self, pieces):
        self.pieces = [piece for piece in pieces if piece]
        self.size = sum(len(piece) for piece in self.pieces)

    def __len__(self):
        return self.size

    def read(self, start=0, end=None):
        """The bytes in [start, end) as views of the pieces, in order."""
        end = self.size if end is None else end
        offset = 0
        for piece in self.pieces:
            lo, hi = max(start - offset, 0), min(end - offset, len(piece))
            if lo < hi:
                yield memoryview(piece)[lo:hi]
            offset += len(piece)

    def sha256(self):
        digest = hashlib.sha256()
        for piece in self.pieces:
            digest.update(piece)
        return digest.hexdigest()

    def bytes(self):
        return b"".join(self.pieces)


def etag(data):
    return '"' + hashlib.sha256(data).hexdigest()[:32] + '"'


def b64decode_any(text):
    """Base64 in either alphabet, padded or not, as Google accepts it (google-genai sends URL-safe base64)."""
    text = text.strip()
    return base64.b64decode(text + "=" * (-len(text) % 4), altchars=b"-_", validate=False)


def rpc_error(code, status, message):
    return {"error": {"code": code, "message": message, "status": status}}


def rfc3339(t):
    return time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(t)) + f".{int(t % 1 * 1e6):06d}Z"


def expiry(request, now):
    """A cache's expiry from its `ttl` ("300s", "1.5s") or `expireTime` (RFC 3339); an hour by default."""
    if request.get("ttl"):
        return now + float(request["ttl"].rstrip("s"))
    if request.get("expireTime"):
        text = request["expireTime"].rstrip("Z").split(".")[0]
        return calendar.timegm(time.strptime(text, "%Y-%m-%dT%H:%M:%S"))
    return now + 3600


def small_text(data):
    """A small file's text (a batch's requests, say), for tests to read what was uploaded; else None."""
    if len(data) > 65536:
        return None
    try:
        return bytes(data).decode()
    except (UnicodeDecodeError, TypeError):
        return None


def live_cache(flavour, name):
    with LOCK:
        cache = CACHES.get(name)
    if cache is None or cache["flavour"] != flavour or cache["expire"] <= time.time():
        return None
    return cache


def cache_view(cache, parts):
    view = {"name": cache["name"], "model": cache["model"], "createTime": rfc3339(cache["created"]),
            "updateTime": rfc3339(cache["updated"]), "expireTime": rfc3339(cache["expire"]),
            "usageMetadata": {"totalTokenCount": 10 * parts}}
    if cache["display"]:
        view["displayName"] = cache["display"]
    return view


class Refusal(Exception):
    """An upstream error reply: status code, canonical status, message."""

    def __init__(self, code, status, message):
        super().__init__(message)
        self.code, self.status, self.message = code, status, message

    def body(self):
        return rpc_error(self.code, self.status, self.message)


def model_response(model, text, prompt_tokens, last=True, logprobs=None):
    candidate = {"content": {"role": "model", "parts": [{"text": text}]}, "index": 0}
    if logprobs is not None:
        # One "token" per piece of text, its alternatives invented, all with fixed log probabilities.
        candidate["logprobsResult"] = {
            "chosenCandidates": [{"token": text, "logProbability": -0.25}],
            "topCandidates": [{"candidates": [{"token": text, "logProbability": -0.25}]
                               + [{"token": f"alt{i}", "logProbability": -1.0 - i} for i in range(1, logprobs)]}]}
    out = {"candidates": [candidate], "modelVersion": model}
    if last:
        candidate["finishReason"] = "STOP"
        out["usageMetadata"] = {"promptTokenCount": prompt_tokens, "candidatesTokenCount": 5,
                                "totalTokenCount": prompt_tokens + 5}
    return out


def function_call(request):
    """The call the fake "model" makes: with functions declared and calling allowed (toolConfig mode not
    NONE), it calls the first allowed one with {"asked": the last text} — unless the last turn answers a call,
    which it then reads like any part."""
    declared = [d for t in request.get("tools", []) for d in t.get("functionDeclarations", [])]
    config = request.get("toolConfig", {}).get("functionCallingConfig", {})
    contents = request.get("contents", [])
    answered = any("functionResponse" in p for p in (contents[-1].get("parts", []) if contents else []))
    if not declared or config.get("mode") == "NONE" or answered:
        return None
    name = (config.get("allowedFunctionNames") or [declared[0]["name"]])[0]
    texts = [p["text"] for c in contents for p in c.get("parts", []) if "text" in p]
    return {"name": name, "args": {"asked": texts[-1] if texts else ""}}


class Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    # Headers and body leave in separate writes; without this, Nagle and the client's delayed ACK add
    # 40 ms to every reply and hide what the server under test costs.
    disable_nagle_algorithm = True

    def log_message(self, *args):
        pass

    # --- plumbing -----------------------------------------------------------------------------------
    def body(self):
        if self.headers.get("transfer-encoding", "").lower() == "chunked":
            chunks = []
            while True:
                size = int(self.rfile.readline().strip().split(b";")[0], 16)
                if size == 0:
                    self.rfile.readline()
                    return b"".join(chunks)
                chunks.append(self.rfile.read(size))
                self.rfile.readline()
        return self.rfile.read(int(self.headers.get("content-length") or 0))

    def reply(self, status, body=b"", headers=None, content_type="application/json"):
        if isinstance(body, (dict, list)):
            body = json.dumps(body).encode()
        pieces = list(body.read()) if isinstance(body, Pieces) else [body]
        self.send_response(status)
        for name, value in (headers or {}).items():
            self.send_header(name, value)
        if body or content_type != "application/json":
            self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(sum(len(piece) for piece in pieces)))
        self.end_headers()
        if self.command != "HEAD":
            for piece in pieces:
                self.wfile.write(piece)

    def chunk(self, data):
        self.wfile.write(b"%x\r\n%s\r\n" % (len(data), data))
        self.wfile.flush()

    def route(self):
        url = urllib.parse.urlsplit(self.path)
        query = dict(urllib.parse.parse_qsl(url.query, keep_blank_values=True))
        path = urllib.parse.unquote(url.path)
        data = self.body() if self.command in ("POST", "PUT", "PATCH") else b""
        if path.startswith("/_fake/"):
            return self.control(path, data)
        if path.startswith("/gcs/"):
            return self.gcs(path[len("/gcs/"):], query, data)
        record = self.record(path, query, data)
        model = re.fullmatch(r"/v1/projects/[^/]+/locations/[^/]+/publishers/google/models/([^/:]+):(\w+)", path)
        if model:
            return self.model_call("vertex", model.group(1), model.group(2), query, data, record)
        jobs = re.fullmatch(r"/v1/(projects/[^/]+/locations/[^/]+/batchPredictionJobs)(?:/([0-9]+)(:cancel)?)?", path)
        if jobs:
            return self.batches("vertex", jobs.group(1), jobs.group(2), jobs.group(3), None, data)
        model = re.fullmatch(r"/v1(?:beta|alpha)?/models/([^/:]+):batchGenerateContent", path)
        if model:
            return self.batches("gemini", "batches", None, None, model.group(1), data)
        jobs = re.fullmatch(r"/v1(?:beta|alpha)?/(batches)/([0-9a-z]+)(:cancel)?", path)
        if jobs:
            return self.batches("gemini", jobs.group(1), jobs.group(2), jobs.group(3), None, data)
        model = re.fullmatch(r"/v1(?:beta|alpha)?/models/([^/:]+):(\w+)", path)
        if model:
            return self.model_call("gemini", model.group(1), model.group(2), query, data, record)
        found = re.fullmatch(r"/v1(?:beta|alpha)?/files/([a-z0-9]+):download", path)
        if found:
            return self.files_download(found.group(1))
        cache = re.fullmatch(r"/v1/(projects/[^/]+/locations/[^/]+/cachedContents)(?:/([^/]+))?", path)
        if cache:
            return self.caches("vertex", cache.group(1), cache.group(2), query, data)
        cache = re.fullmatch(r"/v1(?:beta|alpha)?/(cachedContents)(?:/([^/]+))?", path)
        if cache:
            return self.caches("gemini", cache.group(1), cache.group(2), query, data)
        if re.fullmatch(r"/upload/v1(?:beta|alpha)?/files", path):
            return self.files_upload(query, data)
        found = re.fullmatch(r"/v1(?:beta|alpha)?/files/([a-z0-9]+)", path)
        if found:
            return self.files_item(found.group(1))
        self.reply(404, rpc_error(404, "NOT_FOUND", f"fake: no route {self.command} {path}"))

    def handle_one_request(self):
        try:
            super().handle_one_request()
        except (BrokenPipeError, ConnectionResetError):
            # The client gave up (filegate's idle timeout, a cancelled stream): nothing to answer.
            self.close_connection = True

    do_GET = do_POST = do_PUT = do_DELETE = do_HEAD = do_PATCH = route

    def record(self, path, query, data):
        try:
            parsed = json.loads(data) if data else None
        except ValueError:
            parsed = None
        entry = {
            "method": self.command,
            "path": path,
            "query": query,
            "headers": {k.lower(): v for k, v in self.headers.items()},
            "json": parsed,
            "size": len(data),
            "sha256": hashlib.sha256(data).hexdigest(),
            "completed": None,
        }
        with LOCK:
            REQUESTS.append(entry)
        return entry

    def control(self, path, data):
        with LOCK:
            if path == "/_fake/requests":
                return self.reply(200, REQUESTS)
            if path == "/_fake/reset":
                REQUESTS.clear()
                SCRIPT.clear()
                return self.reply(200, {})
            if path == "/_fake/script":
                SCRIPT.extend(json.loads(data))
                return self.reply(200, {})
            if path == "/_fake/google-files":
                listed = {
                    name: {"sha256": hashlib.sha256(f["bytes"]).hexdigest(), "size": len(f["bytes"]),
                           "mime": f["mime"], "deleted": f["deleted"], "text": small_text(f["bytes"])}
                    for name, f in FILES.items()
                }
                return self.reply(200, listed)
            if path == "/_fake/caches":
                return self.reply(200, {name: c["flavour"] for name, c in CACHES.items()})
            if path == "/_fake/gcs":
                return self.reply(200, {"objects": {k: len(v) for k, v in OBJECTS.items()},
                                        "uploads": [u["key"] for u in UPLOADS.values()]})
        self.reply(404, {})

    # --- Cloud Storage (XML API) --------------------------------------------------------------------
    def gcs(self, rest, query, data):
        bucket, _, key = rest.partition("/")
        if not key:
            return self.gcs_list(bucket, query)
        full = f"{bucket}/{key}"
        xml = "application/xml"
        missing = b"<Error><Code>NoSuchKey</Code><Message>No such object.</Message></Error>"
        with LOCK:
            if self.command == "POST" and "uploads" in query:
                upload = next_id("upload-")
                UPLOADS[upload] = {"key": full, "parts": {}}
                body = (f"<InitiateMultipartUploadResult xmlns=\"{S3_XMLNS}\"><Bucket>{bucket}</Bucket><Key>{key}</Key>"
                        f"<UploadId>{upload}</UploadId></InitiateMultipartUploadResult>")
                return self.reply(200, body.encode(), content_type=xml)
            upload = query.get("uploadId")
            if upload is not None:
                if upload not in UPLOADS:
                    return self.reply(404, missing, content_type=xml)
                if self.command == "PUT":
                    tag = etag(data)
                    UPLOADS[upload]["parts"][int(query.get("partNumber", 0))] = (data, tag)
                    return self.reply(200, headers={"ETag": tag})
                if self.command == "DELETE":
                    del UPLOADS[upload]
                    return self.reply(204)
                if self.command == "POST":
                    text = data.decode()
                    pieces, tags = [], []
                    for entry in text.split("<Part>")[1:]:
                        number = re.search(r"<PartNumber>(\d+)</PartNumber>", entry).group(1)
                        tag = re.search(r"<ETag>([^<]*)</ETag>", entry).group(1)
                        part = UPLOADS[upload]["parts"].get(int(number))
                        if part is None or part[1].strip('"') != tag.replace("&quot;", "").strip('"'):
                            return self.reply(400, b"<Error><Code>InvalidPart</Code></Error>", content_type=xml)
                        pieces.append(part[0])
                        tags.append(part[1])
                    OBJECTS[full] = Pieces(pieces)
                    MODIFIED[full] = time.time()
                    # As a multipart object's ETag is at Google: derived from its parts', not its bytes.
                    ETAGS[full] = etag("".join(tags).encode())[:-1] + f'-{len(tags)}"'
                    del UPLOADS[upload]
                    body = (f"<CompleteMultipartUploadResult xmlns=\"{S3_XMLNS}\"><Bucket>{bucket}</Bucket><Key>{key}</Key>"
                            f"<ETag>{ETAGS[full]}</ETag></CompleteMultipartUploadResult>")
                    return self.reply(200, body.encode(), content_type=xml)
            if self.command == "PUT":
                OBJECTS[full] = Pieces([data])
                MODIFIED[full] = time.time()
                ETAGS[full] = etag(data)
                return self.reply(200, headers={"ETag": ETAGS[full]})
            if self.command == "DELETE":
                ETAGS.pop(full, None)
                MODIFIED.pop(full, None)
                if OBJECTS.pop(full, None) is None:
                    return self.reply(404, missing, content_type=xml)
                return self.reply(204)
            stored, stored_tag = OBJECTS.get(full), ETAGS.get(full)
        if stored is None:
            return self.reply(404, missing, content_type=xml)
        modified = time.strftime("%a, %d %b %Y %H:%M:%S GMT", time.gmtime(MODIFIED.get(full, 0)))
        headers = {"ETag": stored_tag, "Last-Modified": modified}
        wanted = re.fullmatch(r"bytes=(\d+)-(\d*)", self.headers.get("range", ""))
        if wanted:
            start = int(wanted.group(1))
            end = min(int(wanted.group(2)) + 1, len(stored)) if wanted.group(2) else len(stored)
            if start >= end:
                return self.reply(416, content_type=xml)
            headers["Content-Range"] = f"bytes {start}-{end - 1}/{len(stored)}"
            return self.reply(206, Pieces(stored.read(start, end)), headers, "application/octet-stream")
        self.reply(200, stored, headers, "application/octet-stream")

    def gcs_list(self, bucket, query):
        prefix = query.get("prefix", "")
        contents = ""
        with LOCK:
            for full in sorted(OBJECTS):
                key = full[len(bucket) + 1:] if full.startswith(bucket + "/") else None
                if key is not None and key.startswith(prefix):
                    modified = time.strftime("%Y-%m-%dT%H:%M:%S.000Z", time.gmtime(MODIFIED.get(full, 0)))
                    contents += (f"<Contents><Key>{key}</Key><Size>{len(OBJECTS[full])}</Size>"
                                 f"<LastModified>{modified}</LastModified>"
                                 f"<ETag>{ETAGS[full]}</ETag></Contents>")
        body = (f"<ListBucketResult xmlns=\"{S3_XMLNS}\"><Name>{bucket}</Name><Prefix>{prefix}</Prefix><KeyCount>0</KeyCount>"
                f"<IsTruncated>false</IsTruncated>{contents}</ListBucketResult>")
        self.reply(200, body.encode(), content_type="application/xml")

    # --- the model APIs -----------------------------------------------------------------------------
    def authorized(self, flavour):
        if flavour == "vertex":
            given = self.headers.get("authorization", "")
            if not given.startswith("Bearer ") or (ARGS.bearer and given != f"Bearer {ARGS.bearer}"
                                                   and given.count(".") != 2):
                self.reply(401, rpc_error(401, "UNAUTHENTICATED", "Request had invalid authentication credentials."))
                return False
            return True
        if self.headers.get("x-goog-api-key") != ARGS.api_key:
            self.reply(400, rpc_error(400, "INVALID_ARGUMENT", "API key not valid. Please pass a valid API key."))
            return False
        return True

    def resolve(self, flavour, uri):
        """The bytes a model would read at `uri` (as Pieces), or None."""
        if uri.startswith("gs://"):
            if flavour != "vertex":
                return None
            bucket_key = uri[len("gs://"):]
            if ARGS.gcs_url:
                try:
                    with urllib.request.urlopen(f"{ARGS.gcs_url}/{bucket_key}") as response:
                        return Pieces([response.read()])
                except OSError:
                    return None
            with LOCK:
                return OBJECTS.get(bucket_key)
        found = re.search(r"/v1(?:beta|alpha)?/files/([a-z0-9]+)$", uri)
        if found and flavour == "gemini":
            with LOCK:
                f = FILES.get(found.group(1))
                if f and not f["deleted"] and f["polls"] > PROCESSING_POLLS:
                    return Pieces([f["bytes"]])
        return None

    def model_call(self, flavour, model, method, query, data, record):
        if not self.authorized(flavour):
            return
        if model == "missing-model":
            return self.reply(404, rpc_error(404, "NOT_FOUND", f"models/{model} is not found."))
        with LOCK:
            scripted = SCRIPT.pop(0) if SCRIPT else {}
        if scripted.get("hang"):
            time.sleep(scripted["hang"])
        if scripted.get("status"):
            body = scripted.get("body", {})
            return self.reply(scripted["status"], body.encode() if isinstance(body, str) else body,
                              scripted.get("headers"), scripted.get("content_type", "application/json"))
        request = json.loads(data)
        if method == "countTokens" and "generateContentRequest" in request:
            # The Gemini API counts a whole request given this way (its model, cache, instruction, tools).
            request = request["generateContentRequest"]
        parts = [p for c in request.get("contents", []) for p in c.get("parts", [])]
        parts += request.get("systemInstruction", {}).get("parts", [])
        try:
            seen = self.read_parts(flavour, parts)
        except Refusal as refusal:
            return self.reply(refusal.code, refusal.body())
        cached = request.get("cachedContent")
        if cached:
            cache = live_cache(flavour, cached)
            if cache is None:
                return self.cache_missing(flavour)
            seen = cache["saw"] + seen
        prompt_tokens = 10 * len(parts)
        if method == "countTokens":
            return self.reply(200, {"totalTokens": prompt_tokens})
        answer = json.dumps({"model": model, "saw": seen})
        call = function_call(request)
        if call is not None:
            # The "model" calls a declared function, whole, in one event (as Gemini streams calls).
            out = model_response(model, "", prompt_tokens, True)
            out["candidates"][0]["content"]["parts"] = [{"functionCall": call}]
            if method == "generateContent":
                return self.reply(200, out)
            if query.get("alt") == "sse":
                return self.reply(200, f"data: {json.dumps(out)}\r\n\r\n".encode(), content_type="text/event-stream")
            return self.reply(200, [out])

        config = request.get("generationConfig", {})
        logprobs = config.get("logprobs", 1) if config.get("responseLogprobs") else None

        def response(text, last):
            return model_response(model, text, prompt_tokens, last, logprobs)

        if method == "generateContent":
            return self.reply(200, response(answer, True))
        if method != "streamGenerateContent":
            return self.reply(404, rpc_error(404, "NOT_FOUND", f"fake: no method {method}"))
        third = max(1, len(answer) // 3)
        pieces = [answer[:third], answer[third:2 * third], answer[2 * third:]]
        sse = query.get("alt") == "sse"
        self.send_response(200)
        self.send_header("Content-Type", "text/event-stream" if sse else "application/json")
        self.send_header("Transfer-Encoding", "chunked")
        self.end_headers()
        record["completed"] = False
        try:
            if not sse:
                self.chunk(b"[")
            for i, piece in enumerate(pieces):
                if i and scripted.get("chunk_delay"):
                    time.sleep(scripted["chunk_delay"])
                if i and scripted.get("break_after_chunks") == i:
                    self.wfile.flush()
                    self.close_connection = True
                    self.connection.shutdown(2)
                    return
                event = json.dumps(response(piece, i == len(pieces) - 1))
                if sse:
                    self.chunk(f"data: {event}\r\n\r\n".encode())
                else:
                    self.chunk(((",\r\n" if i else "") + event).encode())
            if not sse:
                self.chunk(b"]")
            self.chunk(b"")
            record["completed"] = True
        except (BrokenPipeError, ConnectionResetError):
            record["aborted"] = True
            self.close_connection = True

    def read_parts(self, flavour, parts, for_cache=False):
        """What a model reads in `parts` (a list like the answer's "saw"); raises Refusal with the upstream's
        error for a file it cannot read."""
        seen = []
        for part in parts:
            if "text" in part:
                seen.append({"text": part["text"]})
                continue
            if "functionCall" in part or "functionResponse" in part:
                seen.append({k: part[k] for k in ("functionCall", "functionResponse") if k in part})
                continue
            # Per-part options the model applies to a file (a clip of a video, a resolution) are echoed.
            options = {camel: part[key] for key, camel in PART_OPTIONS if key in part}
            inline = part.get("inlineData") or part.get("inline_data")
            if inline:
                mime = inline.get("mimeType") or inline.get("mime_type")
                if for_cache and flavour == "gemini" and (mime or "").startswith("video/"):
                    # As the Gemini API: a cached video must be a Files API reference.
                    raise Refusal(400, "INVALID_ARGUMENT", "fake: a video in a cache must be a file")
                raw = b64decode_any(inline["data"])
                seen.append({"via": "inline", "mime": mime,
                             "sha256": hashlib.sha256(raw).hexdigest(), "size": len(raw), **options})
                continue
            file_data = part.get("fileData") or part.get("file_data") or {}
            uri = file_data.get("fileUri") or file_data.get("file_uri", "")
            raw = self.resolve(flavour, uri)
            if raw is None:
                if flavour == "gemini":
                    raise Refusal(403, "PERMISSION_DENIED",
                                  f"You do not have permission to access the File {uri} or it may not exist.")
                raise Refusal(400, "INVALID_ARGUMENT", f"Cannot fetch content from the provided URL {uri}.")
            seen.append({"via": "gs" if uri.startswith("gs://") else "files", "uri": uri,
                         "mime": file_data.get("mimeType") or file_data.get("mime_type"),
                         "sha256": raw.sha256(), "size": len(raw), **options})
        return seen

    # --- context caches (cachedContents), in both upstreams' shapes ---------------------------------
    def cache_missing(self, flavour):
        if flavour == "gemini":
            return self.reply(403, rpc_error(403, "PERMISSION_DENIED", "CachedContent not found (or permission denied)"))
        return self.reply(404, rpc_error(404, "NOT_FOUND", "The cached content was not found."))

    def caches(self, flavour, collection, cache_id, query, data):
        """POST {collection} creates; GET, PATCH (?updateMask=ttl|expireTime), DELETE {collection}/{id}. The
        cache reads its parts when it is made, as Google's do: a file deleted afterwards does not matter."""
        if not self.authorized(flavour):
            return
        if cache_id is None and self.command == "POST":
            request = json.loads(data)
            model = request.get("model", "")
            shape = (r"models/[^/]+" if flavour == "gemini"
                     else r"projects/[^/]+/locations/[^/]+/publishers/google/models/[^/]+")
            if not re.fullmatch(shape, model):
                return self.reply(400, rpc_error(400, "INVALID_ARGUMENT", f"fake: model {model!r} is not a full name"))
            parts = [p for c in request.get("contents", []) for p in c.get("parts", [])]
            parts += request.get("systemInstruction", {}).get("parts", [])
            try:
                seen = self.read_parts(flavour, parts, for_cache=True)
            except Refusal as refusal:
                return self.reply(refusal.code, refusal.body())
            name = f"{collection}/{next_id('c')}"
            now = time.time()
            cache = {"flavour": flavour, "name": name, "model": model, "saw": seen, "created": now,
                     "updated": now, "expire": expiry(request, now), "display": request.get("displayName")}
            with LOCK:
                CACHES[name] = cache
            return self.reply(200, cache_view(cache, len(parts)))
        name = f"{collection}/{cache_id}"
        cache = live_cache(flavour, name)
        if cache is None:
            return self.cache_missing(flavour)
        if self.command == "GET":
            return self.reply(200, cache_view(cache, len(cache["saw"])))
        if self.command == "DELETE":
            with LOCK:
                CACHES.pop(name, None)
            return self.reply(200, {})
        if self.command == "PATCH":
            request = json.loads(data or b"{}")
            # Without an updateMask (the SDKs send none) the fields present are the mask.
            mask = query.get("updateMask") or ",".join(request)
            if mask not in ("ttl", "expireTime", "expire_time"):
                return self.reply(400, rpc_error(400, "INVALID_ARGUMENT", "fake: only ttl or expireTime may change"))
            cache["expire"] = expiry(request, time.time())
            cache["updated"] = time.time()
            return self.reply(200, cache_view(cache, len(cache["saw"])))
        self.reply(405, rpc_error(405, "UNIMPLEMENTED", "fake: no such method on caches"))

    # --- batch jobs: the Gemini API's batches and Vertex AI's batchPredictionJobs ------------------------
    def batches(self, flavour, collection, job_id, cancel, model, data):
        """Create (Gemini: POST models/M:batchGenerateContent with inputConfig.fileName; Vertex: POST
        batchPredictionJobs with gcsSource/gcsDestination), GET (PENDING, then RUNNING, then SUCCEEDED with
        the results written: a Files API file, or predictions.jsonl under the output prefix), :cancel, DELETE."""
        if not self.authorized(flavour):
            return
        if job_id is None:
            request = json.loads(data)
            if flavour == "gemini":
                batch = request.get("batch", {})
                name = batch.get("inputConfig", {}).get("fileName", "")
                with LOCK:
                    f = FILES.get(name.removeprefix("files/"))
                if f is None or f["deleted"]:
                    return self.reply(400, rpc_error(400, "INVALID_ARGUMENT", f"fake: no input file {name!r}"))
                lines, display, output = f["bytes"], batch.get("displayName"), None
            else:
                uri = request.get("inputConfig", {}).get("gcsSource", {}).get("uris", [""])[0]
                lines = self.resolve("vertex", uri)
                lines = None if lines is None else lines.bytes()
                if lines is None or not request.get("model", "").startswith("publishers/google/models/"):
                    return self.reply(400, rpc_error(400, "INVALID_ARGUMENT", f"fake: cannot read {uri!r}"))
                model = request["model"].rsplit("/", 1)[-1]
                display = request.get("displayName")
                output = request.get("outputConfig", {}).get("gcsDestination", {}).get("outputUriPrefix")
            job = {"flavour": flavour, "name": f"{collection}/{next_id('')}", "model": model, "display": display,
                   "lines": lines, "output": output, "state": "PENDING", "polls": 0, "created": time.time(),
                   "request": request}
            with LOCK:
                BATCHES[job["name"]] = job
            return self.reply(200, self.job_view(job))
        name = f"{collection}/{job_id}"
        with LOCK:
            job = BATCHES.get(name)
        if job is None or job["flavour"] != flavour:
            return self.reply(404, rpc_error(404, "NOT_FOUND", f"fake: no batch {name}"))
        if cancel:
            if job["state"] in ("PENDING", "RUNNING"):
                job["state"] = "CANCELLED"
            return self.reply(200, {})
        if self.command == "DELETE":
            with LOCK:
                BATCHES.pop(name, None)
            return self.reply(200, {})
        job["polls"] += 1
        if job["state"] == "PENDING":
            job["state"] = "RUNNING"
        elif job["state"] == "RUNNING" and not (job["display"] or "").startswith("fake-hold"):
            # A job whose display name starts with "fake-hold" runs until cancelled (a long-running job).
            self.finish_job(job)
        return self.reply(200, self.job_view(job))

    def finish_job(self, job):
        """Runs every line through the "model" and writes the results where the upstream would."""
        out = []
        for line in job["lines"].decode().splitlines():
            if not line.strip():
                continue
            item = json.loads(line)
            request = item.get("request", {})
            parts = [p for c in request.get("contents", []) for p in c.get("parts", [])]
            try:
                seen = self.read_parts(job["flavour"], parts)
                response = model_response(job["model"], json.dumps({"model": job["model"], "saw": seen}),
                                          10 * len(parts))
                result = {"response": response}
            except Refusal as refusal:
                result = {"error" if job["flavour"] == "gemini" else "status": refusal.body()["error"]}
            if job["flavour"] == "gemini":
                out.append({"key": item.get("key"), **result})
            else:
                out.append({**item, **result})
        results = "".join(json.dumps(line) + "\n" for line in out).encode()
        if job["flavour"] == "gemini":
            file_id = next_id("results")
            with LOCK:
                FILES[file_id] = {"bytes": results, "mime": "application/jsonl", "polls": PROCESSING_POLLS + 1,
                                  "deleted": False}
            job["results"] = f"files/{file_id}"
        else:
            directory = f"{job['output'].rstrip('/')}/prediction-model-{next_id('')}"
            bucket_key = f"{directory.removeprefix('gs://')}/predictions.jsonl"
            if ARGS.gcs_url:
                put = urllib.request.Request(f"{ARGS.gcs_url}/{bucket_key}", data=results, method="PUT")
                urllib.request.urlopen(put).read()
            else:
                with LOCK:
                    OBJECTS[bucket_key] = Pieces([results])
                    ETAGS[bucket_key] = etag(results)
                    MODIFIED[bucket_key] = time.time()
            job["results"] = directory
        job["state"] = "SUCCEEDED"
        job["ended"] = time.time()

    def job_view(self, job):
        if job["flavour"] == "vertex":
            view = {"name": job["name"], "displayName": job["display"], "state": f"JOB_STATE_{job['state']}",
                    "model": f"publishers/google/models/{job['model']}", "createTime": rfc3339(job["created"]),
                    "inputConfig": job["request"].get("inputConfig"), "outputConfig": job["request"].get("outputConfig")}
            if job["state"] == "SUCCEEDED":
                view["outputInfo"] = {"gcsOutputDirectory": job["results"]}
                view["endTime"] = rfc3339(job["ended"])
            return view
        metadata = {"@type": "type.googleapis.com/google.ai.generativelanguage.v1main.GenerateContentBatch",
                    "name": job["name"], "model": f"models/{job['model']}", "displayName": job["display"],
                    "state": f"BATCH_STATE_{job['state']}", "createTime": rfc3339(job["created"])}
        if job["state"] == "SUCCEEDED":
            metadata["output"] = {"responsesFile": job["results"]}
            metadata["endTime"] = rfc3339(job["ended"])
        return {"name": job["name"], "metadata": metadata, "done": job["state"] == "SUCCEEDED"}

    # --- the Gemini API's Files API ---------------------------------------------------------------
    def google_file(self, name):
        f = FILES[name]
        base = f"http://{self.headers.get('host')}"
        return {"name": f"files/{name}", "uri": f"{base}/v1beta/files/{name}", "mimeType": f["mime"],
                "sizeBytes": str(len(f["bytes"])), "state": "ACTIVE" if f["polls"] > PROCESSING_POLLS else "PROCESSING",
                # Google's spelling: base64 of the hex digits (filegate's is base64 of the 32 bytes).
                "sha256Hash": base64.b64encode(hashlib.sha256(f["bytes"]).hexdigest().encode()).decode(),
                "expirationTime": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(time.time() + 48 * 3600))}

    def files_upload(self, query, data):
        command = self.headers.get("x-goog-upload-command", "")
        if "upload_id" not in query:
            # Only the start needs the key: the upload URL is the capability (the Python SDK sends none).
            if not self.authorized("gemini"):
                return
            if command != "start" or self.headers.get("x-goog-upload-protocol") != "resumable":
                return self.reply(400, rpc_error(400, "INVALID_ARGUMENT", "fake: resumable start expected"))
            session = next_id("s")
            SESSIONS[session] = {"mime": self.headers.get("x-goog-upload-header-content-type", ""),
                                 "size": int(self.headers.get("x-goog-upload-header-content-length", "-1")),
                                 "bytes": b""}
            url = f"http://{self.headers.get('host')}/upload/v1beta/files?upload_id={session}"
            return self.reply(200, b"", {"x-goog-upload-url": url, "x-goog-upload-status": "active",
                                         "x-goog-upload-chunk-granularity": str(8 * 1024 * 1024)})
        session = SESSIONS.get(query["upload_id"])
        if session is None:
            return self.reply(404, rpc_error(404, "NOT_FOUND", "fake: no such upload"))
        if command == "query":
            return self.reply(200, b"", {"x-goog-upload-status": "active",
                                         "x-goog-upload-size-received": str(len(session["bytes"]))})
        if int(self.headers.get("x-goog-upload-offset", "-1")) != len(session["bytes"]):
            return self.reply(400, rpc_error(400, "INVALID_ARGUMENT", "fake: wrong offset"), {"x-goog-upload-status": "final"})
        session["bytes"] += data
        if "finalize" not in command:
            return self.reply(200, b"", {"x-goog-upload-status": "active"})
        if len(session["bytes"]) != session["size"]:
            return self.reply(400, rpc_error(400, "INVALID_ARGUMENT", "fake: size mismatch"), {"x-goog-upload-status": "final"})
        name = next_id("g")
        with LOCK:
            FILES[name] = {"bytes": session["bytes"], "mime": session["mime"], "polls": 0, "deleted": False}
        self.reply(200, {"file": self.google_file(name)}, {"x-goog-upload-status": "final"})

    def files_item(self, name):
        if not self.authorized("gemini"):
            return
        with LOCK:
            f = FILES.get(name)
            if f is None or f["deleted"]:
                return self.reply(403, rpc_error(403, "PERMISSION_DENIED", f"You do not have permission to access the File {name} or it may not exist."))
            if self.command == "DELETE":
                f["deleted"] = True
                return self.reply(200, {})
            f["polls"] += 1
            view = self.google_file(name)
        self.reply(200, view)

    def files_download(self, name):
        """GET /v1beta/files/N:download?alt=media (as google-genai asks): a file's bytes (a batch's results)."""
        if not self.authorized("gemini"):
            return
        with LOCK:
            f = FILES.get(name)
        if f is None or f["deleted"]:
            return self.reply(404, rpc_error(404, "NOT_FOUND", f"fake: no file {name}"))
        self.reply(200, f["bytes"], content_type=f["mime"])


def watch_parent(pid):
    while True:
        time.sleep(1)
        try:
            os.kill(pid, 0)
        except OSError:
            os._exit(0)


def main():
    global ARGS
    parser = argparse.ArgumentParser()
    parser.add_argument("--port", type=int, default=0)
    parser.add_argument("--api-key", default="gemini-upstream-key")
    parser.add_argument("--bearer", default="")
    parser.add_argument("--gcs-url", default="")
    parser.add_argument("--parent-pid", type=int, default=0)
    ARGS = parser.parse_args()
    if ARGS.parent_pid:
        threading.Thread(target=watch_parent, args=(ARGS.parent_pid,), daemon=True).start()
    server = ThreadingHTTPServer(("127.0.0.1", ARGS.port), Handler)
    server.daemon_threads = True
    print(f"listening on http://127.0.0.1:{server.server_address[1]}", flush=True)
    server.serve_forever()


if __name__ == "__main__":
    sys.exit(main())
