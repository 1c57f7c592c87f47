"""filegate's container image, run the way a container runtime would run it, without one (none can start
containers on these machines): the image's root file system, mounted with `podman image mount` and copied,
its entrypoint started in a chroot as the image's user with the image's environment only, and the official
google-genai SDK driving it over loopback. The secret comes in as a file (FILEGATE_API_KEYS_FILE), as a
platform mounts it. scripts/test.sh builds the image first (scripts/image.sh) and runs this in a network
namespace with only loopback.

    FILEGATE_IMAGE=localhost/filegate:latest pytest conformance/image
"""

import hashlib
import io
import json
import os
import shutil
import subprocess
import tempfile
import time
import urllib.request

import pytest
from google import genai

IMAGE = os.environ.get("FILEGATE_IMAGE", "localhost/filegate:latest")
KEY = "image-test-key-0001"


def podman(*args):
    return subprocess.run(["podman", *args], check=True, capture_output=True, text=True).stdout.strip()


@pytest.fixture(scope="module")
def image():
    config = json.loads(podman("image", "inspect", IMAGE))[0]
    return config


@pytest.fixture(scope="module")
def running(image):
    config = image["Config"]
    root = tempfile.mkdtemp(prefix="filegate-image-")
    mounted = podman("image", "mount", IMAGE)
    try:
        subprocess.run(["cp", "-a", f"{mounted}/.", root], check=True)
    finally:
        podman("image", "unmount", IMAGE)
    user = config["User"]
    uid, gid = (int(x) for x in user.split(":"))
    secrets = os.path.join(root, "run", "secrets")
    os.makedirs(secrets)
    with open(os.path.join(secrets, "api-keys"), "w") as f:
        f.write(f"images:{KEY}\n")
    os.chown(os.path.join(secrets, "api-keys"), uid, gid)
    os.chmod(os.path.join(secrets, "api-keys"), 0o400)
    env = dict(item.split("=", 1) for item in config["Env"])
    env["FILEGATE_API_KEYS_FILE"] = "/run/secrets/api-keys"
    # Only loopback here (scripts/test.sh's namespace): the image's own listen address is then safe to use.
    interfaces = set(os.listdir("/sys/class/net"))
    if interfaces - {"lo"}:
        env["FILEGATE_LISTEN"] = "127.0.0.1:8080"
    command = ["chroot", f"--userspec={uid}:{gid}", root, *config["Entrypoint"], *config["Cmd"]]
    log = tempfile.NamedTemporaryFile("w+", prefix="filegate-image-", suffix=".log", delete=False)
    process = subprocess.Popen(command, env=env, stdout=log, stderr=subprocess.STDOUT)
    url = "http://127.0.0.1:" + env["FILEGATE_LISTEN"].rsplit(":", 1)[1]
    for _ in range(100):
        try:
            urllib.request.urlopen(f"{url}/healthz", timeout=1).read()
            break
        except OSError:
            assert process.poll() is None, open(log.name).read()
            time.sleep(0.1)
    yield {"url": url, "root": root, "process": process, "uid": uid, "log": log.name}
    process.terminate()
    process.wait(timeout=40)
    shutil.rmtree(root)
    os.unlink(log.name)


def test_the_image_declares_how_it_runs(image):
    config = image["Config"]
    assert config["User"] == "65532:65532", "not root"
    assert config["Entrypoint"] == ["/filegate"] and config["Cmd"] == ["serve"]
    assert "8080/tcp" in config["ExposedPorts"]
    assert "/data" in config["Volumes"]
    env = dict(item.split("=", 1) for item in config["Env"])
    assert env["FILEGATE_DATA_DIR"] == "/data" and env["FILEGATE_LISTEN"] == "0.0.0.0:8080"
    assert image["Size"] < 64 * 1024 * 1024, f"the image is {image['Size']} bytes"


def test_the_entrypoint_serves_the_sdk_as_the_image_s_user(running):
    client = genai.Client(api_key=KEY, http_options={"base_url": running["url"]})
    data = os.urandom(3 * 1024 * 1024 + 5)
    file = client.files.upload(file=io.BytesIO(data), config={"mime_type": "video/mp4", "display_name": "in a box"})
    assert file.state.name == "ACTIVE"
    assert file.sha256_hash  # the SDK keeps Google's spelling; filegate's is the base64 of the digest
    assert [f.name for f in client.files.list()] == [file.name]
    assert client.files.download(file=file.name) == data
    client.files.delete(name=file.name)

    # chroot(8) execs the entrypoint: the process started is the server itself.
    status = open(f"/proc/{running['process'].pid}/status").read()
    assert os.readlink(f"/proc/{running['process'].pid}/exe").endswith("/filegate")
    uids = next(line for line in status.splitlines() if line.startswith("Uid:")).split()[1:]
    assert set(uids) == {str(running["uid"])}, f"the server runs as {uids}"
    database = os.path.join(running["root"], "data", "filegate.db")
    assert os.stat(database).st_uid == running["uid"], "the data volume is the image user's"
    log = open(running["log"]).read()
    assert '"level":"INFO"' in log, "JSON logs, as the image's environment asks"
    assert KEY not in log
