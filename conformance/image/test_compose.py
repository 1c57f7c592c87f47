"""deploy/compose.yaml stays consistent with filegate: the settings its nodes get (with its secrets as files)
pass `filegate config check`, and the pieces the deployment guide relies on are there. (No container can be
started here; the two-node shape itself is tested by tests/integration/nodes.rs on PostgreSQL and S3.)"""

import os
import pathlib
import subprocess

import yaml

COMPOSE = pathlib.Path(__file__).resolve().parents[2] / "deploy" / "compose.yaml"


def test_the_nodes_settings_pass_config_check(tmp_path):
    compose = yaml.safe_load(COMPOSE.read_text())
    nodes = [name for name, service in compose["services"].items() if service.get("image") == "localhost/filegate:latest"]
    assert len(nodes) == 2, nodes
    node = compose["services"][nodes[0]]
    assert node["stop_grace_period"] == "40s" and node["environment"]["FILEGATE_SHUTDOWN_GRACE_SECONDS"] == "30"
    secrets = {
        "database-url": "postgres://filegate:secret@postgres/filegate",
        "api-keys": "team:0123456789abcdef0123",
        "bucket-secret": "minio-secret-key",
    }
    assert set(node["secrets"]) == set(secrets)
    env = {"PATH": os.environ["PATH"]}
    for name, value in node["environment"].items():
        if isinstance(value, str) and value.startswith("/run/secrets/"):
            secret = tmp_path / value.rsplit("/", 1)[1]
            secret.write_text(secrets[secret.name] + "\n")
            value = str(secret)
        env[name] = str(value)
    check = subprocess.run([os.environ["FILEGATE_BIN"], "config", "check"], env=env, capture_output=True, text=True)
    assert check.returncode == 0, check.stderr
    assert "PostgreSQL" in check.stdout and "s3://filegate/files" in check.stdout, check.stdout

    proxy = compose["configs"]["nginx"]["content"]
    for directive in ["client_max_body_size 0;", "proxy_request_buffering off;", "proxy_buffering off;"]:
        assert directive in proxy, f"the proxy must stream uploads and replies: {directive}"
    for node_name in nodes:
        assert f"server {node_name}:8080;" in proxy
    # Metrics have a port of their own, not published, and the proxy never forwards /metrics.
    metrics_port = node["environment"]["FILEGATE_METRICS_LISTEN"].rsplit(":", 1)[1]
    published = [port for service in compose["services"].values() for port in service.get("ports", [])]
    assert not any(metrics_port in str(port) for port in published), published
    assert "location = /metrics { return 404; }" in proxy
