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
