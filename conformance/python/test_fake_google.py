"""The fake of Google's services (tests/fakes/google.py) checked against the official SDK: google-genai,
pointed straight at the fake as at the Gemini API, uploads with the resumable protocol, waits for ACTIVE,
and calls the model with the file, streaming and not. If the fake drifted from Google's wire, the SDK
would fail here, not only filegate's tests of the front door."""

import hashlib
import io
import json
import os
import time

import pytest
from google import genai

from conftest import Fake

KEY = "gemini-upstream-key"


@pytest.fixture(scope="module")
def fake():
    f = Fake("--api-key", KEY)
    yield f
    f.stop()


def test_the_sdk_speaks_to_the_fake_as_to_the_gemini_api(fake):
    client = genai.Client(api_key=KEY, http_options={"base_url": fake.url})
    data = os.urandom(300_000)
    file = client.files.upload(file=io.BytesIO(data), config={"mime_type": "video/mp4"})
    while file.state.name == "PROCESSING":
        time.sleep(0.1)
        file = client.files.get(name=file.name)
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
    file = client.files.upload(file=io.BytesIO(data), config={"mime_type": "video/mp4"})
    while file.state.name == "PROCESSING":
        time.sleep(0.1)
        file = client.files.get(name=file.name)
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
