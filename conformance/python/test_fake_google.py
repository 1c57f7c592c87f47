"""The fake of Google's services (tests/fakes/google.py) checked against the official SDK: google-genai,
pointed straight at the fake as at the Gemini API, uploads with the resumable protocol, waits for ACTIVE,
and calls the model with the file, streaming and not. If the fake drifted from Google's wire, the SDK
would fail here, not only filegate's tests of the front door."""

import hashlib
import io
import json
import os
import time
import urllib.request

import pytest
from google import genai

from conftest import Fake

KEY = "gemini-upstream-key"


@pytest.fixture(scope="module")
def fake():
    f = Fake("--api-key", KEY)
    yield f
    f.stop()


def active_upload(client, data, mime):
    """Uploads with the resumable protocol, then waits out the fake's PROCESSING as the SDK's users do."""
    file = client.files.upload(file=io.BytesIO(data), config={"mime_type": mime})
    while file.state.name == "PROCESSING":
        time.sleep(0.1)
        file = client.files.get(name=file.name)
    return file


def test_the_sdk_speaks_to_the_fake_as_to_the_gemini_api(fake):
    client = genai.Client(api_key=KEY, http_options={"base_url": fake.url})
    data = os.urandom(300_000)
    file = active_upload(client, data, "video/mp4")
    assert file.state.name == "ACTIVE"

    response = client.models.generate_content(model="gemini-test", contents=[file, "Describe"])
    seen = json.loads(response.text)["saw"]
    assert seen[0]["sha256"] == hashlib.sha256(data).hexdigest() and seen[0]["via"] == "files"
    assert response.usage_metadata.total_token_count == 25
    streamed = "".join(c.text for c in client.models.generate_content_stream(model="gemini-test", contents=[file, "Go"]))
    assert json.loads(streamed)["saw"][0]["sha256"] == hashlib.sha256(data).hexdigest()
    assert client.models.count_tokens(model="gemini-test", contents=["one", "two"]).total_tokens == 20

    # Inline bytes as the SDK sends them (URL-safe base64), with the characters only that alphabet has.
    awkward = bytes([0xFB, 0xFF, 0xBF, 0xFE]) * 1000 + b"x"
    inline = genai.types.Part.from_bytes(data=awkward, mime_type="application/octet-stream")
    seen = json.loads(client.models.generate_content(model="gemini-test", contents=[inline, "Read"]).text)["saw"]
    assert seen[0] == {"via": "inline", "mime": "application/octet-stream",
                       "sha256": hashlib.sha256(awkward).hexdigest(), "size": len(awkward)}

    client.files.delete(name=file.name)
    with pytest.raises(genai.errors.ClientError) as gone:
        client.models.generate_content(model="gemini-test", contents=[file, "Again"])
    assert gone.value.code == 403
    stranger = genai.Client(api_key="wrong", http_options={"base_url": fake.url})
    with pytest.raises(genai.errors.ClientError) as bad_key:
        stranger.models.generate_content(model="gemini-test", contents=["hi"])
    assert bad_key.value.code == 400


def test_the_sdk_makes_and_uses_caches_at_the_fake_as_at_the_gemini_api(fake):
    client = genai.Client(api_key=KEY, http_options={"base_url": fake.url})
    data = os.urandom(50_000)
    file = active_upload(client, data, "video/mp4")
    cache = client.caches.create(model="gemini-test", config={
        "contents": [file], "system_instruction": "Be brief", "ttl": "300s", "display_name": "talk"})
    assert cache.name.startswith("cachedContents/") and cache.model == "models/gemini-test"
    assert cache.display_name == "talk" and cache.expire_time > cache.create_time

    # The cache read the file when it was made: deleting the file afterwards changes nothing.
    client.files.delete(name=file.name)
    reply = client.models.generate_content(model="gemini-test", contents="Go",
                                           config={"cached_content": cache.name})
    seen = json.loads(reply.text)["saw"]
    assert seen[0]["sha256"] == hashlib.sha256(data).hexdigest() and seen[-1] == {"text": "Go"}

    longer = client.caches.update(name=cache.name, config={"ttl": "7200s"})
    assert longer.expire_time > cache.expire_time
    assert client.caches.get(name=cache.name).expire_time == longer.expire_time
    client.caches.delete(name=cache.name)
    with pytest.raises(genai.errors.ClientError) as gone:
        client.caches.get(name=cache.name)
    assert gone.value.code == 403
    inline_video = genai.types.Part.from_bytes(data=b"v" * 100, mime_type="video/mp4")
    with pytest.raises(genai.errors.ClientError) as refused:
        client.caches.create(model="gemini-test", config={"contents": [inline_video]})
    assert refused.value.code == 400


def test_the_sdk_in_vertex_mode_speaks_to_the_fake_as_to_vertex_ai():
    from google.oauth2.credentials import Credentials

    vertex = Fake("--bearer", "vertex-token")
    try:
        client = genai.Client(vertexai=True, project="p", location="us-central1",
                              credentials=Credentials(token="vertex-token"),
                              http_options={"base_url": vertex.url, "api_version": "v1"})
        clip = genai.types.Part(inline_data=genai.types.Blob(data=b"frames", mime_type="video/mp4"),
                                video_metadata=genai.types.VideoMetadata(start_offset="1s", end_offset="2s", fps=2))
        seen = json.loads(client.models.generate_content(model="gemini-test", contents=[clip, "Go"]).text)["saw"]
        # The SDK spells the clip's offsets in snake case on this path: the fake echoes what came.
        clipped = {k.replace("_o", "O"): v for k, v in seen[0]["videoMetadata"].items()}
        assert clipped == {"startOffset": "1s", "endOffset": "2s", "fps": 2.0}
        cache = client.caches.create(model="gemini-test", config={"contents": [clip], "ttl": "60s"})
        assert cache.name.startswith("projects/p/locations/us-central1/cachedContents/")
        assert cache.model == "projects/p/locations/us-central1/publishers/google/models/gemini-test"
        reply = client.models.generate_content(model="gemini-test", contents="Again",
                                               config={"cached_content": cache.name})
        assert json.loads(reply.text)["saw"][0]["videoMetadata"]["fps"] == 2.0
        client.caches.delete(name=cache.name)
    finally:
        vertex.stop()


def test_the_sdk_runs_batches_at_the_fake_as_at_the_gemini_api(fake):
    client = genai.Client(api_key=KEY, http_options={"base_url": fake.url})
    lines = [{"key": f"k{i}", "request": {"contents": [{"role": "user", "parts": [{"text": f"q{i}"}]}]}}
             for i in range(3)]
    jsonl = "".join(json.dumps(line) + "\n" for line in lines).encode()
    requests = client.files.upload(file=io.BytesIO(jsonl), config={"mime_type": "jsonl"})
    job = client.batches.create(model="gemini-test", src=requests.name, config={"display_name": "nightly"})
    assert job.name.startswith("batches/") and job.state.name == "JOB_STATE_PENDING"
    while not job.done:
        job = client.batches.get(name=job.name)
    assert job.state.name == "JOB_STATE_SUCCEEDED" and job.display_name == "nightly"
    results = client.files.download(file=job.dest.file_name)
    answers = [json.loads(line) for line in results.decode().splitlines()]
    assert [a["key"] for a in answers] == ["k0", "k1", "k2"]
    assert json.loads(answers[1]["response"]["candidates"][0]["content"]["parts"][0]["text"])["saw"] == \
        [{"text": "q1"}]
    client.batches.delete(name=job.name)


def test_the_sdk_in_vertex_mode_runs_batch_prediction_jobs_at_the_fake():
    from google.oauth2.credentials import Credentials

    vertex = Fake("--bearer", "vertex-token")
    try:
        line = {"request": {"contents": [{"role": "user", "parts": [{"text": "hello"}]}]}}
        put = urllib.request.Request(f"{vertex.url}/gcs/in-bucket/requests.jsonl",
                                     data=(json.dumps(line) + "\n").encode(), method="PUT")
        urllib.request.urlopen(put).read()
        client = genai.Client(vertexai=True, project="p", location="us-central1",
                              credentials=Credentials(token="vertex-token"),
                              http_options={"base_url": vertex.url, "api_version": "v1"})
        job = client.batches.create(model="gemini-test", src="gs://in-bucket/requests.jsonl",
                                    config={"dest": "gs://out-bucket/results/"})
        assert job.name.startswith("projects/p/locations/us-central1/batchPredictionJobs/")
        while not job.done:
            job = client.batches.get(name=job.name)
        assert job.state.name == "JOB_STATE_SUCCEEDED"
        assert job.dest.gcs_uri == "gs://out-bucket/results/"
        directory = job.output_info.gcs_output_directory.removeprefix("gs://")
        with urllib.request.urlopen(f"{vertex.url}/gcs/{directory}/predictions.jsonl") as response:
            prediction = json.loads(response.read())
        assert prediction["request"] == line["request"]
        assert json.loads(prediction["response"]["candidates"][0]["content"]["parts"][0]["text"])["saw"] == \
            [{"text": "hello"}]
    finally:
        vertex.stop()


def test_the_sdk_calls_functions_at_the_fake_as_at_the_gemini_api(fake):
    client = genai.Client(api_key=KEY, http_options={"base_url": fake.url})
    weather = genai.types.FunctionDeclaration(name="weather", description="Weather of a city",
                                              parameters_json_schema={"type": "object"})
    config = {"tools": [genai.types.Tool(function_declarations=[weather])],
              "automatic_function_calling": {"disable": True}}
    reply = client.models.generate_content(model="gemini-test", contents="Oslo?", config=config)
    assert reply.function_calls[0].name == "weather" and reply.function_calls[0].args == {"asked": "Oslo?"}
    streamed = list(client.models.generate_content_stream(model="gemini-test", contents="Bergen?", config=config))
    assert streamed[0].function_calls[0].args == {"asked": "Bergen?"}
    answer = genai.types.Part.from_function_response(name="weather", response={"content": "12 C"})
    history = [genai.types.Content(role="user", parts=[genai.types.Part(text="Oslo?")]),
               reply.candidates[0].content, genai.types.Content(role="user", parts=[answer])]
    seen = json.loads(client.models.generate_content(model="gemini-test", contents=history, config=config).text)["saw"]
    assert seen[-1] == {"functionResponse": {"name": "weather", "response": {"content": "12 C"}}}
    none = dict(config, tool_config={"function_calling_config": {"mode": "NONE"}})
    assert "saw" in json.loads(client.models.generate_content(model="gemini-test", contents="Hi", config=none).text)


def test_the_sdk_reads_log_probabilities_from_the_fake(fake):
    client = genai.Client(api_key=KEY, http_options={"base_url": fake.url})
    reply = client.models.generate_content(model="gemini-test", contents="Hi",
                                           config={"response_logprobs": True, "logprobs": 3})
    result = reply.candidates[0].logprobs_result
    assert result.chosen_candidates[0].log_probability == -0.25
    assert [c.token for c in result.top_candidates[0].candidates][1:] == ["alt1", "alt2"]
