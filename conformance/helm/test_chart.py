"""The Helm chart (deploy/helm/filegate), without a cluster: linted and rendered by Helm's own engine with its
defaults and with each ci/*-values.yaml, every object validated strictly against Kubernetes' schemas (1.32 and
the newest kubernetes-validate knows), and the chart's promises asserted on what it renders."""

import os
import pathlib
import socket
import subprocess
import tempfile
import time
import urllib.request

import kubernetes_validate
import pytest
import yaml
from helm_python.chart import Chart, lint

CHART = pathlib.Path(__file__).resolve().parents[2] / "deploy" / "helm" / "filegate"
VALUES = {"defaults": {}} | {p.name: yaml.safe_load(p.read_text()) for p in sorted((CHART / "ci").glob("*-values.yaml"))}
KUBERNETES = ["1.32.0", kubernetes_validate.latest_version()]
SECRET_WORDS = ("KEY", "SECRET", "TOKEN", "PASSWORD", "DATABASE_URL")
POD_KINDS = {"Deployment", "Job"}


def render(values):
    with Chart.load(CHART) as chart:
        manifests = chart.render(values=values, name="files", namespace="prod", is_install=True)
    return [doc for text in manifests.values() for doc in yaml.safe_load_all(text) if doc]


@pytest.fixture(scope="module", params=sorted(VALUES))
def rendered(request):
    return request.param, render(VALUES[request.param])


def of_kind(objects, kind):
    return [o for o in objects if o["kind"] == kind]


def pod_spec(obj):
    return obj["spec"]["template"]["spec"]


def containers(obj):
    spec = pod_spec(obj)
    return spec.get("initContainers", []) + spec["containers"]


def test_the_chart_lints_clean_and_the_image_is_its_app_version():
    with Chart.load(CHART) as chart:
        assert chart.metadata["apiVersion"] == "v2"
        assert chart.values["image"]["tag"] == "", "the tag follows appVersion"
        app_version = chart.metadata["appVersion"]
    cargo = (CHART.parents[2] / "Cargo.toml").read_text()
    assert f'version = "{app_version}"' in cargo, "appVersion is the release"
    for name, values in VALUES.items():
        report = lint(CHART, values, strict=True)
        assert not report["errors"], (name, report)
        assert not [m for m in report["messages"] if m["severity"] >= 2], (name, report)
    for obj in render({}):
        if obj["kind"] in POD_KINDS:
            for c in containers(obj):
                assert c["image"] == f"localhost/filegate:{app_version}", c["image"]


def test_every_object_is_valid_for_kubernetes(rendered):
    name, objects = rendered
    for obj in objects:
        if obj["kind"] == "ServiceMonitor":  # a CRD (Prometheus operator): checked below, not in Kubernetes' schemas
            continue
        for version in KUBERNETES:
            kubernetes_validate.validate(obj, version, strict=True)


def test_several_nodes_share_postgresql_and_a_bucket(rendered):
    name, objects = rendered
    [deployment] = of_kind(objects, "Deployment")
    hpas = of_kind(objects, "HorizontalPodAutoscaler")
    if hpas:
        assert "replicas" not in deployment["spec"], "the HPA owns the count"
        assert hpas[0]["spec"]["minReplicas"] >= 2
        assert hpas[0]["spec"]["scaleTargetRef"]["name"] == deployment["metadata"]["name"]
    else:
        assert deployment["spec"]["replicas"] >= 2
    env = {e["name"]: e for e in deployment["spec"]["template"]["spec"]["containers"][0]["env"]}
    assert env["FILEGATE_BLOB_STORE"]["value"].split("://")[0] in ("s3", "gs", "az")
    assert env["FILEGATE_DATABASE_URL_FILE"]["value"].startswith("/run/secrets/")
    assert "FILEGATE_DATABASE_URL" not in env


def test_several_nodes_on_a_local_disk_are_refused():
    for store in ("", "file:///data/blobs", "/data"):
        with pytest.raises(Exception, match="bucket every node shares"):
            render({"blobStore": store})
    with pytest.raises(Exception, match="looks secret"):
        render({"settings": {"FILEGATE_GEMINI_API_KEY": "AIza"}})
    with pytest.raises(Exception):
        render({"replicaCount": "two"})  # the schema types every value
    with pytest.raises(Exception):
        render({"image": {"repository": "x", "tag": "latest"}})


def test_every_container_is_locked_down(rendered):
    name, objects = rendered
    for obj in [o for o in objects if o["kind"] in POD_KINDS]:
        spec = pod_spec(obj)
        assert spec["automountServiceAccountToken"] is False
        for host in ("hostNetwork", "hostPID", "hostIPC"):
            assert spec.get(host, False) is False
        assert spec["securityContext"]["runAsNonRoot"] is True
        writable = set()
        for c in containers(obj):
            sc = c["securityContext"]
            assert sc["runAsNonRoot"] is True and sc["runAsUser"] > 0, (obj["kind"], sc)
            assert sc["readOnlyRootFilesystem"] is True
            assert sc["allowPrivilegeEscalation"] is False
            assert sc.get("privileged", False) is False
            assert sc["capabilities"]["drop"] == ["ALL"] and not sc["capabilities"].get("add")
            assert c["resources"]["requests"]["cpu"] and c["resources"]["requests"]["memory"]
            assert c["resources"]["limits"]["memory"]
            writable |= {m["name"] for m in c["volumeMounts"] if not m.get("readOnly")}
        empty_dirs = {v["name"] for v in spec["volumes"] if "emptyDir" in v}
        assert writable == empty_dirs == {"data"}, "an emptyDir only where the server writes (FILEGATE_DATA_DIR)"


def test_no_secret_is_inline_and_every_file_setting_is_a_mounted_secret(rendered):
    name, objects = rendered
    assert not of_kind(objects, "Secret") and not of_kind(objects, "ConfigMap")
    for obj in [o for o in objects if o["kind"] in POD_KINDS]:
        spec = pod_spec(obj)
        secret_mounts = {}
        volumes = {v["name"]: v for v in spec["volumes"]}
        for c in containers(obj):
            assert "command" not in c and all("://" not in a and "@" not in a for a in c.get("args", []))
            for m in c["volumeMounts"]:
                if "secret" in volumes[m["name"]]:
                    secret = volumes[m["name"]]["secret"]
                    for item in secret["items"]:
                        secret_mounts[f"{m['mountPath']}/{item['path']}"] = secret["secretName"]
            for e in c["env"]:
                value = e.get("value")
                if value is None:
                    assert set(e["valueFrom"]) == {"secretKeyRef"}, e
                    continue
                assert "@" not in value, f"{e['name']} carries credentials inline"
                if e["name"].endswith("_FILE"):
                    assert value in secret_mounts, f"{e['name']}={value} is not a mounted Secret's file"
                else:
                    assert not any(w in e["name"] for w in SECRET_WORDS), f"{e['name']} is a secret, given inline"


def test_probes_ask_what_the_server_serves_and_it_drains_before_it_is_killed(rendered, served_paths):
    name, objects = rendered
    [deployment] = of_kind(objects, "Deployment")
    spec = pod_spec(deployment)
    [node] = spec["containers"]
    env = {e["name"]: e.get("value") for e in node["env"]}
    assert node["livenessProbe"]["httpGet"]["path"] == "/healthz"
    assert node["readinessProbe"]["httpGet"]["path"] == "/readyz"
    for probe in ("livenessProbe", "readinessProbe", "startupProbe"):
        get = node[probe]["httpGet"]
        assert get["path"] in served_paths, get
        port = next(p for p in node["ports"] if p["name"] == get["port"])
        assert port["containerPort"] == int(env["FILEGATE_LISTEN"].rsplit(":", 1)[1]), "the public port"
    assert spec["terminationGracePeriodSeconds"] > int(env["FILEGATE_SHUTDOWN_GRACE_SECONDS"])


def test_metrics_stay_off_the_public_service_and_ingress(rendered):
    name, objects = rendered
    [deployment] = of_kind(objects, "Deployment")
    [node] = pod_spec(deployment)["containers"]
    env = {e["name"]: e.get("value") for e in node["env"]}
    metrics_port = int(env["FILEGATE_METRICS_LISTEN"].rsplit(":", 1)[1])
    services = {s["metadata"]["name"]: s for s in of_kind(objects, "Service")}
    public = services[deployment["metadata"]["name"]]
    assert [p["targetPort"] for p in public["spec"]["ports"]] == ["http"]
    [metrics] = [s for s in services.values() if s is not public]
    assert [p["targetPort"] for p in metrics["spec"]["ports"]] == ["metrics"]
    assert next(p for p in node["ports"] if p["name"] == "metrics")["containerPort"] == metrics_port
    for ingress in of_kind(objects, "Ingress"):
        for rule in ingress["spec"]["rules"]:
            for path in rule["http"]["paths"]:
                assert path["backend"]["service"]["name"] == public["metadata"]["name"]
        host = ingress["spec"]["rules"][0]["host"]
        scheme = "https" if ingress["spec"].get("tls") else "http"
        assert env["FILEGATE_PUBLIC_URL"] == f"{scheme}://{host}", "the public URL follows the Ingress"
    if not of_kind(objects, "Ingress"):
        assert env["FILEGATE_PUBLIC_URL"] == f"http://{public['metadata']['name']}.prod.svc:8080"
    for monitor in of_kind(objects, "ServiceMonitor"):
        assert monitor["apiVersion"] == "monitoring.coreos.com/v1"
        selected = monitor["spec"]["selector"]["matchLabels"]
        assert all(metrics["metadata"]["labels"].get(k) == v for k, v in selected.items())
        assert not all(public["metadata"]["labels"].get(k) == v for k, v in selected.items())
        assert [e["port"] for e in monitor["spec"]["endpoints"]] == ["metrics"]


def test_migrations_run_before_the_rollout_with_the_nodes_settings(rendered):
    name, objects = rendered
    [deployment] = of_kind(objects, "Deployment")
    [job] = of_kind(objects, "Job")
    hooks = job["metadata"]["annotations"]["helm.sh/hook"].split(",")
    assert sorted(hooks) == ["pre-install", "pre-upgrade"]
    [migrate] = pod_spec(job)["containers"]
    [node] = pod_spec(deployment)["containers"]
    assert migrate["args"] == ["migrate"] and migrate["image"] == node["image"]
    node_env = {e["name"]: e for e in node["env"]}
    for e in migrate["env"]:
        if e["name"].startswith(("FILEGATE_DATABASE", "FILEGATE_BLOB")):
            assert node_env[e["name"]] == e, e["name"]
    assert "serviceAccountName" not in pod_spec(job), "the hook needs nothing the chart creates"
    job_labels = job["spec"]["template"]["metadata"]["labels"]
    for selector in [deployment["spec"]["selector"]["matchLabels"]] + [
        s["spec"]["selector"] for s in of_kind(objects, "Service")
    ]:
        assert not all(job_labels.get(k) == v for k, v in selector.items()), "the Job's pod is no node"


def test_the_disruption_budget_allows_an_eviction(rendered):
    name, objects = rendered
    [deployment] = of_kind(objects, "Deployment")
    [pdb] = of_kind(objects, "PodDisruptionBudget")
    assert pdb["spec"]["selector"]["matchLabels"] == deployment["spec"]["selector"]["matchLabels"]
    replicas = deployment["spec"].get("replicas") or of_kind(objects, "HorizontalPodAutoscaler")[0]["spec"]["minReplicas"]
    def count(value):  # an integer, or a percentage of the replicas (rounded up, as Kubernetes does)
        return -(-replicas * int(value[:-1]) // 100) if isinstance(value, str) else value

    if "maxUnavailable" in pdb["spec"]:
        assert count(pdb["spec"]["maxUnavailable"]) >= 1
    else:
        assert count(pdb["spec"]["minAvailable"]) < replicas


def test_references_resolve(rendered):
    name, objects = rendered
    names = {(o["kind"], o["metadata"]["name"]) for o in objects}
    [deployment] = of_kind(objects, "Deployment")
    spec = pod_spec(deployment)
    if ("ServiceAccount", spec["serviceAccountName"]) not in names:
        assert VALUES[name].get("serviceAccount", {}).get("create") is False
    for obj in [o for o in objects if o["kind"] in POD_KINDS]:
        volumes = {v["name"] for v in pod_spec(obj)["volumes"]}
        for c in containers(obj):
            assert {m["name"] for m in c["volumeMounts"]} <= volumes
    for svc in of_kind(objects, "Service"):
        template_labels = deployment["spec"]["template"]["metadata"]["labels"]
        assert all(template_labels.get(k) == v for k, v in svc["spec"]["selector"].items())
        ports = {p["name"] for p in spec["containers"][0]["ports"]}
        assert {p["targetPort"] for p in svc["spec"]["ports"]} <= ports


@pytest.fixture(scope="module")
def served_paths():
    """The paths the probes may ask, checked against the real server (FILEGATE_BIN): each answers 200."""
    binary = os.environ.get("FILEGATE_BIN")
    if not binary:
        pytest.fail("FILEGATE_BIN names the filegate binary (scripts/test.sh sets it)")
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    with tempfile.TemporaryDirectory() as data:
        env = dict(os.environ, FILEGATE_DATA_DIR=data, FILEGATE_LISTEN=f"127.0.0.1:{port}", FILEGATE_API_KEYS="probe:probe-key-0123456789")
        server = subprocess.Popen([binary, "serve"], env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        try:
            served = set()
            for path in ("/healthz", "/readyz"):
                deadline = time.monotonic() + 30
                while True:
                    try:
                        with urllib.request.urlopen(f"http://127.0.0.1:{port}{path}", timeout=2) as answer:
                            if answer.status == 200:
                                served.add(path)
                                break
                    except OSError:
                        pass
                    assert time.monotonic() < deadline, f"{path} never answered 200"
                    time.sleep(0.1)
            return served
        finally:
            server.terminate()
            server.wait(timeout=30)
