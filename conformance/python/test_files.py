"""The official google-genai SDK, unchanged, against filegate: only base_url points at it."""

import asyncio
import base64
import hashlib
import io
import os
import uuid

import pytest
from google.genai import errors, types

from conftest import ALPHA_KEY, MAX_FILE_BYTES, make_client

MIB = 1024 * 1024
CHUNK = 8 * MIB


def payload(size, seed):
    # Deterministic, incompressible enough, and different per seed.
    out = bytearray()
    block = hashlib.sha256(f"{seed}".encode()).digest()
    while len(out) < size:
        block = hashlib.sha256(block).digest()
        out += block * 64
    return bytes(out[:size])


def digest_b64(data):
    return base64.b64encode(hashlib.sha256(data).digest()).decode()


@pytest.mark.parametrize("size", [0, 1, CHUNK - 1, CHUNK, CHUNK + 1, 2 * CHUNK, 20_000_000])
def test_upload_of_every_awkward_size_from_a_stream(client, size):
    data = payload(size, size)
    f = client.files.upload(
        file=io.BytesIO(data), config={"mime_type": "application/octet-stream", "display_name": f"stream {size}"}
    )
    assert f.size_bytes == size
    assert f.sha256_hash == digest_b64(data)
    assert f.state == types.FileState.ACTIVE
    assert f.display_name == f"stream {size}"
    assert f.name.startswith("files/") and f.name[6:].isalnum()
    assert client.files.download(file=f.name) == data


def test_upload_from_a_path_guesses_the_mime_type_and_keeps_a_chosen_name(client, tmp_path):
    name = "doc-" + uuid.uuid4().hex[:8]
    path = tmp_path / "report.pdf"
    data = payload(3 * MIB + 5, 1)
    path.write_bytes(data)
    f = client.files.upload(file=str(path), config={"name": name})
    assert f.name == f"files/{name}"
    assert f.mime_type == "application/pdf"
    assert f.sha256_hash == digest_b64(data)
    got = client.files.get(name=f"files/{name}")
    assert got.name == f.name and got.size_bytes == len(data) and got.create_time == f.create_time
    assert client.files.get(name=name).sha256_hash == f.sha256_hash


def test_download_to_a_destination_and_through_the_file_object(client, tmp_path):
    data = payload(CHUNK + 123, 2)
    f = client.files.upload(file=io.BytesIO(data), config={"mime_type": "video/mp4"})
    dest = tmp_path / "out.mp4"
    client.files.download(file=f, destination=str(dest))
    assert dest.read_bytes() == data


def test_list_pages_through_every_file(beta):
    names = set()
    for i in range(7):
        names.add(beta.files.upload(file=io.BytesIO(b"x" * i), config={"mime_type": "text/plain"}).name)
    pager = beta.files.list(config={"page_size": 3})
    listed = [f.name for f in pager]
    assert names <= set(listed)
    assert len(listed) == len(set(listed)), "no file twice"
    assert pager.page_size == 3


def test_delete_then_get_is_permission_denied(client):
    f = client.files.upload(file=io.BytesIO(b"bye"), config={"mime_type": "text/plain"})
    client.files.delete(name=f.name)
    with pytest.raises(errors.ClientError) as e:
        client.files.get(name=f.name)
    assert e.value.code == 403
    assert e.value.status == "PERMISSION_DENIED"
    assert "may not exist" in e.value.message


def test_a_duplicate_name_is_a_409_at_start(client):
    name = "dup-" + uuid.uuid4().hex[:8]
    client.files.upload(file=io.BytesIO(b"1"), config={"name": name, "mime_type": "text/plain"})
    with pytest.raises(errors.ClientError) as e:
        client.files.upload(file=io.BytesIO(b"2"), config={"name": name, "mime_type": "text/plain"})
    assert e.value.code == 409
    assert e.value.status == "ALREADY_EXISTS"


def test_a_bad_name_and_a_bad_key_are_400s(client, server):
    with pytest.raises(errors.ClientError) as e:
        client.files.upload(file=io.BytesIO(b"1"), config={"name": "Not_Valid", "mime_type": "text/plain"})
    assert e.value.code == 400 and e.value.status == "INVALID_ARGUMENT"
    stranger = make_client(server, "wrong-key")
    with pytest.raises(errors.ClientError) as e:
        stranger.files.list()
    assert e.value.code == 400
    assert e.value.details["error"]["details"][0]["reason"] == "API_KEY_INVALID"


def test_a_file_over_the_size_limit_is_refused_before_any_byte_is_sent(client):
    class Huge(io.RawIOBase):
        """Claims a size over the limit; reading it would fail the test."""

        position = 0

        def seekable(self):
            return True

        def seek(self, offset, whence=0):
            self.position = MAX_FILE_BYTES + 1 + offset if whence == 2 else offset
            return self.position

        def tell(self):
            return self.position

        def read(self, n=-1):
            raise AssertionError("the SDK must not send bytes after a refused start")

    with pytest.raises(errors.ClientError) as e:
        client.files.upload(file=Huge(), config={"mime_type": "video/mp4"})
    assert e.value.code == 400
    assert "over the limit" in e.value.message


def test_projects_are_isolated(client, beta):
    f = client.files.upload(file=io.BytesIO(b"mine"), config={"mime_type": "text/plain"})
    with pytest.raises(errors.ClientError) as e:
        beta.files.get(name=f.name)
    assert e.value.code == 403
    with pytest.raises(errors.ClientError):
        beta.files.download(file=f.name)


def test_hostile_display_names_survive_the_round_trip(client):
    hostile = 'quote " backslash \\ newline \n emoji \U0001f600 <script>'
    f = client.files.upload(file=io.BytesIO(b"x"), config={"mime_type": "text/plain", "display_name": hostile})
    assert client.files.get(name=f.name).display_name == hostile


def test_the_async_client_does_everything_the_sync_one_does(client, tmp_path):
    data = payload(CHUNK + 77, 3)

    async def run():
        aio = client.aio
        f = await aio.files.upload(file=io.BytesIO(data), config={"mime_type": "audio/mpeg", "display_name": "aio"})
        assert f.sha256_hash == digest_b64(data)
        got = await aio.files.get(name=f.name)
        assert got.state == types.FileState.ACTIVE
        assert await aio.files.download(file=f.name) == data
        names = [x.name async for x in await aio.files.list(config={"page_size": 2})]
        assert f.name in names
        await aio.files.delete(name=f.name)
        with pytest.raises(errors.ClientError):
            await aio.files.get(name=f.name)

    asyncio.run(run())
