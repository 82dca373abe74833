"""`vfl submit --kube`: the Job it builds is the chart's Job, valid for Kubernetes 1.35; the API calls are exercised
against a stand-in API server (no cluster exists here)."""
from __future__ import annotations

import json
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import parse_qs, urlparse

import kubernetes_validate.utils as kv_utils
import pytest
import yaml

from vfl.cli.main import main
from vfl.deploy import kube
from vfl.errors import ConfigError

from .conftest import BANK_A, BANK_B, CHART, KUBE_VERSION, TRAIN_JOB, one


@pytest.fixture(scope="module")
def chart(helm):
    node = helm.template("bank-a", values=[BANK_A])
    with_job = helm.template("bank-a", values=[BANK_A], sets=["job.enabled=true"],
                             set_files=[f"job.spec={TRAIN_JOB}"])
    return {"deployment": one(node, "Deployment"), "service": one(node, "Service"),
            "job": one(with_job, "Job"), "job_configmap": one(with_job, "ConfigMap", "job"),
            "passive": one(helm.template("bank-b", values=[BANK_B]), "Deployment")}


def build(chart, text=None):
    text = text or TRAIN_JOB.read_text()
    job_id, text = kube.prepare_spec(text)
    return kube.build_job_objects(text, job_id, "vfl", chart["deployment"], chart["service"])


def test_built_job_is_the_chart_job(chart):
    configmap, job = build(chart)
    expected = chart["job"]
    assert job["metadata"]["name"] == expected["metadata"]["name"] == configmap["metadata"]["name"]
    assert job["spec"] == expected["spec"]   # pod template, containers, volumes, security, limits: identical
    assert yaml.safe_load(configmap["data"]["job.yaml"]) == yaml.safe_load(chart["job_configmap"]["data"]["job.yaml"])
    helm_only = {"helm.sh/chart", "app.kubernetes.io/version", "app.kubernetes.io/managed-by"}
    chart_labels = {k: v for k, v in expected["metadata"]["labels"].items() if k not in helm_only}
    assert {k: v for k, v in job["metadata"]["labels"].items() if k != "app.kubernetes.io/managed-by"} == chart_labels
    assert job["metadata"]["labels"]["app.kubernetes.io/managed-by"] == "vfl-submit"


def test_built_objects_pass_kubernetes_validate_strict(chart):
    for obj in build(chart):
        kv_utils.validate(obj, KUBE_VERSION, strict=True)


def test_defaults_equal_the_chart_values():
    job_values = yaml.safe_load((CHART / "values.yaml").read_text())["job"]
    assert job_values["backoffLimit"] == kube.DEFAULT_BACKOFF_LIMIT
    assert job_values["ttlSecondsAfterFinished"] == kube.DEFAULT_TTL_SECONDS
    assert job_values["waitSeconds"] == kube.DEFAULT_WAIT_SECONDS
    assert job_values["resources"] == kube.DEFAULT_RESOURCES


def test_spec_without_job_id_gets_one(chart):
    text = "\n".join(line for line in TRAIN_JOB.read_text().splitlines() if not line.startswith("job_id"))
    job_id, new_text = kube.prepare_spec(text)
    assert kube.JOB_ID_PATTERN.match(job_id) and yaml.safe_load(new_text)["job_id"] == job_id
    configmap, job = build(chart, text)
    assert job["metadata"]["name"].startswith("bank-a-vfl-job-")


@pytest.mark.parametrize("change, key", [
    ({"job_id": "Credit_1"}, "job_id"),           # valid for the node, not as a Kubernetes name
    ({"train": {"epoch": 3}}, "train.epoch"),
    ({"active": "bank-z"}, "active"),
])
def test_bad_specs_name_the_key(change, key):
    data = {**yaml.safe_load(TRAIN_JOB.read_text()), **change}
    with pytest.raises(ConfigError) as info:
        kube.prepare_spec(yaml.safe_dump(data), source="job spec j.yaml")
    assert f"{key}:" in str(info.value) and "j.yaml" in str(info.value)


def test_pick_node_refuses_the_wrong_release(chart):
    with pytest.raises(kube.KubeError, match="helm list -n vfl"):
        kube.pick_node([], "bank-a", "vfl", "bank-a")
    with pytest.raises(kube.KubeError, match="'passive': submit jobs at the active party"):
        kube.pick_node([chart["passive"]], "bank-b", "vfl", "bank-a")
    with pytest.raises(ConfigError, match="active:"):
        kube.pick_node([chart["deployment"]], "bank-a", "vfl", "bank-b")
    assert kube.pick_node([chart["deployment"]], "bank-a", "vfl", "bank-a") is chart["deployment"]


# ---------------------------------------------------------------------------------------------- stand-in API server

class StandInKubeApiServer:
    """A stand-in for the Kubernetes API server: just the endpoints `vfl submit --kube` calls, in memory.

    It is not Kubernetes: it records what the client creates and plays back a Job that runs (init container, then
    the `run` container with logs) and ends with `outcome` ("Complete" or "Failed").
    """

    def __init__(self, deployment: dict, service: dict, outcome: str = "Complete", existing: tuple = ()):
        self.deployment, self.service, self.outcome = deployment, service, outcome
        self.configmaps: dict[str, dict] = {name: {} for name in existing}
        self.jobs: dict[str, dict] = {}
        self.patches: list[tuple[str, dict]] = []
        self.status_reads = 0
        self.requests: list[str] = []
        self.selectors: list[tuple[str, str]] = []
        stand_in = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args):
                pass

            def _send(self, code: int, body, content_type="application/json"):
                data = body.encode() if isinstance(body, str) else json.dumps(body).encode()
                self.send_response(code)
                self.send_header("Content-Type", content_type)
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            def _body(self):
                return json.loads(self.rfile.read(int(self.headers["Content-Length"])) or b"{}")

            def do_GET(self):
                url = urlparse(self.path)
                query = parse_qs(url.query)
                stand_in.requests.append(f"GET {url.path}")
                self._send(*stand_in.get(url.path, query))

            def do_POST(self):
                stand_in.requests.append(f"POST {self.path}")
                self._send(*stand_in.post(urlparse(self.path).path, self._body()))

            def do_PATCH(self):
                stand_in.requests.append(f"PATCH {self.path}")
                stand_in.patches.append((self.path, self._body()))
                self._send(200, stand_in.configmaps.get(self.path.rsplit("/", 1)[1], {}))

            def do_DELETE(self):
                stand_in.requests.append(f"DELETE {self.path}")
                self._send(200, {"kind": "Status", "apiVersion": "v1", "status": "Success"})

        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.thread = threading.Thread(target=self.httpd.serve_forever, daemon=True)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.httpd.server_address[1]}"

    def __enter__(self):
        self.thread.start()
        return self

    def __exit__(self, *exc):
        self.httpd.shutdown()
        self.httpd.server_close()

    def get(self, path: str, query: dict):
        if "labelSelector" in query:
            self.selectors.append((path.rsplit("/", 1)[1], query["labelSelector"][0]))
        if path.endswith("/deployments"):
            return 200, {"apiVersion": "apps/v1", "kind": "DeploymentList", "metadata": {}, "items": [self.deployment]}
        if path.endswith("/services"):
            return 200, {"apiVersion": "v1", "kind": "ServiceList", "metadata": {}, "items": [self.service]}
        if path.endswith("/pods"):
            assert query["labelSelector"][0].startswith(f"{kube.JOB_NAME_LABEL}=")
            return 200, {"apiVersion": "v1", "kind": "PodList", "metadata": {}, "items": [self.pod()]}
        if path.endswith("/log"):
            container = query["container"][0]
            assert query.get("follow") == ["true"]
            text = ('{"test": {"auc": 0.9}}\n' if container == "run" else "all checks passed\n")
            return 200, f"[{container}] " + text
        if path.endswith("/status"):
            self.status_reads += 1
            conditions = []
            if self.status_reads >= 2:
                conditions = [{"type": self.outcome, "status": "True", "reason": "BackoffLimitExceeded"
                               if self.outcome == "Failed" else None}]
            name = path.split("/")[-2]
            return 200, {**self.jobs[name], "status": {"conditions": conditions}}
        return 404, {"kind": "Status", "apiVersion": "v1", "status": "Failure", "code": 404}

    def post(self, path: str, body: dict):
        name = body["metadata"]["name"]
        if path.endswith("/configmaps"):
            if name in self.configmaps:
                return 409, {"kind": "Status", "apiVersion": "v1", "status": "Failure", "code": 409,
                             "reason": "AlreadyExists", "message": f'configmaps "{name}" already exists'}
            self.configmaps[name] = body
        else:
            body = {**body, "metadata": {**body["metadata"], "uid": "0b9e-stand-in-uid"}}
            self.jobs[name] = body
        return 201, body

    def pod(self) -> dict:
        def status(name: str) -> dict:
            return {"name": name, "ready": False, "restartCount": 0, "image": "vfl", "imageID": "",
                    "state": {"terminated": {"exitCode": 0}}}
        return {"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "job-pod-1"},
                "status": {"phase": "Succeeded", "initContainerStatuses": [status("wait-for-node")],
                           "containerStatuses": [status("run")]}}


def api(stand_in):
    from kubernetes import client
    cfg = client.Configuration(host=stand_in.url)
    return client.ApiClient(cfg)


def test_submit_creates_and_follows_the_job(chart, capsys):
    with StandInKubeApiServer(chart["deployment"], chart["service"]) as stand_in:
        lines: list[str] = []
        code = kube.submit(TRAIN_JOB.read_text(), "vfl", "bank-a", api(stand_in), out=lines.append, poll=0.01)
    assert code == 0
    expected_cm, expected_job = build(chart)
    name = expected_job["metadata"]["name"]
    assert stand_in.configmaps[name] == expected_cm and stand_in.jobs[name]["spec"] == expected_job["spec"]
    [(path, patch)] = stand_in.patches
    assert path.endswith(f"/namespaces/vfl/configmaps/{name}")
    assert patch["metadata"]["ownerReferences"][0] == {"apiVersion": "batch/v1", "kind": "Job", "name": name,
                                                       "uid": "0b9e-stand-in-uid"}
    node_selector = "app.kubernetes.io/instance=bank-a,app.kubernetes.io/component=node"
    assert ("deployments", node_selector) in stand_in.selectors and ("services", node_selector) in stand_in.selectors
    assert ("pods", f"batch.kubernetes.io/job-name={name}") in stand_in.selectors
    out = capsys.readouterr().out
    assert "[wait-for-node] all checks passed" in out and '[run] {"test": {"auc": 0.9}}' in out
    assert lines[0].startswith(f"created job/{name}") and lines[-1] == f"job/{name} completed"


def test_submit_reports_a_failed_job(chart, capsys):
    with StandInKubeApiServer(chart["deployment"], chart["service"], outcome="Failed") as stand_in:
        lines: list[str] = []
        assert kube.submit(TRAIN_JOB.read_text(), "vfl", "bank-a", api(stand_in), out=lines.append, poll=0.01) == 1
    assert "failed: BackoffLimitExceeded" in lines[-1]


def test_submit_refuses_a_reused_job_id(chart):
    name = "bank-a-vfl-credit-default-1"
    with StandInKubeApiServer(chart["deployment"], chart["service"], existing=(name,)) as stand_in:
        with pytest.raises(kube.KubeError) as info:
            kube.submit(TRAIN_JOB.read_text(), "vfl", "bank-a", api(stand_in), out=lambda _: None, poll=0.01)
    assert "job_id 'credit-default-1'" in str(info.value) and "choose a new job_id" in str(info.value)
    assert not stand_in.jobs


def test_cli_submit_through_a_kubeconfig(chart, tmp_path, capsys):
    with StandInKubeApiServer(chart["deployment"], chart["service"]) as stand_in:
        kubeconfig = tmp_path / "kubeconfig"
        kubeconfig.write_text(yaml.safe_dump({
            "apiVersion": "v1", "kind": "Config", "current-context": "stand-in",
            "clusters": [{"name": "stand-in", "cluster": {"server": stand_in.url}}],
            "users": [{"name": "u", "user": {"token": "t"}}],
            "contexts": [{"name": "stand-in", "context": {"cluster": "stand-in", "user": "u"}}]}))
        code = main(["submit", "--kube", "--namespace", "vfl", "--release", "bank-a", "--kubeconfig", str(kubeconfig),
                     "--no-follow", str(TRAIN_JOB)])
    assert code == 0 and stand_in.jobs
    assert "kubectl -n vfl logs -f job/bank-a-vfl-credit-default-1" in capsys.readouterr().err
