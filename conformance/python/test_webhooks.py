"""Webhooks, received as a client's receiver receives them: every delivery verified with the
`standardwebhooks` library (the reference implementation of the specification filegate signs by).

A receiver on loopback records each delivery; tests wait for the event they caused. The servers allow
plain http and loopback receivers (FILEGATE_WEBHOOK_ALLOW_HTTP, FILEGATE_IMPORT_ALLOW_CIDRS), and retry
quickly (FILEGATE_WEBHOOK_FIRST_RETRY_MS) so that a retry test takes seconds, not minutes.
"""

import base64
import concurrent.futures
import http.server
import json
import os
import threading
import time
import urllib.error
import urllib.request

import pytest
from standardwebhooks.webhooks import Webhook, WebhookVerificationError

from conftest import ALPHA_KEY, BETA_KEY, Server, make_client, own_database

FAST_RETRIES = {
    "FILEGATE_WEBHOOK_ALLOW_HTTP": "true",
    "FILEGATE_IMPORT_ALLOW_CIDRS": "127.0.0.1/32",
    "FILEGATE_WEBHOOK_FIRST_RETRY_MS": "300",
}


class Receiver:
    """An HTTP receiver on 127.0.0.1. `answers` is a list of statuses to give, in order, before 200s."""

    def __init__(self):
        self.deliveries = []  # (headers, body bytes)
        self.answers = []
        self.lock = threading.Lock()
        receiver = self

        class Handler(http.server.BaseHTTPRequestHandler):
            def do_POST(self):
                body = self.rfile.read(int(self.headers["content-length"]))
                with receiver.lock:
                    receiver.deliveries.append((dict(self.headers), body))
                    status = receiver.answers.pop(0) if receiver.answers else 200
                self.send_response(status)
                self.send_header("content-length", "0")
                self.end_headers()

            def log_message(self, *args):
                pass

        self.server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        threading.Thread(target=self.server.serve_forever, daemon=True).start()
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/hook"

    def wait_for(self, predicate, secret, count=1, timeout=30):
        """The verified deliveries (headers, payload) whose payload matches, once there are `count`."""
        deadline = time.time() + timeout
        while time.time() < deadline:
            with self.lock:
                seen = list(self.deliveries)
            matched = []
            for headers, body in seen:
                payload = json.loads(body)
                if predicate(payload):
                    Webhook(secret).verify(body, headers)  # raises unless signed with `secret`
                    matched.append((headers, payload))
            if len(matched) >= count:
                return matched
            time.sleep(0.05)
        raise AssertionError(f"{count} matching deliveries did not arrive within {timeout} s; got {len(seen)}")

    def stop(self):
        self.server.shutdown()


def call(server, method, path, key=ALPHA_KEY, body=None, bearer=False):
    """`(status, JSON body)`; the key as the Gemini surface takes it, or as a Bearer token (the import API)."""
    data = None if body is None else json.dumps(body).encode()
    request = urllib.request.Request(f"{server.url}{path}", data=data, method=method)
    request.add_header(*(("authorization", f"Bearer {key}") if bearer else ("x-goog-api-key", key)))
    request.add_header("content-type", "application/json")
    try:
        with urllib.request.urlopen(request) as response:
            return response.status, json.load(response)
    except urllib.error.HTTPError as e:
        return e.code, json.load(e)


def import_call(server, body, key=ALPHA_KEY):
    return call(server, "POST", "/v1/files", key=key, body=body, bearer=True)


class Source:
    """A static file server on loopback, the import source."""

    def __init__(self, directory):
        handler = lambda *a, **k: http.server.SimpleHTTPRequestHandler(*a, directory=directory, **k)  # noqa: E731
        http.server.SimpleHTTPRequestHandler.log_message = lambda *a: None
        self.server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
        threading.Thread(target=self.server.serve_forever, daemon=True).start()
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"


@pytest.fixture(scope="module")
def hooked():
    s = Server({**FAST_RETRIES, **own_database("webhooks")})
    yield s
    s.stop()


@pytest.fixture
def receiver():
    r = Receiver()
    yield r
    r.stop()


@pytest.fixture
def webhook(hooked, receiver):
    """A webhook of alpha on `receiver`, for every file event; deleted after the test."""
    events = ["file.active", "file.failed", "file.deleted", "file.expired"]
    status, created = call(hooked, "POST", "/v1beta/webhooks", body={"uri": receiver.url, "subscribedEvents": events})
    assert status == 200, created
    yield created
    call(hooked, "DELETE", f"/v1beta/{created['name']}")


def of_file(name, event_type):
    return lambda p: p["type"] == event_type and p["data"].get("file", {}).get("name") == name


def test_a_webhook_is_created_with_a_secret_shown_once(hooked, webhook, receiver):
    assert webhook["name"].startswith("webhooks/") and webhook["state"] == "enabled"
    assert webhook["newSigningSecret"].startswith("whsec_") and webhook["uri"] == receiver.url
    status, got = call(hooked, "GET", f"/v1beta/{webhook['name']}")
    assert status == 200 and "newSigningSecret" not in got and got["subscribedEvents"] == webhook["subscribedEvents"]
    status, listed = call(hooked, "GET", "/v1beta/webhooks")
    assert [w["name"] for w in listed["webhooks"]] == [webhook["name"]]


def test_an_upload_and_an_import_tell_file_active_with_their_views(hooked, webhook, receiver, tmp_path):
    client = make_client(hooked, ALPHA_KEY)
    path = tmp_path / "notes.txt"
    path.write_bytes(b"webhooks are better than polling\n" * 100)
    uploaded = client.files.upload(file=str(path))
    [(headers, payload)] = receiver.wait_for(of_file(uploaded.name, "file.active"), webhook["newSigningSecret"])
    assert payload["project"] == "alpha" and payload["id"] == headers["webhook-id"]
    assert payload["data"]["file"]["state"] == "ACTIVE"
    assert payload["data"]["file"]["sha256Hash"] == client.files.get(name=uploaded.name).sha256_hash
    assert int(payload["data"]["file"]["sizeBytes"]) == 3300 and "import" not in payload["data"]

    (tmp_path / "source.bin").write_bytes(os.urandom(100_000))
    source = Source(str(tmp_path))
    status, task = import_call(hooked, {"source_url": f"{source.url}/source.bin", "model": "gemini-2.5-flash"})
    assert status == 200, task
    [(_, payload)] = receiver.wait_for(of_file(task["gemini_file"]["name"], "file.active"), webhook["newSigningSecret"])
    assert payload["data"]["import"]["id"] == task["id"] and payload["data"]["import"]["status"] == "ready"
    assert payload["data"]["import"]["bytes"] == 100_000
    source.server.shutdown()


def test_a_failed_import_tells_file_failed_with_its_error(hooked, webhook, receiver, tmp_path):
    source = Source(str(tmp_path))
    status, task = import_call(hooked, {"source_url": f"{source.url}/missing.bin", "model": "gemini-2.5-flash"})
    assert status == 200, task
    [(_, payload)] = receiver.wait_for(of_file(task["gemini_file"]["name"], "file.failed"), webhook["newSigningSecret"])
    assert payload["data"]["import"]["status"] == "failed"
    assert payload["data"]["import"]["error"]["code"] == "source_http_status"
    assert "404" in payload["data"]["import"]["error"]["message"]
    assert payload["data"]["file"]["state"] == "FAILED"
    source.server.shutdown()


def test_a_delete_tells_file_deleted(hooked, webhook, receiver, tmp_path):
    client = make_client(hooked, ALPHA_KEY)
    path = tmp_path / "gone.txt"
    path.write_bytes(b"soon gone")
    uploaded = client.files.upload(file=str(path))
    client.files.delete(name=uploaded.name)
    [(_, payload)] = receiver.wait_for(of_file(uploaded.name, "file.deleted"), webhook["newSigningSecret"])
    assert payload["data"]["file"]["name"] == uploaded.name


def test_a_failing_receiver_gets_the_same_webhook_id_until_it_answers_2xx(hooked, webhook, receiver, tmp_path):
    receiver.answers = [500, 500, 500]
    client = make_client(hooked, ALPHA_KEY)
    path = tmp_path / "retried.txt"
    path.write_bytes(b"again")
    uploaded = client.files.upload(file=str(path))
    attempts = receiver.wait_for(of_file(uploaded.name, "file.active"), webhook["newSigningSecret"], count=4)
    assert len({headers["webhook-id"] for headers, _ in attempts}) == 1
    assert len({json.dumps(p, sort_keys=True) for _, p in attempts}) == 1, "the same body on every attempt"
    time.sleep(2)
    assert len(receiver.wait_for(of_file(uploaded.name, "file.active"), webhook["newSigningSecret"])) == 4, (
        "nothing more once it answered 200"
    )


def test_after_rotations_every_secret_younger_than_a_day_signs(hooked, webhook, receiver):
    old = webhook["newSigningSecret"]
    status, rotated = call(hooked, "POST", f"/v1beta/{webhook['name']}:rotateSigningSecret")
    assert status == 200 and rotated["newSigningSecret"] not in (None, old)
    # A second rotation within the day: the first secret still signs until its own day is over.
    status, again = call(hooked, "POST", f"/v1beta/{webhook['name']}:rotateSigningSecret")
    assert status == 200 and again["newSigningSecret"] not in (old, rotated["newSigningSecret"])
    status, pinged = call(hooked, "POST", f"/v1beta/{webhook['name']}:ping")
    assert status == 200
    ping = lambda p: p["type"] == "webhook.ping" and p["id"] == pinged["webhookId"]  # noqa: E731
    [(headers, _)] = receiver.wait_for(ping, again["newSigningSecret"])
    receiver.wait_for(ping, rotated["newSigningSecret"])
    receiver.wait_for(ping, old)
    assert len(headers["webhook-signature"].split(" ")) == 3
    with pytest.raises(WebhookVerificationError):
        receiver.wait_for(ping, "whsec_" + base64.b64encode(b"another secret, 32 bytes long!!!").decode())


def test_forbidden_and_malformed_receivers_are_refused(hooked):
    for uri in [
        "http://10.0.0.1/hook",
        "http://169.254.169.254/latest",
        "http://[::1]:9/x",
        "http://0x0a.1/x",
        "http://[::ffff:0:a00:1]/x",  # 10.0.0.1, IPv4-translated (RFC 2765)
    ]:
        status, error = call(hooked, "POST", "/v1beta/webhooks", body={"uri": uri, "subscribedEvents": ["file.active"]})
        assert status == 400 and "may not reach" in error["error"]["message"], (uri, error)
    for uri, words in [("ftp://127.0.0.1/x", "https"), ("http://u:p@127.0.0.1/x", "credentials"), ("nope", "absolute")]:
        status, error = call(hooked, "POST", "/v1beta/webhooks", body={"uri": uri, "subscribedEvents": ["file.active"]})
        assert status == 400 and words in error["error"]["message"], (uri, error)
    status, error = call(hooked, "POST", "/v1beta/webhooks", body={"uri": "http://127.0.0.1:9/", "subscribedEvents": []})
    assert status == 400 and "subscribedEvents" in error["error"]["message"]
    status, error = call(
        hooked, "POST", "/v1beta/webhooks", body={"uri": "http://127.0.0.1:9/", "subscribedEvents": ["file.eaten"]}
    )
    assert status == 400 and "file.eaten" in error["error"]["message"]


def test_https_is_required_unless_the_operator_allows_http():
    strict = Server({"FILEGATE_IMPORT_ALLOW_CIDRS": "127.0.0.1/32", **own_database("webhooks_strict")})
    try:
        status, error = call(
            strict, "POST", "/v1beta/webhooks", body={"uri": "http://127.0.0.1:9/", "subscribedEvents": ["file.active"]}
        )
        assert status == 400 and "FILEGATE_WEBHOOK_ALLOW_HTTP" in error["error"]["message"]
        status, _ = call(
            strict, "POST", "/v1beta/webhooks", body={"uri": "https://127.0.0.1:9/", "subscribedEvents": ["file.active"]}
        )
        assert status == 200
    finally:
        strict.stop()


def test_another_project_neither_sees_the_webhook_nor_hears_of_its_events(hooked, webhook, receiver, tmp_path):
    status, _ = call(hooked, "GET", f"/v1beta/{webhook['name']}", key=BETA_KEY)
    assert status == 404
    status, _ = call(hooked, "DELETE", f"/v1beta/{webhook['name']}", key=BETA_KEY)
    assert status == 404
    beta_receiver = Receiver()
    status, beta_hook = call(
        hooked, "POST", "/v1beta/webhooks", key=BETA_KEY,
        body={"uri": beta_receiver.url, "subscribedEvents": ["file.active"]},
    )
    assert status == 200
    alpha, beta = make_client(hooked, ALPHA_KEY), make_client(hooked, BETA_KEY)
    alpha_file = alpha.files.upload(file=__file__, config={"mime_type": "text/plain"})
    beta_file = beta.files.upload(file=__file__, config={"mime_type": "text/plain"})
    beta_receiver.wait_for(of_file(beta_file.name, "file.active"), beta_hook["newSigningSecret"])
    receiver.wait_for(of_file(alpha_file.name, "file.active"), webhook["newSigningSecret"])
    time.sleep(0.5)
    assert all(json.loads(body)["project"] == "beta" for _, body in beta_receiver.deliveries)
    assert all(json.loads(body)["project"] == "alpha" for _, body in receiver.deliveries)
    call(hooked, "DELETE", f"/v1beta/{beta_hook['name']}", key=BETA_KEY)
    beta_receiver.stop()


def test_an_import_s_own_webhook_is_signed_with_the_project_secret(hooked, receiver, tmp_path):
    (tmp_path / "own.bin").write_bytes(b"x" * 5000)
    source = Source(str(tmp_path))
    config = {"uris": [receiver.url], "user_metadata": {"job": 42}}
    request = {"source_url": f"{source.url}/own.bin", "model": "gemini-2.5-flash", "webhook_config": config}
    status, error = import_call(hooked, request, key=BETA_KEY)
    assert status == 409 and error["error"]["code"] == "failed_precondition", error
    assert "rotateProjectSigningSecret" in error["error"]["message"]
    status, secret = call(hooked, "POST", "/v1beta/webhooks:rotateProjectSigningSecret")
    assert status == 200 and secret["newSigningSecret"].startswith("whsec_")
    status, task = import_call(hooked, request)
    assert status == 200, task
    [(_, payload)] = receiver.wait_for(of_file(task["gemini_file"]["name"], "file.active"), secret["newSigningSecret"])
    assert payload["user_metadata"] == {"job": 42} and payload["data"]["import"]["id"] == task["id"]
    status, _ = call(hooked, "DELETE", f"/v1beta/{task['gemini_file']['name']}")
    [(_, gone)] = receiver.wait_for(of_file(task["gemini_file"]["name"], "file.deleted"), secret["newSigningSecret"])
    assert gone["user_metadata"] == {"job": 42}
    status, error = import_call(hooked, {**request, "webhook_config": {"uris": ["http://10.1.1.1/"]}})
    assert status == 400 and "may not reach" in error["error"]["message"]
    source.server.shutdown()


def test_patch_changes_what_and_whether_a_webhook_hears(hooked, webhook, receiver, tmp_path):
    status, patched = call(
        hooked, "PATCH", f"/v1beta/{webhook['name']}?updateMask=subscribedEvents", body={"subscribedEvents": ["file.deleted"]}
    )
    assert status == 200 and patched["subscribedEvents"] == ["file.deleted"]
    client = make_client(hooked, ALPHA_KEY)
    quiet = client.files.upload(file=__file__, config={"mime_type": "text/plain"})
    client.files.delete(name=quiet.name)
    receiver.wait_for(of_file(quiet.name, "file.deleted"), webhook["newSigningSecret"])
    assert not any(of_file(quiet.name, "file.active")(json.loads(b)) for _, b in receiver.deliveries)
    status, patched = call(hooked, "PATCH", f"/v1beta/{webhook['name']}", body={"state": "disabled"})
    assert status == 200 and patched["state"] == "disabled"
    unheard = client.files.upload(file=__file__, config={"mime_type": "text/plain"})
    client.files.delete(name=unheard.name)
    time.sleep(1)
    assert not any(json.loads(b)["data"].get("file", {}).get("name") == unheard.name for _, b in receiver.deliveries)
    status, error = call(hooked, "PATCH", f"/v1beta/{webhook['name']}", body={"state": "disabled_due_to_failed_deliveries"})
    assert status == 400


@pytest.fixture(scope="module")
def short_lived():
    """Files that expire after 2 s, a janitor every second, and a retry window of 3 s."""
    s = Server({**FAST_RETRIES, "FILEGATE_DEFAULT_TTL_SECONDS": "2", "FILEGATE_SWEEP_INTERVAL_SECONDS": "1",
                "FILEGATE_WEBHOOK_RETRY_SECONDS": "3", **own_database("webhooks_short")})
    yield s
    s.stop()


def test_expiry_tells_file_expired(short_lived, receiver, tmp_path):
    status, hook = call(short_lived, "POST", "/v1beta/webhooks", body={"uri": receiver.url, "subscribedEvents": ["file.expired"]})
    assert status == 200
    client = make_client(short_lived, ALPHA_KEY)
    uploaded = client.files.upload(file=__file__, config={"mime_type": "text/plain"})
    [(_, payload)] = receiver.wait_for(of_file(uploaded.name, "file.expired"), hook["newSigningSecret"])
    assert payload["data"]["file"]["name"] == uploaded.name
    call(short_lived, "DELETE", f"/v1beta/{hook['name']}")


def test_a_receiver_failing_for_the_whole_retry_window_disables_its_webhook(short_lived, receiver):
    receiver.answers = [503] * 1000
    # The receiver's own token rides in its query: it is never written to the log.
    uri = receiver.url + "?token=receivers-own-secret-7f3a"
    status, hook = call(short_lived, "POST", "/v1beta/webhooks", body={"uri": uri, "subscribedEvents": ["file.active"]})
    assert status == 200
    status, _ = call(short_lived, "POST", f"/v1beta/{hook['name']}:ping")
    assert status == 200
    deadline = time.time() + 30
    while time.time() < deadline:
        status, got = call(short_lived, "GET", f"/v1beta/{hook['name']}")
        if got["state"] == "disabled_due_to_failed_deliveries":
            break
        time.sleep(0.2)
    assert got["state"] == "disabled_due_to_failed_deliveries"
    assert len(receiver.deliveries) >= 2, "it was retried before it was given up"
    log = open(short_lived.log.name).read()
    assert "abandoned" in log and "receivers-own-secret-7f3a" not in log
    with urllib.request.urlopen(f"{short_lived.url}/metrics") as response:
        metrics = response.read().decode()
    assert 'filegate_webhook_deliveries_total{outcome="abandoned"} 1' in metrics
    assert "filegate_webhook_pending_deliveries" in metrics
    status, error = call(short_lived, "POST", f"/v1beta/{hook['name']}:ping")
    assert status == 400 and "enable it first" in error["error"]["message"]


def test_a_batch_tells_its_end_without_anyone_polling(receiver):
    """Each node follows unfinished batch jobs itself (every sweep interval): nobody polls here, yet the
    results become a file and batch.succeeded arrives; a cancelled job tells batch.cancelled."""
    from conftest import Fake

    fake = Fake("--bearer", "unused")
    server = Server({**FAST_RETRIES, **own_database("webhooks_batches"), "FILEGATE_UPSTREAM": "gemini",
                     "FILEGATE_GEMINI_ENDPOINT": fake.url, "FILEGATE_GEMINI_API_KEY": "gemini-upstream-key",
                     "FILEGATE_SWEEP_INTERVAL_SECONDS": "1"})
    try:
        events = ["batch.succeeded", "batch.failed", "batch.cancelled", "batch.expired"]
        status, hook = call(server, "POST", "/v1beta/webhooks", body={"uri": receiver.url, "subscribedEvents": events})
        assert status == 200, hook
        client = make_client(server, ALPHA_KEY)
        request = {"contents": [{"role": "user", "parts": [{"text": "Hi"}]}]}
        job = client.batches.create(model="gemini-test", src=[request, request])
        stopped = client.batches.create(model="gemini-test", src=[request])
        client.batches.cancel(name=stopped.name)
        secret = hook["newSigningSecret"]
        of_batch = lambda name, kind: lambda p: p["type"] == kind and p["data"]["batch"]["name"] == name  # noqa: E731
        [(_, done)] = receiver.wait_for(of_batch(job.name, "batch.succeeded"), secret)
        results = done["data"]["batch"]["metadata"]["output"]["responsesFile"]
        assert done["data"]["batch"]["done"] is True
        assert client.files.get(name=results).source.name == "GENERATED"
        assert len(client.files.download(file=results).decode().splitlines()) == 2
        receiver.wait_for(of_batch(stopped.name, "batch.cancelled"), secret)
        time.sleep(2)
        told = [json.loads(body) for _, body in receiver.deliveries]
        assert sorted(p["type"] for p in told) == ["batch.cancelled", "batch.succeeded"], "each end told once"
    finally:
        server.stop()
        fake.stop()


def test_a_project_running_many_batches_neither_hides_another_s_end_nor_passes_its_cap(receiver):
    """One project keeps 105 batches running (more than a watcher used to look at per round); another
    project's batch still ends and is told. A project at FILEGATE_BATCH_MAX_RUNNING_PER_PROJECT is refused
    with 429."""
    from conftest import Fake

    fake = Fake("--bearer", "unused")
    server = Server({**FAST_RETRIES, **own_database("webhooks_busy_batches"), "FILEGATE_UPSTREAM": "gemini",
                     "FILEGATE_GEMINI_ENDPOINT": fake.url, "FILEGATE_GEMINI_API_KEY": "gemini-upstream-key",
                     "FILEGATE_SWEEP_INTERVAL_SECONDS": "1", "FILEGATE_BATCH_MAX_RUNNING_PER_PROJECT": "105"})
    try:
        request = {"contents": [{"role": "user", "parts": [{"text": "Hi"}]}]}
        busy = make_client(server, ALPHA_KEY)
        create = lambda n: busy.batches.create(  # noqa: E731
            model="gemini-test", src=[request], config={"display_name": f"fake-hold-{n}"})
        with concurrent.futures.ThreadPoolExecutor(8) as pool:
            list(pool.map(create, range(105)))
        status, refused = call(server, "POST", "/v1beta/models/gemini-test:batchGenerateContent",
                               body={"batch": {"inputConfig": {"requests": {"requests": [{"request": request}]}}}})
        assert status == 429 and "FILEGATE_BATCH_MAX_RUNNING_PER_PROJECT" in refused["error"]["message"], refused

        status, hook = call(server, "POST", "/v1beta/webhooks", key=BETA_KEY,
                            body={"uri": receiver.url, "subscribedEvents": ["batch.succeeded"]})
        assert status == 200, hook
        quiet = make_client(server, BETA_KEY)  # kept: a client dropped closes its connections
        job = quiet.batches.create(model="gemini-test", src=[request])
        of_job = lambda p: p["type"] == "batch.succeeded" and p["data"]["batch"]["name"] == job.name  # noqa: E731
        receiver.wait_for(of_job, hook["newSigningSecret"], timeout=20)
    finally:
        server.stop()
        fake.stop()
