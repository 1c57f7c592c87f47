"""Two nodes on one PostgreSQL database and one bucket, killed with SIGKILL at random moments while 600
files (FILEGATE_CHAOS_FILES; about 20 kills, each in the middle of uploads and deliveries) are uploaded
through them: at the receiver, every file that became ACTIVE is told exactly once after
deduplication by `webhook-id` — none missing, none invented. Runs where the suite runs on PostgreSQL (the
multi-node configuration); elsewhere it is skipped.
"""

import json
import os
import random
import threading
import time
import urllib.error
import urllib.request
from collections import defaultdict

import pytest

from conftest import ALPHA_KEY, Server, own_database
from test_webhooks import FAST_RETRIES, Receiver, call

FILES = int(os.environ.get("FILEGATE_CHAOS_FILES", "600"))
CHAOS = {**FAST_RETRIES, "FILEGATE_WEBHOOK_TIMEOUT_SECONDS": "2", "FILEGATE_PROJECT_MAX_FILES": "100000"}

pytestmark = pytest.mark.skipif(
    not os.environ.get("FILEGATE_DATABASE_URL", "").startswith("postgres")
    or not os.environ.get("FILEGATE_TEST_POSTGRES_URL"),
    reason="two nodes share one database only on PostgreSQL",
)


class Cluster:
    """Two nodes; `kill_one` SIGKILLs one and starts its replacement."""

    def __init__(self):
        self.env = {**CHAOS, **own_database("webhooks_chaos")}
        self.nodes = [Server(self.env), Server(self.env)]
        self.lock = threading.Lock()
        self.kills = 0

    def url(self):
        with self.lock:
            return random.choice(self.nodes).url

    def kill_one(self):
        with self.lock:
            victim = random.randrange(2)
            self.nodes[victim].proc.kill()
            self.nodes[victim].proc.wait()
            self.kills += 1
        replacement = Server(self.env)
        with self.lock:
            self.nodes[victim] = replacement

    def stop(self):
        for node in self.nodes:
            node.stop()


def upload(cluster, index):
    """Uploads one small file, retrying on whichever node answers; the name of what it made, or None when
    every answer was lost (the file may still exist: the check below goes by the server's list)."""
    body = f"chaos file {index}\n".encode() * 10
    for _ in range(50):
        request = urllib.request.Request(
            f"{cluster.url()}/upload/v1beta/files?uploadType=media", data=body, method="POST",
            headers={"x-goog-api-key": ALPHA_KEY, "content-type": "text/plain"},
        )
        try:
            with urllib.request.urlopen(request, timeout=10) as response:
                return json.load(response)["file"]["name"]
        except (urllib.error.URLError, ConnectionError, TimeoutError, OSError):
            time.sleep(0.05)
    return None


def active_files(url):
    names, token = set(), ""
    while True:
        status, page = call(type("S", (), {"url": url}), "GET", f"/v1beta/files?pageSize=100&pageToken={token}")
        assert status == 200, page
        names.update(f["name"] for f in page.get("files", []) if f["state"] == "ACTIVE")
        token = page.get("nextPageToken")
        if not token:
            return names


def test_every_event_arrives_exactly_once_through_sigkills():
    receiver = Receiver()
    cluster = Cluster()
    try:
        status, hook = call(cluster.nodes[0], "POST", "/v1beta/webhooks",
                            body={"uri": receiver.url, "subscribedEvents": ["file.active"]})
        assert status == 200, hook
        done = threading.Event()

        def chaos():
            while not done.is_set():
                time.sleep(random.uniform(0.3, 1.5))
                if not done.is_set():
                    cluster.kill_one()

        killer = threading.Thread(target=chaos)
        killer.start()
        counter = iter(range(FILES))
        counter_lock = threading.Lock()

        def worker():
            while True:
                with counter_lock:
                    index = next(counter, None)
                if index is None:
                    return
                upload(cluster, index)

        workers = [threading.Thread(target=worker) for _ in range(8)]
        for w in workers:
            w.start()
        for w in workers:
            w.join()
        done.set()
        killer.join()
        assert cluster.kills >= 3, "the run was long enough to kill nodes several times"

        expected = active_files(cluster.url())
        assert len(expected) >= FILES * 0.95, len(expected)
        deadline = time.time() + 120
        while time.time() < deadline:
            with receiver.lock:
                deliveries = list(receiver.deliveries)
            told = defaultdict(set)
            for headers, body in deliveries:
                told[json.loads(body)["data"]["file"]["name"]].add(headers["webhook-id"])
            if set(told) >= expected:
                break
            time.sleep(0.5)
        from standardwebhooks.webhooks import Webhook
        verifier = Webhook(hook["newSigningSecret"])
        for headers, body in deliveries:
            verifier.verify(body, headers)
        missing = expected - set(told)
        invented = set(told) - expected
        twice = {name: ids for name, ids in told.items() if len(ids) > 1}
        assert not missing, f"{len(missing)} files were never told of"
        assert not invented, f"events of files that are not ACTIVE: {sorted(invented)[:5]}"
        assert not twice, f"files told of under two webhook-ids: {list(twice.items())[:3]}"
        print(f"{len(expected)} files, {cluster.kills} kills, {len(deliveries)} deliveries "
              f"({len(deliveries) - len(expected)} redelivered and deduplicated)")
    finally:
        cluster.stop()
        receiver.stop()
