"""Google's own curl walk-through of the Files API, run verbatim against filegate.

Users copy these commands from Google's documentation, quoting and all (the start body is written with single
quotes, which Google's front end accepts). Only the host and the key are replaced.
"""

import os
import pathlib
import subprocess

import pytest
from conftest import ALPHA_KEY

HERE = pathlib.Path(__file__).resolve().parent
SCRIPT = HERE.parent / "rest" / "files-walkthrough.sh"
# A text copy of Google's Files API page, where one is at hand (it is not part of this repository).
REFERENCE = pathlib.Path(os.environ.get("FILEGATE_GEMINI_FILES_DOCS", "/nonexistent"))
GOOGLE = "https://generativelanguage.googleapis.com"

# An MPEG audio frame header after an ID3 tag: `file --mime-type` calls it audio/mpeg.
MP3 = b"ID3\x03\x00\x00\x00\x00\x00\x0a" + b"\x00" * 10 + (b"\xff\xfb\x90\x64" + b"\x00" * 413) * 40


def test_the_copy_is_still_what_google_documents():
    if not REFERENCE.exists():
        pytest.skip("FILEGATE_GEMINI_FILES_DOCS names no copy of Google's Files API page")
    documented = set(REFERENCE.read_text().splitlines())
    # Lines of our own start with "##"; every other line must be Google's, as written.
    copied = [line for line in SCRIPT.read_text().splitlines() if not line.startswith("##")]
    missing = [line for line in copied if line not in documented]
    assert not missing, f"lines not in Google's documentation: {missing}"


def test_googles_curl_walkthrough_works_verbatim(server, client, tmp_path):
    audio = tmp_path / "path" / "to" / "sample.mp3"
    audio.parent.mkdir(parents=True)
    audio.write_bytes(MP3)
    script = SCRIPT.read_text().replace(GOOGLE, server.url)
    env = dict(os.environ, BASE_URL=server.url, GEMINI_API_KEY=ALPHA_KEY)
    run = subprocess.run(["bash", "-c", script], cwd=tmp_path, env=env, capture_output=True, text=True, timeout=60)
    assert run.returncode == 0, run.stderr
    out = run.stdout

    lines = out.splitlines()
    name = next(l.split("=", 1)[1] for l in lines if l.startswith("name="))
    assert name.startswith("files/"), out
    uri_lines = [l.split("=", 1)[1] for l in lines if l.startswith("file_uri=")]
    assert uri_lines[0] == f'"{server.url}/v1beta/{name}"', "jq without -r prints the upload's uri quoted"
    assert uri_lines[1] == f"{server.url}/v1beta/{name}"
    assert f'"name": "{name}"' in out or f'"name":"{name}"' in out, "the list shows the file"
    assert out.rstrip().endswith("{}"), "the delete answers {}"

    uploaded = (tmp_path / "file_info.json").read_text()
    assert '"displayName":"AUDIO"' in uploaded.replace(" ", ""), uploaded
    assert '"mimeType":"audio/mpeg"' in uploaded.replace(" ", ""), uploaded
    assert f'"sizeBytes":"{len(MP3)}"' in uploaded.replace(" ", ""), uploaded
    assert all(f.name != name for f in client.files.list()), "deleted"
