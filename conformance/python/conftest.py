"""Starts one real filegate server for the session (port 0, temporary data dir) and hands out clients.

FILEGATE_BIN names the binary (scripts/test.sh builds it). Two projects exist: alpha and beta. The model
suites (test_models.py) start their own servers, with model calls forwarded to the fake of Google's services
(tests/fakes/google.py).
"""

import json
import os
import subprocess
import sys
import tempfile
import threading
import urllib.request
from pathlib import Path

import pytest
from google import genai

ALPHA_KEY = "alpha-conformance-key"
BETA_KEY = "beta-conformance-key"
MAX_FILE_BYTES = 64 * 1024 * 1024


FAKE_GOOGLE = Path(__file__).resolve().parents[2] / "tests" / "fakes" / "google.py"


class Fake:
    """The fake of Google's services, in a process of its own (it exits with this one)."""

    def __init__(self, *args):
        self.proc = subprocess.Popen(
            [sys.executable, str(FAKE_GOOGLE), "--parent-pid", str(os.getpid()), *args],
            stdout=subprocess.PIPE, text=True,
        )
        self.url = self.proc.stdout.readline().split()[-1]

    def control(self, route):
        with urllib.request.urlopen(f"{self.url}/_fake/{route}") as response:
            return json.load(response)

    def model_calls(self):
        return [r for r in self.control("requests") if "/models/" in r["path"]]

    def service_account(self, directory):
        """A service-account file pointing object_store's GCS client at this fake's Cloud Storage."""
        path = os.path.join(directory, "fake-gcs-account.json")
        with open(path, "w") as f:
            json.dump({"private_key": "unused", "private_key_id": "unused", "client_email": "t@example.invalid",
                       "disable_oauth": True, "gcs_base_url": f"{self.url}/gcs"}, f)
        return path

    def stop(self):
        self.proc.kill()
        self.proc.wait()


class Server:
    def __init__(self, extra_env=None):
        self.tmp = tempfile.TemporaryDirectory()
        binary = os.environ.get("FILEGATE_BIN", "filegate")
        env = dict(os.environ)
        env.update(
            FILEGATE_LISTEN="127.0.0.1:0",
            FILEGATE_DATA_DIR=os.path.join(self.tmp.name, "data"),
            FILEGATE_API_KEYS=f"alpha:{ALPHA_KEY},beta:{BETA_KEY}",
            FILEGATE_MAX_FILE_BYTES=str(MAX_FILE_BYTES),
        )
        env.update(extra_env or {})
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


def own_database(name):
    """Settings that give a server a PostgreSQL database of its own, where the suite runs on PostgreSQL (the
    webhook tests: every node on one database delivers its webhooks, and another live server of this suite,
    configured otherwise, must not take theirs); on SQLite, nothing (each server has its own file)."""
    admin = os.environ.get("FILEGATE_TEST_POSTGRES_URL")
    if not os.environ.get("FILEGATE_DATABASE_URL", "").startswith("postgres") or not admin:
        return {}
    database = f"fg_{name}_{os.getpid()}"
    for statement in (f"DROP DATABASE IF EXISTS {database}", f"CREATE DATABASE {database}"):
        subprocess.run(["psql", admin, "-q", "-v", "ON_ERROR_STOP=1", "-c", statement], check=True)
    return {"FILEGATE_DATABASE_URL": admin.rsplit("/", 1)[0] + "/" + database}


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
