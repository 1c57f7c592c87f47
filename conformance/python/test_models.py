"""Model calls through filegate with the official SDKs, unchanged: google-genai (sync, async, streaming) and
openai (chat completions with a qfile- file part, streaming), each pointed at filegate only by its base URL.

filegate forwards to the fake of Google's services (tests/fakes/google.py), as Vertex AI and as the Gemini
API; the fake's "model" answers with JSON naming what it could read, with the SHA-256 of every file's bytes,
so each test proves the model got the very bytes uploaded or imported. Where filegate keeps its bytes is the
run's configuration (local disk, S3, Azure, or the fake's Cloud Storage, whose files reach Vertex by gs:// URI).
"""

import asyncio
import hashlib
import io
import json
import os
import subprocess
import tempfile
import time
from pathlib import Path

import urllib.request

import pytest
from google import genai
from google.oauth2.credentials import Credentials
from google.genai import errors
from openai import OpenAI

from conftest import ALPHA_KEY, BETA_KEY, Fake, Server

BEARER = "vertex-conformance-token"
GEMINI_KEY = "gemini-upstream-key"
INLINE_MAX = 64 * 1024
MODEL = "gemini-test"


def fake_gcs_url():
    """The fake Cloud Storage this run keeps files in, if it does (scripts/test.sh, sqlite-gcs)."""
    account = os.environ.get("GOOGLE_SERVICE_ACCOUNT")
    if account and os.environ.get("FILEGATE_BLOB_STORE", "").startswith("gs://"):
        with open(account) as f:
            return json.load(f)["gcs_base_url"]
    return None


class Front:
    def __init__(self, upstream):
        self.upstream = upstream
        self.tmp = tempfile.TemporaryDirectory()
        gcs = fake_gcs_url()
        self.fake = Fake("--bearer", BEARER, *(["--gcs-url", gcs] if gcs else []))
        env = {"FILEGATE_INLINE_MAX_BYTES": str(INLINE_MAX), "FILEGATE_IMPORT_ALLOW_CIDRS": "127.0.0.1/32",
               "FILEGATE_REGISTER_BUCKETS": "gs://caller-bucket/*"}
        # Cloud Storage (the staging bucket, registered objects): the run's fake if it keeps files there,
        # else this suite's own.
        self.gcs_url = gcs or f"{self.fake.url}/gcs"
        if not gcs:
            env["GOOGLE_SERVICE_ACCOUNT"] = self.fake.service_account(self.tmp.name)
        if upstream == "vertex":
            env.update(FILEGATE_UPSTREAM="vertex", FILEGATE_VERTEX_PROJECT="conformance",
                       FILEGATE_VERTEX_ENDPOINT=self.fake.url, FILEGATE_UPSTREAM_BEARER_TOKEN=BEARER,
                       FILEGATE_VERTEX_STAGING_BUCKET="gs://conformance-staging/copies")
        else:
            env.update(FILEGATE_UPSTREAM="gemini", FILEGATE_GEMINI_ENDPOINT=self.fake.url,
                       FILEGATE_GEMINI_API_KEY=GEMINI_KEY)
        self.server = Server(env)
        self.in_gcs = gcs is not None

    def client(self, key=ALPHA_KEY):
        return genai.Client(api_key=key, http_options={"base_url": self.server.url})

    def expected_route(self, size):
        """How a file of `size` bytes reaches the fake model: inline, by gs:// URI, or as a Files API upload."""
        if self.upstream == "vertex":
            return "gs" if self.in_gcs or size > INLINE_MAX else "inline"
        return "files" if size > INLINE_MAX else "inline"

    def stop(self):
        self.server.stop()
        self.fake.stop()
        self.tmp.cleanup()


@pytest.fixture(scope="module", params=["vertex", "gemini"])
def front(request):
    f = Front(request.param)
    yield f
    f.stop()


@pytest.fixture(scope="module")
def source():
    """nginx serving files on loopback, as an import source."""
    script = Path(__file__).resolve().parents[2] / "scripts" / "services" / "nginx.sh"
    tmp = tempfile.mkdtemp()
    os.chmod(tmp, 0o755)
    out = subprocess.run(["bash", str(script), f"{tmp}/src"], capture_output=True, text=True,
                         check=True)
    yield out.stdout.strip().splitlines()[-1], Path(tmp) / "src" / "www"
    subprocess.run(["bash", f"{tmp}/src/stop.sh"], check=False)


def saw(text):
    return json.loads(text)["saw"]


def sha(data):
    return hashlib.sha256(data).hexdigest()


def upload(client, data, mime):
    return client.files.upload(file=io.BytesIO(data), config={"mime_type": mime})


def test_generate_content_reads_uploaded_files(front):
    client = front.client()
    big, small = os.urandom(200_000), os.urandom(1000)
    big_file, small_file = upload(client, big, "video/mp4"), upload(client, small, "image/png")
    response = client.models.generate_content(model=MODEL, contents=[big_file, small_file, "Describe both"])
    seen = saw(response.text)
    assert [s.get("sha256") for s in seen[:2]] == [sha(big), sha(small)]
    assert [s["via"] for s in seen[:2]] == [front.expected_route(len(big)), front.expected_route(len(small))]
    assert [s["mime"] for s in seen[:2]] == ["video/mp4", "image/png"]
    assert seen[2] == {"text": "Describe both"}
    assert response.usage_metadata.total_token_count == 35
    for call in front.fake.control("requests"):
        assert ALPHA_KEY not in json.dumps(call), "the caller's key never goes upstream"


def test_the_async_client_and_streaming(front):
    client = front.client()
    data = os.urandom(100_000)

    async def run():
        file = await client.aio.files.upload(file=io.BytesIO(data), config={"mime_type": "audio/mpeg"})
        response = await client.aio.models.generate_content(model=MODEL, contents=[file, "Transcribe"])
        assert saw(response.text)[0]["sha256"] == sha(data)
        stream = await client.aio.models.generate_content_stream(model=MODEL, contents=[file, "Go"])
        chunks = [chunk.text async for chunk in stream]
        assert len(chunks) == 3, "three events, passed on one by one"
        assert saw("".join(chunks))[0]["sha256"] == sha(data)
        return file

    file = asyncio.run(run())
    streamed = "".join(c.text for c in client.models.generate_content_stream(model=MODEL, contents=[file, "Again"]))
    assert saw(streamed)[0]["sha256"] == sha(data)
    assert client.models.count_tokens(model=MODEL, contents=[file, "Count"]).total_tokens == 20


def test_files_of_other_projects_and_unready_files_are_refused(front):
    # Clients are kept in variables: google-genai closes its connections when a Client is collected.
    beta, alpha = front.client(BETA_KEY), front.client()
    theirs = upload(beta, b"beta's secret", "text/plain")
    with pytest.raises(errors.ClientError) as refused:
        alpha.models.generate_content(model=MODEL, contents=[theirs, "Read it"])
    assert refused.value.code == 403
    assert "You do not have permission to access the File" in refused.value.message
    with pytest.raises(errors.ClientError) as missing:
        alpha.models.generate_content(model="missing-model", contents=["hi"])
    assert missing.value.code == 404, "the upstream's own error, passed on"


def import_ready(server, url):
    """Imports `url` with the openai SDK's generic post, then long-polls until it is ready."""
    client = OpenAI(base_url=f"{server.url}/v1", api_key=ALPHA_KEY)
    task = client.post("/files", body={"source_url": url, "model": MODEL}, cast_to=object)
    for _ in range(30):
        task = client.get(f"/files/{task['id']}?wait=10", cast_to=object)
        if task["status"] in ("ready", "failed"):
            break
    # The whole task as text (its error above all): pytest shortens a dict shown as the message.
    assert task["status"] == "ready", json.dumps(task)
    return task


def test_openai_chat_completions_with_an_imported_qfile(front, source):
    url, www = source
    data = os.urandom(300_000)
    (www / "lecture.mp4").write_bytes(data)
    task = import_ready(front.server, f"{url}/files/lecture.mp4")
    assert task["id"].startswith("qfile-")

    client = OpenAI(base_url=f"{front.server.url}/v1", api_key=ALPHA_KEY)
    messages = [
        {"role": "system", "content": "Be brief."},
        {"role": "user", "content": [
            {"type": "text", "text": "What happens in this video?"},
            {"type": "file", "file": {"file_id": task["id"], "format": "video/mp4"}},
        ]},
    ]
    completion = client.chat.completions.create(model=MODEL, messages=messages, max_tokens=100)
    seen = saw(completion.choices[0].message.content)
    assert seen[1]["sha256"] == sha(data) and seen[1]["mime"] == "video/mp4"
    assert seen[1]["via"] == front.expected_route(len(data))
    assert seen[2] == {"text": "Be brief."}
    assert completion.choices[0].finish_reason == "stop"
    assert completion.usage.total_tokens == 35

    stream = client.chat.completions.create(model=MODEL, messages=messages, stream=True,
                                            stream_options={"include_usage": True})
    chunks = list(stream)
    text = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
    assert saw(text)[1]["sha256"] == sha(data)
    assert chunks[0].choices[0].delta.role == "assistant"
    assert chunks[-1].usage.total_tokens == 35

    from openai import PermissionDeniedError
    with pytest.raises(PermissionDeniedError):
        client.chat.completions.create(model=MODEL, messages=[{"role": "user", "content": [
            {"type": "file", "file": {"file_id": "qfile-doesnotexist"}}]}])


def test_objects_in_a_bucket_are_registered_and_read_by_the_model(front):
    data = os.urandom(150_000)
    put = urllib.request.Request(f"{front.gcs_url}/caller-bucket/lectures/intro.mp4", data=data, method="PUT")
    urllib.request.urlopen(put).close()
    client = front.client()
    # The SDK sends a Google token for Google's service; filegate reads the bucket with its own credentials.
    registered = client.files.register_files(auth=Credentials(token="unused"), uris=["gs://caller-bucket/lectures/intro.mp4"])
    file = registered.files[0]
    assert file.source.name == "REGISTERED" and file.state.name == "ACTIVE"
    assert file.size_bytes == len(data) and file.mime_type == "video/mp4"
    seen = saw(client.models.generate_content(model=MODEL, contents=[file, "Describe"]).text)
    assert seen[0]["sha256"] == sha(data)
    assert seen[0]["via"] == ("gs" if front.upstream == "vertex" else "files")
    if front.upstream == "vertex":
        assert seen[0]["uri"] == "gs://caller-bucket/lectures/intro.mp4", "no copy"


def cache_creations(fake):
    return [r["json"] for r in fake.control("requests")
            if r["method"] == "POST" and r["path"].endswith("/cachedContents")]


def test_caches_of_an_uploaded_video(front):
    alpha, beta = front.client(), front.client(BETA_KEY)
    video = os.urandom(150_000)
    file = upload(alpha, video, "video/mp4")
    first = alpha.caches.create(model=MODEL, config={"contents": [file], "ttl": "300s", "display_name": "talk"})
    second = alpha.caches.create(model=MODEL, config={"contents": [file], "ttl": "600s"})
    assert first.name.startswith("cachedContents/") and first.name != second.name
    assert first.display_name == "talk" and first.expire_time < second.expire_time

    # The upstream got the file's rewritten reference, the same copy for both caches.
    uris = [c["contents"][0]["parts"][0]["fileData"]["fileUri"] for c in cache_creations(front.fake)[-2:]]
    assert uris[0] == uris[1] and uris[0] != file.uri, uris
    answer = alpha.models.generate_content(model=MODEL, contents="Summarize",
                                           config={"cached_content": first.name})
    seen = saw(answer.text)
    assert seen[0]["sha256"] == sha(video) and seen[-1] == {"text": "Summarize"}

    # Another project sees none of it.
    with pytest.raises(errors.ClientError) as refused:
        beta.caches.get(name=first.name)
    assert refused.value.code == 403
    with pytest.raises(errors.ClientError) as refused:
        beta.models.generate_content(model=MODEL, contents="Hi", config={"cached_content": first.name})
    assert refused.value.code == 403 and "CachedContent not found" in refused.value.message
    assert first.name not in [c.name for c in beta.caches.list()]

    assert {first.name, second.name} <= {c.name for c in alpha.caches.list()}
    longer = alpha.caches.update(name=first.name, config={"ttl": "3600s"})
    assert longer.expire_time > first.expire_time
    assert alpha.caches.get(name=first.name).expire_time == longer.expire_time
    for cache in (first, second):
        alpha.caches.delete(name=cache.name)
    assert not {first.name, second.name} & {c.name for c in alpha.caches.list()}


@pytest.mark.parametrize("mode", ["express", "project"])
def test_vertex_mode_clients(front, mode):
    """google-genai with vertexai=True and filegate's base URL: in express mode (an API key), and with a
    project, a location and Google credentials, the filegate key in a header; the Google token stays here."""
    options = {"base_url": front.server.url}
    if mode == "express":
        vertex = genai.Client(vertexai=True, api_key=ALPHA_KEY, http_options=options)
    else:
        options["headers"] = {"x-goog-api-key": ALPHA_KEY}
        vertex = genai.Client(vertexai=True, project="callers-project", location="us-central1",
                              credentials=Credentials(token="callers-google-token"), http_options=options)
    # Vertex AI has no Files API: the file is uploaded in Gemini API mode and named by its URI.
    gemini = front.client()
    data = os.urandom(100_000)
    file = upload(gemini, data, "video/mp4")
    clip = genai.types.Part(file_data=genai.types.FileData(file_uri=file.uri, mime_type="video/mp4"),
                            video_metadata=genai.types.VideoMetadata(start_offset="2s", end_offset="8s"))

    seen = saw(vertex.models.generate_content(model=MODEL, contents=[clip, "What happens?"]).text)
    assert seen[0]["sha256"] == sha(data)
    assert {k.replace("_o", "O"): v for k, v in seen[0]["videoMetadata"].items()} == \
        {"startOffset": "2s", "endOffset": "8s"}
    streamed = "".join(c.text for c in vertex.models.generate_content_stream(model=MODEL, contents=[clip, "Go"]))
    assert saw(streamed)[0]["sha256"] == sha(data)
    assert vertex.models.count_tokens(model=MODEL, contents=[clip, "Count"]).total_tokens == 20

    cache = vertex.caches.create(model=MODEL, config={"contents": [clip], "ttl": "300s"})
    answer = vertex.models.generate_content(model=MODEL, contents="And?", config={"cached_content": cache.name})
    assert saw(answer.text)[0]["sha256"] == sha(data)
    assert vertex.caches.get(name=cache.name).expire_time == cache.expire_time
    vertex.caches.delete(name=cache.name)
    for call in front.fake.control("requests"):
        text = json.dumps(call)
        assert "callers-google-token" not in text and "callers-project" not in text and ALPHA_KEY not in text


def test_batches_over_uploaded_files(front):
    """client.batches with a JSONL file of requests naming uploaded files, as Google's batch guide writes
    it (uploaded with mime_type="jsonl"); the results come back as a filegate file."""
    alpha, beta = front.client(), front.client(BETA_KEY)
    media = os.urandom(90_000)
    file = upload(alpha, media, "video/mp4")
    lines = [{"key": "with-file", "request": {"contents": [{"role": "user", "parts": [
                 {"file_data": {"file_uri": file.uri, "mime_type": "video/mp4"}}, {"text": "Describe"}]}]}},
             {"key": "text-only", "request": {"contents": [{"role": "user", "parts": [{"text": "Hi"}]}]}}]
    jsonl = "".join(json.dumps(line) + "\n" for line in lines).encode()
    requests = alpha.files.upload(file=io.BytesIO(jsonl), config={"mime_type": "jsonl", "display_name": "reqs"})
    job = alpha.batches.create(model=MODEL, src=requests.name, config={"display_name": "nightly"})
    assert job.name.startswith("batches/") and job.display_name == "nightly"
    with pytest.raises(errors.ClientError) as refused:
        beta.batches.get(name=job.name)
    assert refused.value.code == 404
    for _ in range(100):
        job = alpha.batches.get(name=job.name)
        if job.done:
            break
        time.sleep(0.1)
    assert job.state.name == "JOB_STATE_SUCCEEDED", open(front.server.log.name).read()[-3000:]
    results = alpha.files.download(file=job.dest.file_name)
    answers = {a["key"]: a for a in map(json.loads, results.decode().splitlines())}
    seen = saw(answers["with-file"]["response"]["candidates"][0]["content"]["parts"][0]["text"])
    assert seen[0]["sha256"] == sha(media)
    assert alpha.files.get(name=job.dest.file_name).source.name == "GENERATED"
    assert job.name in [j.name for j in alpha.batches.list()]
    alpha.batches.delete(name=job.name)


def test_openai_files_create_then_chat_with_its_id(front):
    """The openai SDK's files.create → chat completion with that file_id; list, retrieve, content, delete;
    and google-genai on api_version v1 beside it on the same paths."""
    client = OpenAI(base_url=f"{front.server.url}/v1", api_key=ALPHA_KEY)
    other = OpenAI(base_url=f"{front.server.url}/v1", api_key=BETA_KEY)
    data = os.urandom(120_000)
    created = client.files.create(file=("clip.mp4", io.BytesIO(data)), purpose="user_data")
    assert created.id.startswith("file-") and created.bytes == len(data) and created.filename == "clip.mp4"
    reply = client.chat.completions.create(model=MODEL, messages=[{"role": "user", "content": [
        {"type": "text", "text": "What is it?"}, {"type": "file", "file": {"file_id": created.id}}]}])
    seen = saw(reply.choices[0].message.content)
    assert seen[1]["sha256"] == sha(data) and seen[1]["mime"] == "video/mp4", seen

    assert created.id in [f.id for f in client.files.list()]
    assert client.files.retrieve(created.id).status == "processed"
    assert client.files.content(created.id).read() == data
    assert created.id not in [f.id for f in other.files.list()]
    with pytest.raises(Exception) as refused:
        other.files.retrieve(created.id)
    assert getattr(refused.value, "status_code", None) == 404

    gemini_v1 = genai.Client(api_key=ALPHA_KEY, http_options={"base_url": front.server.url, "api_version": "v1"})
    as_gemini = gemini_v1.files.get(name=created.id.removeprefix("file-"))
    assert as_gemini.size_bytes == len(data) and as_gemini.mime_type == "video/mp4"
    assert as_gemini.name in [f.name for f in gemini_v1.files.list()]

    assert client.files.delete(created.id).deleted
    with pytest.raises(errors.ClientError):
        gemini_v1.files.get(name=created.id.removeprefix("file-"))


def test_openai_chat_tool_calls_round_trip_streaming_and_not(front):
    """Function calling through chat completions: tools out, tool_calls back (whole, or as one streamed
    delta), the tool's answer in, the model reading it with the file the conversation began with."""
    client = OpenAI(base_url=f"{front.server.url}/v1", api_key=ALPHA_KEY)
    data = os.urandom(20_000)
    doc = client.files.create(file=("notes.txt", io.BytesIO(data)), purpose="user_data")
    tools = [{"type": "function", "function": {"name": "lookup", "description": "Look a word up",
                                               "parameters": {"type": "object",
                                                              "properties": {"asked": {"type": "string"}}}}}]
    messages = [{"role": "user", "content": [{"type": "file", "file": {"file_id": doc.id}},
                                             {"type": "text", "text": "What does it say?"}]}]
    first = client.chat.completions.create(model=MODEL, messages=messages, tools=tools, tool_choice="required")
    call = first.choices[0].message.tool_calls[0]
    assert first.choices[0].finish_reason == "tool_calls" and first.choices[0].message.content is None
    assert call.function.name == "lookup" and json.loads(call.function.arguments) == {"asked": "What does it say?"}

    chunks = list(client.chat.completions.create(model=MODEL, messages=messages, tools=tools, stream=True))
    deltas = [tc for c in chunks if c.choices for tc in (c.choices[0].delta.tool_calls or [])]
    assert [d.function.name for d in deltas] == ["lookup"] and deltas[0].index == 0 and deltas[0].id
    assert chunks[-1].choices[0].finish_reason == "tool_calls"

    answered = messages + [first.choices[0].message.model_dump(exclude_none=True),
                           {"role": "tool", "tool_call_id": call.id, "content": "a greeting"}]
    final = client.chat.completions.create(model=MODEL, messages=answered, tools=tools)
    seen = saw(final.choices[0].message.content)
    assert seen[0]["sha256"] == sha(data)
    assert seen[-1] == {"functionResponse": {"name": "lookup", "response": {"content": "a greeting"}}}
    assert final.choices[0].finish_reason == "stop"

    schema = {"type": "object", "properties": {"answer": {"type": "string"}}}
    structured = client.chat.completions.create(model=MODEL, messages=[{"role": "user", "content": "Hi"}],
                                                response_format={"type": "json_schema",
                                                                 "json_schema": {"name": "a", "schema": schema}})
    sent = [r for r in front.fake.control("requests") if "/models/" in r["path"]][-1]["json"]
    assert sent["generationConfig"]["responseJsonSchema"] == schema
    assert structured.choices[0].message.content
    from openai import BadRequestError
    with pytest.raises(BadRequestError) as refused:
        client.chat.completions.create(model=MODEL, messages=[{"role": "user", "content": "Hi"}], logit_bias={"1": 5})
    assert "logit_bias" in refused.value.message


def test_openai_responses_read_files_call_tools_and_stream(front):
    client = OpenAI(base_url=f"{front.server.url}/v1", api_key=ALPHA_KEY)
    data = os.urandom(30_000)
    doc = client.files.create(file=("report.pdf", io.BytesIO(data)), purpose="user_data")
    content = [{"type": "input_file", "file_id": doc.id}, {"type": "input_text", "text": "Summarize"}]
    response = client.responses.create(model=MODEL, instructions="Be brief.",
                                       input=[{"role": "user", "content": content}], max_output_tokens=100)
    assert response.status == "completed" and response.id.startswith("resp_")
    seen = saw(response.output_text)
    assert seen[0]["sha256"] == sha(data) and seen[0]["mime"] == "application/pdf"
    assert {"text": "Be brief."} in seen
    assert response.usage.total_tokens == response.usage.input_tokens + response.usage.output_tokens

    events = list(client.responses.create(model=MODEL, input=[{"role": "user", "content": content}], stream=True))
    kinds = [e.type for e in events]
    assert kinds[:2] == ["response.created", "response.in_progress"] and kinds[-1] == "response.completed"
    streamed = "".join(e.delta for e in events if e.type == "response.output_text.delta")
    assert saw(streamed)[0]["sha256"] == sha(data)
    assert events[-1].response.output_text == streamed and events[-1].response.usage.total_tokens > 0
    assert [e.sequence_number for e in events] == list(range(len(events)))

    tools = [{"type": "function", "name": "lookup", "parameters": {"type": "object"}}]
    first = client.responses.create(model=MODEL, input="Look up filegate", tools=tools, tool_choice="required")
    call = next(item for item in first.output if item.type == "function_call")
    assert call.name == "lookup" and json.loads(call.arguments) == {"asked": "Look up filegate"}
    followed = client.responses.create(model=MODEL, tools=tools, input=[
        {"role": "user", "content": "Look up filegate"},
        {"type": "function_call", "call_id": call.call_id, "name": call.name, "arguments": call.arguments},
        {"type": "function_call_output", "call_id": call.call_id, "output": "a file server"}])
    assert saw(followed.output_text)[-1] == {"functionResponse": {"name": "lookup", "response": {"content": "a file server"}}}
    stream_calls = [e for e in client.responses.create(model=MODEL, input="Again", tools=tools, stream=True)
                    if e.type == "response.function_call_arguments.done"]
    assert json.loads(stream_calls[0].arguments) == {"asked": "Again"}

    schema = {"type": "object", "properties": {"answer": {"type": "string"}}}
    client.responses.create(model=MODEL, input="Hi",
                            text={"format": {"type": "json_schema", "name": "a", "schema": schema}})
    sent = [r for r in front.fake.control("requests") if "/models/" in r["path"]][-1]["json"]
    assert sent["generationConfig"]["responseJsonSchema"] == schema

    from openai import BadRequestError
    with pytest.raises(BadRequestError) as refused:
        client.responses.create(model=MODEL, input="Hi", previous_response_id=response.id)
    assert "previous_response_id" in refused.value.message
    other = OpenAI(base_url=f"{front.server.url}/v1", api_key=BETA_KEY)
    with pytest.raises(Exception) as foreign:
        other.responses.create(model=MODEL, input=[{"role": "user", "content": content}])
    assert getattr(foreign.value, "status_code", None) == 403


def test_openai_chat_log_probabilities(front):
    client = OpenAI(base_url=f"{front.server.url}/v1", api_key=ALPHA_KEY)
    messages = [{"role": "user", "content": "Hi"}]
    reply = client.chat.completions.create(model=MODEL, messages=messages, logprobs=True, top_logprobs=3)
    tokens = reply.choices[0].logprobs.content
    assert tokens[0].token == reply.choices[0].message.content and tokens[0].logprob == -0.25
    assert [t.token for t in tokens[0].top_logprobs][1:] == ["alt1", "alt2"]
    assert bytes(tokens[0].bytes) == tokens[0].token.encode()
    chunks = list(client.chat.completions.create(model=MODEL, messages=messages, logprobs=True, stream=True))
    streamed = [t.token for c in chunks if c.choices and c.choices[0].logprobs for t in c.choices[0].logprobs.content]
    assert "".join(streamed) == "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
    assert client.chat.completions.create(model=MODEL, messages=messages).choices[0].logprobs is None


def test_openai_uploads_in_parts_become_one_file_a_model_reads(front, tmp_path):
    """client.uploads.upload_file_chunked (the Uploads API: create, parts, complete) — the way the openai
    SDKs send large files — makes one filegate file; an Upload is its project's only, and a completion
    naming the parts out of order is refused."""
    client = OpenAI(base_url=f"{front.server.url}/v1", api_key=ALPHA_KEY)
    data = os.urandom(3 * 1024 * 1024 + 123)
    path = tmp_path / "recording.mp3"
    path.write_bytes(data)
    upload = client.uploads.upload_file_chunked(file=path, mime_type="audio/mpeg", purpose="user_data",
                                                part_size=1024 * 1024, md5=hashlib.md5(data).hexdigest())
    assert upload.status == "completed" and upload.bytes == len(data) and upload.filename == "recording.mp3"
    assert upload.file.bytes == len(data) and upload.file.id.startswith("file-")
    assert client.files.content(upload.file.id).read() == data
    reply = client.chat.completions.create(model=MODEL, messages=[{"role": "user", "content": [
        {"type": "text", "text": "Transcribe"}, {"type": "file", "file": {"file_id": upload.file.id}}]}])
    assert saw(reply.choices[0].message.content)[1]["sha256"] == sha(data)

    started = client.uploads.create(bytes=6, filename="six.txt", mime_type="text/plain", purpose="user_data")
    first = client.uploads.parts.create(started.id, data=b"abc")
    second = client.uploads.parts.create(started.id, data=b"def")
    other = OpenAI(base_url=f"{front.server.url}/v1", api_key=BETA_KEY)
    from openai import BadRequestError, NotFoundError
    with pytest.raises(NotFoundError):
        other.uploads.parts.create(started.id, data=b"x")
    with pytest.raises(BadRequestError) as disordered:
        client.uploads.complete(started.id, part_ids=[second.id, first.id])
    assert "order" in disordered.value.message
    with pytest.raises(BadRequestError) as wrong_md5:
        client.uploads.complete(started.id, part_ids=[first.id, second.id], md5="0" * 32)
    assert "md5" in wrong_md5.value.message
    assert client.uploads.cancel(
        client.uploads.create(bytes=1, filename="x", mime_type="text/plain", purpose="user_data").id
    ).status == "cancelled"


def test_openai_counts_a_responses_input_and_refuses_what_it_does_not_serve_in_its_own_format(front):
    client = OpenAI(base_url=f"{front.server.url}/v1", api_key=ALPHA_KEY)
    counted = client.responses.input_tokens.count(model=MODEL, input="Count these words", instructions="Be brief.")
    assert counted.object == "response.input_tokens" and counted.input_tokens > 0
    from openai import NotFoundError
    with pytest.raises(NotFoundError) as unserved:
        client.beta.assistants.list()
    assert "filegate serves" in unserved.value.message, unserved.value.message
    gemini = front.client()  # kept: a client dropped closes its connections
    with pytest.raises(errors.APIError) as refused:
        gemini.batches.create_embeddings(
            model="gemini-embedding-001", src={"inlined_requests": {"contents": ["one", "two"]}})
    assert refused.value.code == 501 and "Batch embeddings" in refused.value.message
