"""`vfl submit --kube`: create the training Job that the chart's job template renders, through the Kubernetes API.

The Job is derived from the release's node Deployment (found by its labels), so it always uses the image, the
security context and the config/TLS/CA volumes the node itself uses, and the Service for the address:

* a ConfigMap ``<fullname>-<job_id>`` holding ``job.yaml`` (the job spec), owned by the Job once the Job exists;
* a Job ``<fullname>-<job_id>`` whose init container waits for the node (``vfl doctor --self --wait``) and whose
  container runs ``vfl run /etc/vfl/job/job.yaml --config /etc/vfl/config/node.yaml --address <service>``.

`build_job_objects` is pure (tests compare it with the chart's rendered Job); `submit` and `follow_job` only make
the API calls.
"""
from __future__ import annotations

import re
import sys
import time
import uuid
from typing import Any, Callable

import yaml

from vfl.errors import ConfigError, VflError

CONFIG_FILE = "/etc/vfl/config/node.yaml"
JOB_SPEC_DIR = "/etc/vfl/job"
COMMON_VOLUMES = ("config", "tls", "ca", "tmp")  # what a Job container mounts of the node's volumes
NODE_CONTAINER = "node"
WAIT_CONTAINER = "wait-for-node"
RUN_CONTAINER = "run"

LABEL_NAME = "app.kubernetes.io/name"
LABEL_INSTANCE = "app.kubernetes.io/instance"
LABEL_COMPONENT = "app.kubernetes.io/component"
LABEL_MANAGED_BY = "app.kubernetes.io/managed-by"
LABEL_PARTY = "vfl.dev/party"
LABEL_ROLE = "vfl.dev/role"
LABEL_JOB_ID = "vfl.dev/job-id"
JOB_NAME_LABEL = "batch.kubernetes.io/job-name"

# The chart's defaults for job.* (charts/vfl-party/values.yaml); a test keeps them equal.
DEFAULT_BACKOFF_LIMIT = 0
DEFAULT_TTL_SECONDS = 604800
DEFAULT_WAIT_SECONDS = 300
DEFAULT_RESOURCES = {"requests": {"cpu": "100m", "memory": "256Mi"}, "limits": {"cpu": "500m", "memory": "512Mi"}}

JOB_ID_PATTERN = re.compile(r"^[a-z0-9]([a-z0-9-]{0,38}[a-z0-9])?$")


class KubeError(VflError):
    """The cluster refused or lacks something `vfl submit --kube` needs; the message names the object."""

    def __init__(self, message: str, status: int | None = None):
        super().__init__(message)
        self.status = status   # the API server's HTTP status, when it answered


# ---------------------------------------------------------------------------------------------- pure part

def prepare_spec(text: str, source: str = "job spec") -> tuple[str, str]:
    """Validate a job spec for a Kubernetes Job; returns (job_id, spec text), adding a job_id when there is none."""
    from vfl.job.spec import parse_job_spec, spec_mapping
    data = spec_mapping(text, source)
    if not data.get("job_id"):
        job_id = f"job-{uuid.uuid4().hex[:12]}"
        text = f"job_id: {job_id}\n" + text
        data["job_id"] = job_id
    try:
        spec = parse_job_spec(data)
    except ConfigError as exc:
        raise ConfigError(f"{source}: {exc}") from None
    if not JOB_ID_PATTERN.match(spec.job_id):
        raise ConfigError(f"{source}: job_id: {spec.job_id!r} must be 1-40 lowercase letters, digits or '-' "
                          "to name a Kubernetes Job")
    return spec.job_id, text


def job_name(fullname: str, job_id: str) -> str:
    return f"{fullname}-{job_id}"[:63].rstrip("-")


def _container(pod_spec: dict, name: str, where: str) -> dict:
    for c in pod_spec.get("containers") or []:
        if c.get("name") == name:
            return c
    raise KubeError(f"{where}: no container named {name!r}; was it installed with charts/vfl-party?")


def grpc_service_port(service: dict) -> int:
    for port in service.get("spec", {}).get("ports") or []:
        if port.get("name") == "grpc":
            return int(port["port"])
    raise KubeError(f"service/{service['metadata']['name']}: no port named 'grpc'")


def build_job_objects(spec_text: str, job_id: str, namespace: str, deployment: dict, service: dict, *,
                      resources: dict | None = None, backoff_limit: int = DEFAULT_BACKOFF_LIMIT,
                      ttl_seconds: int = DEFAULT_TTL_SECONDS,
                      wait_seconds: int = DEFAULT_WAIT_SECONDS) -> tuple[dict, dict]:
    """The job-spec ConfigMap and the Job, from the node's Deployment and Service (camelCase API dicts)."""
    fullname = deployment["metadata"]["name"]
    where = f"deployment/{fullname}"
    template = deployment["spec"]["template"]
    pod = template["spec"]
    node = _container(pod, NODE_CONTAINER, where)
    selector = dict(deployment["spec"]["selector"]["matchLabels"])
    party = deployment["metadata"].get("labels", {}).get(LABEL_PARTY) or template["metadata"]["labels"][LABEL_PARTY]
    name = job_name(fullname, job_id)
    address = f"{service['metadata']['name']}.{namespace}.svc:{grpc_service_port(service)}"

    pod_labels = {LABEL_NAME: selector[LABEL_NAME], LABEL_INSTANCE: selector[LABEL_INSTANCE],
                  LABEL_COMPONENT: "job", LABEL_PARTY: party, LABEL_JOB_ID: job_id}
    meta_labels = {**pod_labels, LABEL_MANAGED_BY: "vfl-submit"}
    volumes = [v for v in pod.get("volumes") or [] if v["name"] in COMMON_VOLUMES]
    mounts = [m for m in node.get("volumeMounts") or [] if m["name"] in COMMON_VOLUMES]
    missing = set(COMMON_VOLUMES) - {v["name"] for v in volumes}
    if missing:
        raise KubeError(f"{where}: volumes {sorted(missing)} are missing; was it installed with charts/vfl-party?")

    def container(cname: str, args: list[str], extra_mounts: list[dict]) -> dict:
        c = {"name": cname, "image": node["image"], "command": ["vfl"], "args": args,
             "env": list(node.get("env") or []), "resources": resources or DEFAULT_RESOURCES,
             "securityContext": node.get("securityContext", {}), "volumeMounts": mounts + extra_mounts}
        if node.get("imagePullPolicy"):
            c["imagePullPolicy"] = node["imagePullPolicy"]
        if node.get("workingDir"):   # the writable emptyDir: the root filesystem is read-only
            c["workingDir"] = node["workingDir"]
        return c

    spec_mount = {"name": "job-spec", "mountPath": JOB_SPEC_DIR, "readOnly": True}
    pod_spec: dict[str, Any] = {
        "restartPolicy": "Never",
        "automountServiceAccountToken": False,
        "enableServiceLinks": False,
        "securityContext": pod.get("securityContext", {}),
        "initContainers": [container(WAIT_CONTAINER, ["doctor", "--config", CONFIG_FILE, "--self", "--address",
                                                      address, "--wait", str(wait_seconds)], [])],
        "containers": [container(RUN_CONTAINER, ["run", f"{JOB_SPEC_DIR}/job.yaml", "--config", CONFIG_FILE,
                                                 "--address", address, "--quiet"], [spec_mount])],
        "volumes": volumes + [{"name": "job-spec", "configMap": {"name": name}}],
    }
    if pod.get("imagePullSecrets"):
        pod_spec["imagePullSecrets"] = pod["imagePullSecrets"]
    configmap = {"apiVersion": "v1", "kind": "ConfigMap",
                 "metadata": {"name": name, "namespace": namespace, "labels": dict(meta_labels)},
                 "data": {"job.yaml": spec_text}}
    job = {"apiVersion": "batch/v1", "kind": "Job",
           "metadata": {"name": name, "namespace": namespace, "labels": dict(meta_labels)},
           "spec": {"backoffLimit": backoff_limit, "ttlSecondsAfterFinished": ttl_seconds,
                    "template": {"metadata": {"labels": pod_labels}, "spec": pod_spec}}}
    return configmap, job


def pick_node(deployments: list[dict], release: str, namespace: str, job_active: str | None) -> dict:
    """The release's node Deployment; refuses a passive party or a job whose active party is someone else."""
    if not deployments:
        raise KubeError(f"no vfl-party node of release {release!r} in namespace {namespace!r} (looked for a "
                        f"Deployment labelled {LABEL_INSTANCE}={release},{LABEL_COMPONENT}=node); check "
                        f"`helm list -n {namespace}`")
    if len(deployments) > 1:
        names = [d["metadata"]["name"] for d in deployments]
        raise KubeError(f"release {release!r} in {namespace!r} has several node Deployments {names}")
    dep = deployments[0]
    labels = dep["metadata"].get("labels", {})
    party, role = labels.get(LABEL_PARTY), labels.get(LABEL_ROLE)
    if role != "active":
        raise KubeError(f"release {release!r} runs party {party!r} as {role!r}: submit jobs at the active party's "
                        "release")
    if job_active is not None and job_active != party:
        raise ConfigError(f"active: the job's active party is {job_active!r} but release {release!r} runs "
                          f"{party!r}")
    return dep


# ---------------------------------------------------------------------------------------------- API calls

#: Every Kubernetes API call this module makes, with the RBAC rule it needs: (API group, resource, verb).
#: docs/deploy.md and examples/bank-credit/k8s/submitter-role.yaml grant exactly these; tests/deploy/test_submit.py
#: checks that this table covers every call in this file and that the Role grants it.
RBAC_RULES: dict[str, tuple[str, str, str]] = {
    "list_namespaced_deployment": ("apps", "deployments", "list"),
    "list_namespaced_service": ("", "services", "list"),
    "create_namespaced_config_map": ("", "configmaps", "create"),
    "patch_namespaced_config_map": ("", "configmaps", "patch"),
    "delete_namespaced_config_map": ("", "configmaps", "delete"),
    "create_namespaced_job": ("batch", "jobs", "create"),
    "read_namespaced_job_status": ("batch", "jobs/status", "get"),
    "list_namespaced_pod": ("", "pods", "list"),
    "read_namespaced_pod_log": ("", "pods/log", "get"),
}

SERVICE_ACCOUNT_NAMESPACE = "/var/run/secrets/kubernetes.io/serviceaccount/namespace"


def _in_cluster(kubeconfig: str | None, context: str | None) -> bool:
    import os
    return kubeconfig is None and context is None and bool(os.environ.get("KUBERNETES_SERVICE_HOST"))


def api_client(kubeconfig: str | None = None, context: str | None = None):
    """An ApiClient from the in-cluster service account, or from a kubeconfig file / context."""
    from kubernetes import client, config
    if _in_cluster(kubeconfig, context):
        config.load_incluster_config()
        return client.ApiClient()
    try:
        return config.new_client_from_config(config_file=kubeconfig, context=context)
    except config.ConfigException as exc:
        raise KubeError(f"kubeconfig: {exc}") from None


def default_namespace(kubeconfig: str | None = None, context: str | None = None) -> str:
    """The namespace when --namespace is not given, as kubectl chooses it: the kubeconfig context's namespace (in a
    pod, the service account's), else "default"."""
    from kubernetes import config
    if _in_cluster(kubeconfig, context):
        try:
            from pathlib import Path
            return Path(SERVICE_ACCOUNT_NAMESPACE).read_text().strip() or "default"
        except OSError:
            return "default"
    try:
        contexts, current = config.list_kube_config_contexts(config_file=kubeconfig)
    except config.ConfigException as exc:
        raise KubeError(f"kubeconfig: {exc}") from None
    if context is not None:
        found = [c for c in contexts or [] if c.get("name") == context]
        if not found:
            raise KubeError(f"kubeconfig: no context named {context!r} (contexts: "
                            f"{sorted(c.get('name') for c in contexts or [])})")
        current = found[0]
    return ((current or {}).get("context") or {}).get("namespace") or "default"


def _rule_text(method: str, namespace: str) -> str:
    group, resource, verb = RBAC_RULES[method]
    return f"'{verb}' on {resource} (API group {group or 'core'}) in namespace {namespace!r}"


def _likely_cause(status: int, method: str, namespace: str) -> str:
    if status == 401:
        return ("the API server did not accept our credentials: the kubeconfig's token or client certificate is "
                "missing or expired (log in to the cluster again)")
    if status == 403:
        return (f"RBAC: the account we act as lacks {_rule_text(method, namespace)}; docs/deploy.md lists every "
                "permission `vfl submit --kube` needs (examples/bank-credit/k8s/submitter-role.yaml)")
    if status == 404:
        return f"namespace {namespace!r} or the object does not exist (check --namespace and the kubeconfig context)"
    if status == 422:
        return "the API server refused the object as invalid (an admission policy, or a version older than 1.27?)"
    if status == 429 or status >= 500:
        return "the API server is overloaded or failing; try again later"
    return "see the API server's message"


def _call(api, method: str, what: str, namespace: str, *args, **kwargs):
    """api.method(*args, **kwargs), with API and connection errors turned into a KubeError naming `what`."""
    from kubernetes.client.rest import ApiException
    try:
        return getattr(api, method)(*args, **kwargs)
    except ApiException as exc:
        raise _api_error(exc, what, method, namespace) from None
    except Exception as exc:   # urllib3 errors (refused, timeout, TLS, proxy) or a broken socket
        if not _is_connection_error(exc):
            raise
        raise _connection_error(exc, what, api) from None


def _is_connection_error(exc: BaseException) -> bool:
    import urllib3
    return isinstance(exc, (urllib3.exceptions.HTTPError, OSError))


def _connection_error(exc: BaseException, what: str, api) -> KubeError:
    host = getattr(getattr(getattr(api, "api_client", None), "configuration", None), "host", "?")
    reason = getattr(exc, "reason", None) or exc
    return KubeError(f"{what}: cannot reach the Kubernetes API server at {host}: {reason}. Likely cause: the "
                     "cluster address in the kubeconfig is wrong, the network or VPN to the cluster is down, or "
                     "the API server is unavailable")


def _api_error(exc, what: str, method: str | None = None, namespace: str = "") -> KubeError:
    import json
    message = ""
    try:
        message = json.loads(exc.body).get("message") or ""
    except (TypeError, ValueError, AttributeError):
        pass
    status = int(exc.status or 0)
    answer = f"HTTP {status} {exc.reason or ''}".rstrip() if status else f"{exc.reason or 'an error'}"
    text = f"{what}: the API server answered {answer}" + (f": {message}" if message else "")
    if method is not None and status:
        text += f". Likely cause: {_likely_cause(status, method, namespace)}"
    return KubeError(text, status=status or None)


def submit(spec_text: str, namespace: str, release: str, client_api, *, source: str = "job spec",
           follow: bool = True, out: Callable[[str], None] = print, poll: float = 2.0, **options) -> int:
    """Create the job-spec ConfigMap and the Job in the active party's namespace; follow it if asked.

    Returns 0 when the Job completed (or was created, without follow), 1 when it failed.
    """
    from kubernetes import client
    job_id, spec_text = prepare_spec(spec_text, source)
    active = yaml.safe_load(spec_text).get("active")
    apps, core, batch = client.AppsV1Api(client_api), client.CoreV1Api(client_api), client.BatchV1Api(client_api)
    plain = client_api.sanitize_for_serialization
    selector = f"{LABEL_INSTANCE}={release},{LABEL_COMPONENT}=node"
    reading = f"reading release {release!r} in namespace {namespace!r}"
    deployments = [plain(d) for d in _call(apps, "list_namespaced_deployment", f"{reading} (listing deployments)",
                                           namespace, namespace, label_selector=selector).items]
    dep = pick_node(deployments, release, namespace, active)
    services = [plain(s) for s in _call(core, "list_namespaced_service", f"{reading} (listing services)",
                                        namespace, namespace, label_selector=selector).items]
    if not services:
        raise KubeError(f"release {release!r} in {namespace!r} has no node Service ({selector})")
    configmap, job = build_job_objects(spec_text, job_id, namespace, dep, services[0], **options)
    name = job["metadata"]["name"]
    try:
        _call(core, "create_namespaced_config_map", f"creating configmap/{name}", namespace, namespace, configmap)
    except KubeError as exc:
        if exc.status == 409:
            raise KubeError(f"job_id {job_id!r}: configmap/{name} already exists in {namespace!r}; choose a new "
                            f"job_id, or delete the old run with `kubectl -n {namespace} delete job,configmap "
                            f"{name}`") from None
        raise
    try:
        created = _call(batch, "create_namespaced_job", f"creating job/{name}", namespace, namespace, job)
    except KubeError as exc:
        try:
            _call(core, "delete_namespaced_config_map", f"removing configmap/{name} again", namespace, name,
                  namespace)
        except KubeError as cleanup:
            raise KubeError(f"{exc}\n{cleanup}; delete it yourself: kubectl -n {namespace} delete configmap "
                            f"{name}") from None
        raise
    # The spec ConfigMap goes away with the Job (ttlSecondsAfterFinished or kubectl delete job). Failing that is
    # not fatal: the Job runs either way, and the user is told how to clean up.
    owner = {"apiVersion": "batch/v1", "kind": "Job", "name": name, "uid": created.metadata.uid}
    out(f"created job/{name} in namespace {namespace} (job_id {job_id})")
    try:
        _call(core, "patch_namespaced_config_map", f"giving configmap/{name} an owner reference to job/{name}",
              namespace, name, namespace, {"metadata": {"ownerReferences": [owner]}})
    except KubeError as exc:
        out(f"warning: {exc}. The Job runs anyway, but configmap/{name} will not be removed with it: delete it "
            f"yourself later with `kubectl -n {namespace} delete configmap {name}`")
    if not follow:
        out(f"follow it with: kubectl -n {namespace} logs -f job/{name} --all-containers")
        return 0
    return follow_job(core, batch, namespace, name, out=out, poll=poll)


_WAITING_HINTS = {
    "ErrImagePull": "the image cannot be pulled: push it, fix image.repository/tag, or set imagePullSecrets",
    "ImagePullBackOff": "the image cannot be pulled: push it, fix image.repository/tag, or set imagePullSecrets",
    "CreateContainerConfigError": "a ConfigMap or Secret the pod mounts is missing (the TLS and CA secrets?)",
}


def follow_job(core, batch, namespace: str, name: str, out: Callable[[str], None] = print,
               poll: float = 2.0, log_sink: Callable[[str], None] | None = None) -> int:
    """Print pod status changes and stream the containers' logs until the Job completes (0) or fails (1).

    An API or connection error while following raises a KubeError that says so and that the Job keeps running; a
    container whose logs cannot be read is reported and skipped.
    """
    log_sink = log_sink or (lambda text: (sys.stdout.write(text), sys.stdout.flush()))
    said: set[str] = set()
    streamed: set[tuple[str, str]] = set()
    following = (f"following job/{name} (the Job itself keeps running; check it with `kubectl -n {namespace} "
                 f"get job {name}`)")

    def say(text: str) -> None:
        if text not in said:
            said.add(text)
            out(text)

    while True:
        pods = _call(core, "list_namespaced_pod", f"{following}: listing its pods", namespace, namespace,
                     label_selector=f"{JOB_NAME_LABEL}={name}").items
        for pod in pods:
            pname = pod.metadata.name
            say(f"pod/{pname}: {pod.status.phase}")
            statuses = list(pod.status.init_container_statuses or []) + list(pod.status.container_statuses or [])
            for cs in statuses:
                state = cs.state
                if state and state.waiting and state.waiting.reason not in (None, "PodInitializing",
                                                                             "ContainerCreating"):
                    hint = _WAITING_HINTS.get(state.waiting.reason, state.waiting.message or "")
                    say(f"pod/{pname} {cs.name}: {state.waiting.reason}" + (f": {hint}" if hint else ""))
                if state and (state.running or state.terminated) and (pname, cs.name) not in streamed:
                    streamed.add((pname, cs.name))
                    say(f"--- logs of {cs.name} ({pname})")
                    try:
                        _stream_logs(core, namespace, pname, cs.name, log_sink)
                    except KubeError as exc:
                        out(f"warning: {exc}; following the Job's status only for this container")
        job = _call(batch, "read_namespaced_job_status", f"{following}: reading its status", namespace, name,
                    namespace)
        for cond in (job.status.conditions if job.status else None) or []:
            if cond.status != "True":
                continue
            if cond.type == "Complete":
                out(f"job/{name} completed")
                return 0
            if cond.type == "Failed":
                out(f"job/{name} failed: {cond.reason or ''} {cond.message or ''}".rstrip())
                return 1
        time.sleep(poll)


def _stream_logs(core, namespace: str, pod: str, container: str, sink: Callable[[str], None]) -> None:
    what = f"reading the logs of container {container} in pod/{pod}"
    resp = _call(core, "read_namespaced_pod_log", what, namespace, pod, namespace, container=container, follow=True,
                 _preload_content=False)
    try:
        for chunk in resp.stream(4096):
            sink(chunk.decode("utf-8", "replace"))
    except Exception as exc:   # the connection broke mid-stream
        if not _is_connection_error(exc):
            raise
        raise _connection_error(exc, what, core) from None
    finally:
        resp.release_conn()
