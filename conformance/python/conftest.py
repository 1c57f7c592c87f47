"""Starts one real filegate server for the session (port 0, temporary data dir) and hands out clients.

FILEGATE_BIN names the binary (scripts/test.sh builds it). Two projects exist: alpha and beta.
"""

import os
import subprocess
import tempfile
import threading

import pytest
from google import genai

ALPHA_KEY = "alpha-conformance-key"
BETA_KEY = "beta-conformance-key"
MAX_FILE_BYTES = 64 * 1024 * 1024


class Server:
    def __init__(self):
        self.tmp = tempfile.TemporaryDirectory()
        binary = os.environ.get("FILEGATE_BIN", "filegate")
        env = dict(os.environ)
        env.update(
            FILEGATE_LISTEN="127.0.0.1:0",
            FILEGATE_DATA_DIR=os.path.join(self.tmp.name, "data"),
            FILEGATE_API_KEYS=f"alpha:{ALPHA_KEY},beta:{BETA_KEY}",
            FILEGATE_MAX_FILE_BYTES=str(MAX_FILE_BYTES),
        )
        self.log = open(os.path.join(self.tmp.name, "server.log"), "w")
        self.proc = subprocess.Popen([binary, "serve"], env=env, stdout=subprocess.PIPE, stderr=self.log, text=True)
        self.url = None
        found = threading.Event()

        def read():
            for line in self.proc.stdout:
                if line.startswith("listening on "):
                    self.url = line.split()[-1]
                    found.set()

        threading.Thread(target=read, daemon=True).start()
        if not found.wait(60):
            self.proc.kill()
            raise RuntimeError("filegate did not start: " + open(self.log.name).read())

    def stop(self):
        self.proc.terminate()
        self.proc.wait(15)
        self.tmp.cleanup()


@pytest.fixture(scope="session")
def server():
    s = Server()
    yield s
    s.stop()


def make_client(server, key):
    return genai.Client(api_key=key, http_options={"base_url": server.url})


@pytest.fixture
def client(server):
    return make_client(server, ALPHA_KEY)


@pytest.fixture
def beta(server):
    return make_client(server, BETA_KEY)
