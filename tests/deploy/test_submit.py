"""`vfl submit --kube`: the Job it builds is the chart's Job, valid for Kubernetes 1.35; the API calls are exercised
against a stand-in API server (no cluster exists here)."""
from __future__ import annotations

import ast
import json
import re
import socket
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from urllib.parse import parse_qs, urlparse

import kubernetes_validate.utils as kv_utils
import pytest
import yaml

from vfl.cli.main import main
from vfl.deploy import kube
from vfl.errors import ConfigError

from .conftest import BANK_A, BANK_B, CHART, EXAMPLES, KUBE_VERSION, REPO, TRAIN_JOB, one


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
    the `run` container with logs) and ends with `outcome` ("Complete" or "Failed"). `refuse` maps
    "VERB resource" (RBAC terms, e.g. "patch configmaps", "get pods/log") to an HTTP status it answers instead, with a
    Status body as the real API server words it.
    """

    def __init__(self, deployment: dict, service: dict, outcome: str = "Complete", existing: tuple = (),
                 refuse: dict[str, int] | None = None):
        self.deployment, self.service, self.outcome = deployment, service, outcome
        self.refuse = dict(refuse or {})
        self.rbac_seen: list[tuple[str, str, str]] = []   # (namespace, verb, resource) of every request
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

            def _refused(self, method: str) -> bool:
                path = urlparse(self.path).path
                stand_in.requests.append(f"{method} {path}")
                namespace, verb, resource = rbac_of(method, path)
                stand_in.rbac_seen.append((namespace, verb, resource))
                code = stand_in.refuse.get(f"{verb} {resource}")
                if code is None:
                    return False
                if method in ("POST", "PATCH"):
                    self._body()
                group = {"deployments": "apps", "jobs": "batch", "jobs/status": "batch"}.get(resource, "")
                message = (f'{resource} is forbidden: User "u" cannot {verb} resource "{resource}" in API group '
                           f'"{group}" in the namespace "{namespace}"')
                reason = {403: "Forbidden", 404: "NotFound", 500: "InternalError"}.get(code, "Unknown")
                self._send(code, {"kind": "Status", "apiVersion": "v1", "status": "Failure", "code": code,
                                  "reason": reason, "message": message})
                return True

            def do_GET(self):
                if self._refused("GET"):
                    return
                url = urlparse(self.path)
                self._send(*stand_in.get(url.path, parse_qs(url.query)))

            def do_POST(self):
                if self._refused("POST"):
                    return
                self._send(*stand_in.post(urlparse(self.path).path, self._body()))

            def do_PATCH(self):
                if self._refused("PATCH"):
                    return
                stand_in.patches.append((self.path, self._body()))
                self._send(200, stand_in.configmaps.get(self.path.rsplit("/", 1)[1], {}))

            def do_DELETE(self):
                if self._refused("DELETE"):
                    return
                stand_in.configmaps.pop(urlparse(self.path).path.rsplit("/", 1)[1], None)
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


def rbac_of(method: str, path: str) -> tuple[str, str, str]:
    """(namespace, RBAC verb, resource) of an API request path, e.g. GET .../namespaces/vfl/pods/p1/log."""
    m = re.fullmatch(r"/(?:api/v1|apis/[\w.]+/v1)/namespaces/([^/]+)/([^/]+)(?:/([^/]+)(?:/([^/]+))?)?", path)
    assert m, f"unexpected API path {path}"
    namespace, resource, name, sub = m.groups()
    if sub:
        resource = f"{resource}/{sub}"
    verb = {"POST": "create", "PATCH": "patch", "DELETE": "delete", "PUT": "update"}.get(method)
    if verb is None:
        verb = "get" if name else "list"
    return namespace, verb, resource


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


# ---------------------------------------------------------------------------------------------- refusals and outages

def submit_against(stand_in, lines: list[str]) -> int:
    return kube.submit(TRAIN_JOB.read_text(), "vfl", "bank-a", api(stand_in), out=lines.append, poll=0.01)


def test_refused_job_names_the_permission_and_removes_the_spec(chart):
    with StandInKubeApiServer(chart["deployment"], chart["service"], refuse={"create jobs": 403}) as stand_in:
        with pytest.raises(kube.KubeError) as info:
            submit_against(stand_in, [])
    msg = str(info.value)
    assert info.value.status == 403
    assert msg.startswith("creating job/bank-a-vfl-credit-default-1: the API server answered HTTP 403 Forbidden")
    assert 'cannot create resource "jobs"' in msg                                # the server's own message
    assert "Likely cause: RBAC" in msg and "'create' on jobs (API group batch) in namespace 'vfl'" in msg
    assert ("vfl", "delete", "configmaps") in stand_in.rbac_seen and not stand_in.configmaps   # cleaned up


def test_refused_cleanup_says_what_was_left_behind(chart):
    refuse = {"create jobs": 403, "delete configmaps": 403}
    with StandInKubeApiServer(chart["deployment"], chart["service"], refuse=refuse) as stand_in:
        with pytest.raises(kube.KubeError) as info:
            submit_against(stand_in, [])
    msg = str(info.value)
    assert "creating job/" in msg and "removing configmap/bank-a-vfl-credit-default-1 again" in msg
    assert "'delete' on configmaps (API group core)" in msg
    assert "kubectl -n vfl delete configmap bank-a-vfl-credit-default-1" in msg


def test_refused_listing_names_the_permission(chart):
    with StandInKubeApiServer(chart["deployment"], chart["service"], refuse={"list deployments": 403}) as stand_in:
        with pytest.raises(kube.KubeError) as info:
            submit_against(stand_in, [])
    assert "listing deployments" in str(info.value) and "HTTP 403" in str(info.value)
    assert "'list' on deployments (API group apps)" in str(info.value)
    assert not stand_in.configmaps and not stand_in.jobs


def test_refused_owner_reference_warns_and_follows(chart, capsys):
    with StandInKubeApiServer(chart["deployment"], chart["service"], refuse={"patch configmaps": 403}) as stand_in:
        lines: list[str] = []
        assert submit_against(stand_in, lines) == 0   # the Job runs either way
    [warning] = [line for line in lines if line.startswith("warning:")]
    assert "giving configmap/bank-a-vfl-credit-default-1 an owner reference to job/" in warning
    assert "HTTP 403" in warning and "'patch' on configmaps" in warning
    assert "kubectl -n vfl delete configmap bank-a-vfl-credit-default-1" in warning
    assert lines[-1].endswith("completed")


@pytest.mark.parametrize("refuse, fragment, permission", [
    ({"list pods": 403}, "listing its pods", "'list' on pods (API group core)"),
    ({"get jobs/status": 403}, "reading its status", "'get' on jobs/status (API group batch)"),
])
def test_refusals_while_following_say_the_job_keeps_running(chart, refuse, fragment, permission):
    with StandInKubeApiServer(chart["deployment"], chart["service"], refuse=refuse) as stand_in:
        with pytest.raises(kube.KubeError) as info:
            submit_against(stand_in, [])
    msg = str(info.value)
    assert msg.startswith("following job/bank-a-vfl-credit-default-1 (the Job itself keeps running; check it with "
                          "`kubectl -n vfl get job bank-a-vfl-credit-default-1`)")
    assert fragment in msg and "HTTP 403" in msg and permission in msg


def test_job_gone_while_following(chart):
    with StandInKubeApiServer(chart["deployment"], chart["service"], refuse={"get jobs/status": 404}) as stand_in:
        with pytest.raises(kube.KubeError) as info:
            submit_against(stand_in, [])
    assert "HTTP 404" in str(info.value) and "does not exist" in str(info.value)


def test_unreadable_logs_are_reported_and_skipped(chart, capsys):
    with StandInKubeApiServer(chart["deployment"], chart["service"], refuse={"get pods/log": 403}) as stand_in:
        lines: list[str] = []
        assert submit_against(stand_in, lines) == 0
    warnings = [line for line in lines if line.startswith("warning:")]
    assert len(warnings) == 2   # the init container and the run container
    assert "reading the logs of container wait-for-node in pod/job-pod-1" in warnings[0]
    assert "'get' on pods/log" in warnings[0]


def test_unreachable_api_server_while_following():
    from kubernetes import client
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]   # closed once the block ends: nothing listens there
    cfg = client.Configuration(host=f"http://127.0.0.1:{port}")
    cfg.retries = 0
    api_client = client.ApiClient(cfg)
    with pytest.raises(kube.KubeError) as info:
        kube.follow_job(client.CoreV1Api(api_client), client.BatchV1Api(api_client), "vfl", "bank-a-vfl-j1",
                        out=lambda _: None, poll=0.01)
    msg = str(info.value)
    assert msg.startswith("following job/bank-a-vfl-j1 (the Job itself keeps running")
    assert f"cannot reach the Kubernetes API server at http://127.0.0.1:{port}" in msg
    assert "Likely cause" in msg


def test_cli_reports_a_refusal_in_one_line(chart, tmp_path, capsys):
    with StandInKubeApiServer(chart["deployment"], chart["service"], refuse={"create configmaps": 403}) as stand_in:
        code = main(["submit", "--kube", "-n", "vfl", "--release", "bank-a", "--kubeconfig",
                     str(kubeconfig_for(stand_in, tmp_path)), str(TRAIN_JOB)])
    err = capsys.readouterr().err
    assert code == 1
    assert err.startswith("error: creating configmap/bank-a-vfl-credit-default-1: the API server answered HTTP 403")
    assert "Traceback" not in err


# ---------------------------------------------------------------------------------------------- namespace

def kubeconfig_for(stand_in, tmp_path, namespace: str | None = None) -> Path:
    context = {"cluster": "stand-in", "user": "u"}
    if namespace:
        context["namespace"] = namespace
    path = tmp_path / "kubeconfig"
    path.write_text(yaml.safe_dump({
        "apiVersion": "v1", "kind": "Config", "current-context": "stand-in",
        "clusters": [{"name": "stand-in", "cluster": {"server": stand_in.url}}],
        "users": [{"name": "u", "user": {"token": "t"}}],
        "contexts": [{"name": "stand-in", "context": context},
                     {"name": "elsewhere", "context": {"cluster": "stand-in", "user": "u", "namespace": "other"}},
                     {"name": "no-namespace", "context": {"cluster": "stand-in", "user": "u"}}]}))
    return path


@pytest.mark.parametrize("context_ns, args, expected", [
    ("bank-a-ml", [], "bank-a-ml"),                                 # the current context's namespace
    (None, [], "default"),                                          # none set: "default", as kubectl
    ("bank-a-ml", ["--context", "elsewhere"], "other"),             # the chosen context's namespace
    ("bank-a-ml", ["--context", "no-namespace"], "default"),
    ("bank-a-ml", ["--namespace", "vfl"], "vfl"),                   # explicit wins
])
def test_namespace_defaults_to_the_kubeconfig_context(chart, tmp_path, capsys, context_ns, args, expected):
    with StandInKubeApiServer(chart["deployment"], chart["service"]) as stand_in:
        kubeconfig = kubeconfig_for(stand_in, tmp_path, context_ns)
        code = main(["submit", "--kube", "--release", "bank-a", "--kubeconfig", str(kubeconfig), "--no-follow",
                     *args, str(TRAIN_JOB)])
    assert code == 0, capsys.readouterr().err
    assert {ns for ns, _, _ in stand_in.rbac_seen} == {expected}
    [job] = stand_in.jobs.values()
    assert job["metadata"]["namespace"] == expected
    assert f"in namespace {expected} " in capsys.readouterr().err


def test_namespace_in_a_pod_is_the_service_accounts(tmp_path, monkeypatch):
    ns_file = tmp_path / "namespace"
    ns_file.write_text("bank-a-jobs\n")
    monkeypatch.setenv("KUBERNETES_SERVICE_HOST", "10.0.0.1")
    monkeypatch.setattr(kube, "SERVICE_ACCOUNT_NAMESPACE", str(ns_file))
    assert kube.default_namespace() == "bank-a-jobs"
    monkeypatch.setattr(kube, "SERVICE_ACCOUNT_NAMESPACE", str(tmp_path / "missing"))
    assert kube.default_namespace() == "default"


def test_unknown_context_is_named(chart, tmp_path):
    with StandInKubeApiServer(chart["deployment"], chart["service"]) as stand_in:
        kubeconfig = kubeconfig_for(stand_in, tmp_path)
    with pytest.raises(kube.KubeError, match="kubeconfig: no context named 'nowhere'"):
        kube.default_namespace(str(kubeconfig), "nowhere")


# ---------------------------------------------------------------------------------------------- RBAC

def api_calls_in_kube_py() -> set[str]:
    """Every Kubernetes client method kube.py calls, directly or by name through its _call helper."""
    tree = ast.parse((REPO / "vfl" / "deploy" / "kube.py").read_text())
    pattern = re.compile(r"^(list|read|create|patch|delete|replace)_namespaced_\w+$")
    names = {n.attr for n in ast.walk(tree) if isinstance(n, ast.Attribute) and pattern.match(n.attr)}
    names |= {n.value for n in ast.walk(tree) if isinstance(n, ast.Constant) and isinstance(n.value, str)
              and pattern.match(n.value)}
    return names


def test_rbac_table_covers_every_api_call():
    from kubernetes import client
    assert api_calls_in_kube_py() == set(kube.RBAC_RULES)
    classes = {"": client.CoreV1Api, "apps": client.AppsV1Api, "batch": client.BatchV1Api}
    for method, (group, _, _) in kube.RBAC_RULES.items():
        assert hasattr(classes[group], method), f"{method} is not a {classes[group].__name__} call"


def granted_by_role() -> set[tuple[str, str, str]]:
    role = yaml.safe_load((EXAMPLES / "submitter-role.yaml").read_text())
    kv_utils.validate(role, KUBE_VERSION, strict=True)
    return {(g, r, v) for rule in role["rules"] for g in rule["apiGroups"] for r in rule["resources"]
            for v in rule["verbs"]}


def test_example_role_grants_exactly_what_submit_needs():
    assert granted_by_role() == set(kube.RBAC_RULES.values())


def test_docs_list_every_permission():
    docs = (REPO / "docs" / "deploy.md").read_text()
    section = docs[docs.index("The submitter needs these RBAC permissions"):]
    section = section[:section.index("\n\n", section.index("* `list` on `pods`"))]
    for _, resource, verb in kube.RBAC_RULES.values():   # e.g. "`create`, `patch` and `delete` on `configmaps`"
        assert re.search(rf"`{verb}`(?:(?!on `)[^;\n])*on `{re.escape(resource)}`", section), \
            f"docs/deploy.md RBAC list lacks {verb} on {resource}"
    assert "examples/bank-credit/k8s/submitter-role.yaml" in section


def test_every_request_a_submission_makes_is_granted(chart):
    """The requests the stand-in saw, in RBAC terms, across a full run and the clean-up path."""
    seen = set()
    for refuse in ({}, {"create jobs": 403}):
        with StandInKubeApiServer(chart["deployment"], chart["service"], refuse=refuse) as stand_in:
            try:
                submit_against(stand_in, [])
            except kube.KubeError:
                pass
        seen |= {(verb, resource) for _, verb, resource in stand_in.rbac_seen}
    granted = {(v, r) for _, r, v in granted_by_role()}
    assert seen <= granted, seen - granted
    assert ("delete", "configmaps") in seen
