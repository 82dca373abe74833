"""charts/vfl-party: lint, render the two-bank example, validate every manifest, and check the chart agrees with
the program (node config keys, paths, ports, probes) and with the Dockerfile."""
from __future__ import annotations

import copy
import json
import re

import jsonschema
import kubernetes_validate
import kubernetes_validate.utils as kv_utils
import pytest
import yaml

from vfl.node.config import load_node_config
from vfl.transport.certs import create_ca, issue_party_cert
from vfl.transport.tls import load_tls_files

from .conftest import BANK_A, BANK_B, CHART, KUBE_VERSION, HelmError, REPO, TRAIN_JOB, by_kind, one, small_job_spec
from .materialize import container, materialize, rewrite_node_config

# No schema in kubernetes-validate: validated against our own schema of the fields the chart uses (schemas/).
CRD_SCHEMAS = {("cert-manager.io/v1", "Certificate"): "cert-manager-certificate-v1.json",
               ("monitoring.coreos.com/v1", "ServiceMonitor"): "servicemonitor-v1-subset.json",
               ("ray.io/v1", "RayCluster"): "raycluster-v1.json"}   # its pod templates: test_ray_chart.py
CRD_KINDS = set(CRD_SCHEMAS)
CI_VALUES = sorted((CHART / "ci").glob("*-values.yaml"))
SERVING_SETS = ["serving.enabled=true", "serving.models.credit.path=models/credit",
                "serving.models.credit.table=applicants", "serving.callers.ops-bank-a.idsPerSecond=20",
                "serving.from[0].ipBlock.cidr=10.20.0.0/16", "serving.maxIds=64"]


def variants(tmp_path_factory=None) -> dict[str, dict]:
    """Value combinations whose renderings are validated: the examples plus the optional features."""
    return {
        "bank-a": {"values": [BANK_A]},
        "bank-a-with-job": {"values": [BANK_A], "sets": ["job.enabled=true"], "set_files": [f"job.spec={TRAIN_JOB}"]},
        "bank-a-with-ray": {"values": [BANK_A], "sets": ["ray.enabled=true"]},
        "bank-b": {"values": [BANK_B]},
        "bank-a-with-serving": {"values": [BANK_A], "sets": SERVING_SETS},
        "bank-b-with-metrics": {"values": [BANK_B], "sets": ["metrics.enabled=true", "metrics.serviceMonitor.enabled=true",
                                                             "metrics.serviceMonitor.labels.release=kube-prom"]},
        "bank-b-with-at-rest-secrets": {"values": [BANK_B], "sets": ["atRest.keySecret=bank-b-at-rest-2",
                                                                     "atRest.previousKeySecrets={bank-b-at-rest-1}"]},
        "bank-b-with-models": {"values": [BANK_B], "sets": ["models.ln=bank_models.nets:layernorm_bottom",
                                                            "extraPythonPath=python"]},
        "bank-b-clusterip-existing-claim": {
            "values": [BANK_B], "sets": ["service.type=ClusterIP", "persistence.existingClaim=bank-b-data",
                                         "certManager.enabled=false", "networkPolicy.from=null",
                                         "networkPolicy.probeFrom[0].ipBlock.cidr=10.0.0.0/16",
                                         "imagePullSecrets[0].name=regcred"]},
        "minimal": {"sets": ["party=p1", "role=passive", "peers[0].name=p2", "peers[0].address=p2.example.org:50051"]},
        **{f"ci-{path.name.removesuffix('-values.yaml')}": {"values": [path]} for path in CI_VALUES},
    }


@pytest.fixture(scope="module")
def rendered(helm):
    return {name: helm.template(name.split("-with")[0].split("-clusterip")[0], **kw) for name, kw in variants().items()}


def crd_validator(api_version: str, kind: str) -> jsonschema.Draft7Validator:
    schema = json.loads((REPO / "tests" / "deploy" / "schemas" / CRD_SCHEMAS[(api_version, kind)]).read_text())
    jsonschema.Draft7Validator.check_schema(schema)
    return jsonschema.Draft7Validator(schema)


def test_kubernetes_validate_knows_the_version():
    versions = kv_utils.all_versions()
    assert any(v.startswith(KUBE_VERSION + ".") for v in versions), versions
    assert kubernetes_validate.__version__


@pytest.mark.parametrize("values", [BANK_A, BANK_B], ids=["bank-a", "bank-b"])
def test_helm_lint_strict(helm, values):
    out = helm.lint(values=[values])
    assert "1 chart(s) linted, 0 chart(s) failed" in out


def test_helm_lint_strict_with_job(helm):
    helm.lint(values=[BANK_A], sets=["job.enabled=true"], set_files=[f"job.spec={TRAIN_JOB}"])


def test_ci_values_cover_both_roles_and_the_options():
    """charts/vfl-party/ci/*-values.yaml (the chart-testing convention) exist for lint and template."""
    values = [yaml.safe_load(path.read_text()) for path in CI_VALUES]
    assert {v["role"] for v in values} == {"active", "passive"}
    assert any(v.get("job", {}).get("enabled") for v in values)
    assert any(v.get("certManager", {}).get("enabled") for v in values)
    assert any(v.get("models") and v.get("extraPythonPath") for v in values)   # custom bottoms, code on the volume
    assert any(v.get("models") and v.get("job", {}).get("enabled") for v in values)   # a job using its own model


@pytest.mark.parametrize("values", CI_VALUES, ids=lambda p: p.name)
def test_helm_lint_strict_with_ci_values(helm, values):
    assert "1 chart(s) linted, 0 chart(s) failed" in helm.lint(values=[values])


def test_helm_lint_without_values_names_what_is_missing(helm):
    """The defaults have no party and no peers, on purpose: lint needs values (docs/deploy.md says so)."""
    with pytest.raises(HelmError) as info:
        helm.lint()
    assert "'/party'" in info.value.stdout and "'/peers'" in info.value.stdout, info.value
    assert "ci/active-values.yaml" in (CHART / "values.yaml").read_text()
    assert "charts/vfl-party/ci/" in (REPO / "docs" / "deploy.md").read_text()


def test_two_party_example_renders(rendered):
    for name in ("bank-a", "bank-b"):
        kinds = sorted(d["kind"] for d in rendered[name])
        expected = ["ConfigMap", "Deployment", "NetworkPolicy", "PersistentVolumeClaim", "Service"]
        if name == "bank-b":
            expected = sorted(expected + ["Certificate"])
        assert kinds == expected, name
    a = load_yaml_config(rendered["bank-a"])
    b = load_yaml_config(rendered["bank-b"])
    # each bank lists the other, with the identity the other's certificate carries
    assert a["peers"] == [{"address": "vfl.bank-b.example.com:443", "identity": "bank-b", "name": "bank-b"}]
    assert b["peers"] == [{"address": "vfl.bank-a.example.com:443", "identity": "bank-a", "name": "bank-a"}]
    assert a["identity"] == "bank-a" and b["identity"] == "bank-b"
    assert (a["role"], b["role"]) == ("active", "passive")
    cert = one(rendered["bank-b"], "Certificate")
    assert "bank-b" in cert["spec"]["dnsNames"] and cert["spec"]["commonName"] == "bank-b"
    assert cert["spec"]["secretName"] == "bank-b-vfl-tls"


def load_yaml_config(docs: list[dict]) -> dict:
    return yaml.safe_load(one(docs, "ConfigMap", "node")["data"]["node.yaml"])


def test_every_manifest_passes_kubernetes_validate_strict(rendered):
    checked = 0
    for name, docs in rendered.items():
        for doc in docs:
            key = (doc["apiVersion"], doc["kind"])
            if key in CRD_KINDS:
                with pytest.raises(kv_utils.SchemaNotFoundError):
                    kv_utils.validate(doc, KUBE_VERSION, strict=True)
                errors = [f"{'.'.join(map(str, e.absolute_path))}: {e.message}"
                          for e in crd_validator(*key).iter_errors(doc)]
                assert not errors, f"{name}: {doc['kind']}/{doc['metadata']['name']}: {errors}"
                checked += 1
                continue
            try:
                kv_utils.validate(doc, KUBE_VERSION, strict=True)
            except kv_utils.ValidationError as exc:
                pytest.fail(f"{name}: {doc['kind']}/{doc['metadata']['name']}: "
                            f"{'.'.join(map(str, exc.path))}: {exc.message}")
            checked += 1
    assert checked >= 25


def test_certificates_are_schema_checked(rendered):
    """Every rendered Certificate passes our cert-manager.io/v1 schema, which is strict enough to catch mistakes."""
    certs = [d for docs in rendered.values() for d in by_kind(docs, "Certificate")]
    assert len(certs) >= 2   # bank-b and ci-passive
    validator = crd_validator("cert-manager.io/v1", "Certificate")
    for cert in certs:
        validator.validate(cert)
    base = one(rendered["bank-b"], "Certificate")

    def broken(change):
        doc = copy.deepcopy(base)
        change(doc)
        return list(validator.iter_errors(doc))

    assert broken(lambda d: d["spec"].update(secretname="x"))                       # a typo: unknown field
    assert broken(lambda d: d["spec"]["privateKey"].update(size=255))               # not an ECDSA curve size
    assert broken(lambda d: d["spec"]["privateKey"].update(algorithm="EC"))
    assert broken(lambda d: d["spec"]["privateKey"].update(rotation="Always"))
    assert broken(lambda d: d["spec"]["usages"].append("server-auth"))
    assert broken(lambda d: d["spec"]["issuerRef"].pop("name"))
    assert broken(lambda d: d["spec"]["issuerRef"].update(namespace="x"))
    assert broken(lambda d: d["spec"].update(duration="90d"))                       # Go durations have no days
    assert broken(lambda d: d["spec"].pop("secretName"))
    assert broken(lambda d: d["metadata"].update(namespaces="x"))
    assert broken(lambda d: d.update(apiVersion="cert-manager.io/v1alpha2"))
    assert broken(lambda d: d["spec"]["dnsNames"].append("Not A DNS name"))


def test_certificate_shape(rendered):
    """The fields the node relies on."""
    cert = one(rendered["bank-b"], "Certificate")
    spec = cert["spec"]
    assert set(spec) <= {"secretName", "commonName", "dnsNames", "duration", "renewBefore", "privateKey", "usages",
                         "issuerRef"}
    assert {"server auth", "client auth"} <= set(spec["usages"])  # the same certificate serves and dials
    assert spec["issuerRef"] == {"name": "bank-b-vfl-issuer", "kind": "Issuer", "group": "cert-manager.io"}
    assert re.fullmatch(r"\d+h", spec["duration"]) and re.fullmatch(r"\d+h", spec["renewBefore"])


@pytest.fixture(scope="module")
def dev_pki(tmp_path_factory):
    root = tmp_path_factory.mktemp("chart-pki")
    create_ca(root / "ca")
    secrets = {}
    for party in ("bank-a", "bank-b"):
        issued = issue_party_cert(root / "ca", party, root / party)
        secrets[f"{party}-vfl-tls"] = {"tls.crt": issued.cert.read_bytes(), "tls.key": issued.key.read_bytes(),
                                       "ca.crt": issued.ca.read_bytes()}   # what cert-manager writes
        secrets[f"{party}-vfl-ca"] = {"ca.crt": issued.ca.read_bytes()}
    return secrets


def configmaps(docs: list[dict]) -> dict[str, dict[str, str]]:
    return {d["metadata"]["name"]: d["data"] for d in by_kind(docs, "ConfigMap")}


@pytest.mark.parametrize("name", ["bank-a", "bank-b"])
def test_rendered_node_config_loads(rendered, dev_pki, tmp_path, name):
    """The chart and vfl/node/config.py agree on every key; the files land where the config says."""
    docs = rendered[name]
    pod = one(docs, "Deployment")["spec"]["template"]["spec"]
    node = container(pod, "node")
    claims: dict = {}

    def transform(cm, key, text, mounts):
        if key != "node.yaml":
            return text
        return rewrite_node_config(text, mounts, {50051: 1, 50052: 2}, {"bank-a": "127.0.0.1:3", "bank-b": "127.0.0.1:4"})

    mounts = materialize(pod, node, tmp_path / "pod", configmaps(docs), dev_pki, claims, transform)
    config_arg = node["args"][node["args"].index("--config") + 1]
    config = load_node_config(mounts.host(config_arg))
    assert config.party == name and not config.insecure
    load_tls_files(config.tls.cert, config.tls.key, config.tls.ca)  # the secret files are where the config says
    [claim_dir] = claims.values()   # data and job artifacts live on the persistent volume
    assert config.data_dir.parent == claim_dir and config.jobs_dir.parent == claim_dir
    for ds in config.datasets.values():
        assert ds.path.parent == config.data_dir


def test_open_job_limit_renders_into_node_config(helm):
    """Values `limits.openJobsPerMinute` is node.yaml's `limits.open_jobs_per_minute`; the chart's default is the
    node's own, and unset it leaves the node's default."""
    from pathlib import Path

    from vfl.node.config import DEFAULT_OPEN_JOBS_PER_MINUTE, parse_node_config
    default = load_yaml_config(helm.template("bank-b", values=[BANK_B]))
    assert default["limits"] == {"open_jobs_per_minute": DEFAULT_OPEN_JOBS_PER_MINUTE}
    five = load_yaml_config(helm.template("bank-b", values=[BANK_B], sets=["limits.openJobsPerMinute=5"]))
    assert parse_node_config(five, Path("/")).limits.open_jobs_per_minute == 5
    unset = load_yaml_config(helm.template("bank-b", values=[BANK_B], sets=["limits=null"]))
    assert "limits" not in unset
    assert parse_node_config(unset, Path("/")).limits.open_jobs_per_minute == DEFAULT_OPEN_JOBS_PER_MINUTE


def test_policy_caps_render_into_node_config(helm):
    """Values `policy.max*` are node.yaml's `policy.max_*` caps (vfl/job/caps.py); the chart's defaults are the
    node's own, each value reaches its key, and null leaves the node's default."""
    import dataclasses
    from pathlib import Path

    from vfl.node.config import PolicyConfig, parse_node_config
    default = parse_node_config(load_yaml_config(helm.template("bank-b", values=[BANK_B])), Path("/"))
    assert default.policy == PolicyConfig()   # every cap of the node, at the node's default
    caps = {"maxKeyBits": ("max_key_bits", 2048), "maxHiddenLayers": ("max_hidden_layers", 2),
            "maxHiddenWidth": ("max_hidden_width", 64), "maxBottomOut": ("max_bottom_out", 8),
            "maxInteractiveOut": ("max_interactive_out", 8), "maxParameters": ("max_parameters", 12_000_000),
            "maxBatchSize": ("max_batch_size", 256), "maxEpochs": ("max_epochs", 20),
            "maxOpenJobsPerPeer": ("max_open_jobs_per_peer", 1)}
    assert {snake for snake, _ in caps.values()} == {f.name for f in dataclasses.fields(PolicyConfig)
                                                     if f.name.startswith("max_")}
    sets = [f"policy.{camel}={value}" for camel, (_, value) in caps.items()]
    config = load_yaml_config(helm.template("bank-b", values=[BANK_B], sets=sets))
    policy = parse_node_config(config, Path("/")).policy
    assert {snake: getattr(policy, snake) for snake, _ in caps.values()} == dict(caps.values())
    assert config["policy"]["max_parameters"] == 12_000_000   # an integer, not 1.2e+07
    unset = load_yaml_config(helm.template("bank-b", values=[BANK_B], sets=["policy.maxHiddenWidth=null"]))
    assert "max_hidden_width" not in unset["policy"]
    assert parse_node_config(unset, Path("/")).policy.max_hidden_width == PolicyConfig().max_hidden_width


def test_timeouts_render_into_node_config(helm):
    from pathlib import Path

    from vfl.node.config import TimeoutsConfig, parse_node_config
    default = parse_node_config(load_yaml_config(helm.template("bank-b", values=[BANK_B])), Path("/"))
    assert default.timeouts == TimeoutsConfig()
    config = load_yaml_config(helm.template("bank-b", values=[BANK_B], sets=["timeouts.resumeWaitSeconds=30",
                                                                               "timeouts.callSeconds=120",
                                                                               "timeouts.leaseSeconds=45",
                                                                               "timeouts.drainSeconds=10"]))
    assert parse_node_config(config, Path("/")).timeouts == TimeoutsConfig(30.0, 120.0, 45.0, 10.0)
    assert "timeouts" not in load_yaml_config(helm.template("bank-b", values=[BANK_B], sets=["timeouts=null"]))


@pytest.mark.parametrize("name", ["bank-a", "bank-b"])
def test_ports_and_probes_match_the_node_config(rendered, name):
    docs = rendered[name]
    cfg = load_yaml_config(docs)
    pod = one(docs, "Deployment")["spec"]["template"]["spec"]
    node = container(pod, "node")
    ports = {p["name"]: p["containerPort"] for p in node["ports"]}
    assert ports == {"grpc": int(cfg["listen"].rsplit(":", 1)[1]), "health": int(cfg["health_listen"].rsplit(":", 1)[1])}
    for probe in ("startupProbe", "livenessProbe", "readinessProbe"):
        assert node[probe]["grpc"]["port"] == ports["health"], probe   # kubelet probes cannot do TLS
    assert node["readinessProbe"]["grpc"]["service"] == "vfl.Node"
    service = one(docs, "Service")
    assert [(p["name"], p["targetPort"]) for p in service["spec"]["ports"]] == [("grpc", "grpc")]  # no health port
    assert node["command"] == ["vfl"] and node["args"][0] == "serve"


@pytest.mark.parametrize("name", ["bank-a", "bank-b"])
def test_pod_security(rendered, name):
    pod = one(rendered[name], "Deployment")["spec"]["template"]["spec"]
    sc = pod["securityContext"]
    assert sc["runAsNonRoot"] is True and sc["runAsUser"] == 10001 and sc["fsGroup"] == 10001
    assert pod["automountServiceAccountToken"] is False
    node = container(pod, "node")
    csc = node["securityContext"]
    assert csc["readOnlyRootFilesystem"] is True and csc["allowPrivilegeEscalation"] is False
    assert csc["capabilities"] == {"drop": ["ALL"]}
    mounts = {m["mountPath"]: m["name"] for m in node["volumeMounts"]}
    volumes = {v["name"]: v for v in pod["volumes"]}
    assert "emptyDir" in volumes[mounts["/tmp"]]
    env = {e["name"]: e["value"] for e in node["env"]}
    assert env["HOME"].startswith("/tmp")  # writable with a read-only root filesystem
    assert_writable_working_dir(pod, node)
    for m in node["volumeMounts"]:
        if m["name"] in ("config", "tls", "ca"):
            assert m["readOnly"] is True
    assert node["resources"]["requests"] and node["resources"]["limits"]
    cfg = load_yaml_config(rendered[name])
    assert volumes[mounts["/var/lib/vfl"]]["persistentVolumeClaim"]
    assert cfg["data_dir"].startswith("/var/lib/vfl/") and cfg["jobs_dir"].startswith("/var/lib/vfl/")


def test_network_policy(rendered):
    policy = one(rendered["bank-a"], "NetworkPolicy")["spec"]
    assert policy["policyTypes"] == ["Ingress"]
    [rule] = policy["ingress"]
    assert rule["ports"] == [{"port": "grpc", "protocol": "TCP"}]
    assert {"ipBlock": {"cidr": "203.0.113.0/24"}} in rule["from"]
    assert any(f.get("podSelector", {}).get("matchLabels", {}).get("app.kubernetes.io/component") == "job"
               for f in rule["from"])   # the release's own training Jobs
    open_policy = one(rendered["bank-b-clusterip-existing-claim"], "NetworkPolicy")["spec"]
    grpc_rule, probe_rule = open_policy["ingress"]
    assert "from" not in grpc_rule  # no sources configured: any source, mutual TLS still required
    assert probe_rule == {"ports": [{"port": "health", "protocol": "TCP"}],
                          "from": [{"ipBlock": {"cidr": "10.0.0.0/16"}}]}


def test_existing_claim_and_pull_secrets(rendered):
    docs = rendered["bank-b-clusterip-existing-claim"]
    assert not by_kind(docs, "PersistentVolumeClaim") and not by_kind(docs, "Certificate")
    pod = one(docs, "Deployment")["spec"]["template"]["spec"]
    assert {"name": "state", "persistentVolumeClaim": {"claimName": "bank-b-data"}} in pod["volumes"]
    assert pod["imagePullSecrets"] == [{"name": "regcred"}]


def test_handler_timing_is_off_unless_the_values_turn_it_on(helm, rendered):
    """reportHandlerTiming renders node.yaml's report_handler_timing: off by default (docs/protocol.md)."""
    for name in ("bank-a", "bank-b"):
        assert load_yaml_config(rendered[name])["report_handler_timing"] is False
    docs = helm.template("bank-b", values=[BANK_B], sets=["reportHandlerTiming=true"])
    assert load_yaml_config(docs)["report_handler_timing"] is True


def test_config_checksum_ignores_datasets_only(helm):
    def checksum(*sets):
        docs = helm.template("bank-b", values=[BANK_B], sets=list(sets))
        return one(docs, "Deployment")["spec"]["template"]["metadata"]["annotations"]["vfl.dev/config-checksum"]
    base = checksum()
    assert checksum("datasets.extra.path=x.csv", "datasets.extra.id=id") == base   # the node re-reads datasets
    assert checksum("peers[0].address=other.example.com:443") != base               # peers need a restart


def test_notes_tell_how_to_run_doctor(helm):
    notes = helm.notes("bank-a", values=[BANK_A])
    assert "kubectl -n vfl exec deploy/bank-a-vfl -- vfl doctor --config /etc/vfl/config/node.yaml" in notes
    assert "--peer bank-b" in notes
    assert "vfl submit --kube --namespace vfl --release bank-a" in notes
    passive = helm.notes("bank-b", values=[BANK_B])
    assert "vfl doctor" in passive and "vfl submit" not in passive


def assert_writable_working_dir(pod: dict, ctr: dict) -> None:
    """The container's cwd is set, and is a writable volume it mounts (the image's WORKDIR is on the read-only root)."""
    workdir = ctr.get("workingDir")
    assert workdir, f"{ctr['name']}: workingDir must be set"
    mounts = {m["mountPath"]: m for m in ctr["volumeMounts"]}
    assert workdir in mounts and not mounts[workdir].get("readOnly"), f"{ctr['name']}: {workdir} is not mounted"
    volume = next(v for v in pod["volumes"] if v["name"] == mounts[workdir]["name"])
    assert "emptyDir" in volume or "persistentVolumeClaim" in volume


def test_job_template(rendered):
    docs = rendered["bank-a-with-job"]
    job = one(docs, "Job")
    spec_cm = one(docs, "ConfigMap", "job")
    for ctr in job["spec"]["template"]["spec"]["initContainers"] + job["spec"]["template"]["spec"]["containers"]:
        assert_writable_working_dir(job["spec"]["template"]["spec"], ctr)
    assert job["metadata"]["name"] == spec_cm["metadata"]["name"] == "bank-a-vfl-credit-default-1"
    assert yaml.safe_load(spec_cm["data"]["job.yaml"]) == yaml.safe_load(TRAIN_JOB.read_text())
    pod = job["spec"]["template"]["spec"]
    run = container(pod, "run")
    assert run["args"][:4] == ["run", "/etc/vfl/job/job.yaml", "--config", "/etc/vfl/config/node.yaml"]
    address = run["args"][run["args"].index("--address") + 1]
    service = one(docs, "Service")
    assert address == f"{service['metadata']['name']}.vfl.svc:{service['spec']['ports'][0]['port']}"
    wait = container(pod, "wait-for-node", init=True)
    assert wait["args"][:2] == ["doctor", "--config"] and "--self" in wait["args"]
    assert pod["restartPolicy"] == "Never"
    labels = job["spec"]["template"]["metadata"]["labels"]
    selector = one(docs, "NetworkPolicy")["spec"]["ingress"][0]["from"][0]["podSelector"]["matchLabels"]
    assert selector.items() <= labels.items()   # the NetworkPolicy lets the Job reach the node


def test_job_spec_as_mapping(helm):
    docs = helm.template("bank-a", values=[BANK_A], sets=["job.enabled=true"],
                         set_strings=[f"job.spec.{k}={v}" for k, v in
                                      {"job_id": "j1", "active": "bank-a", "parties.bank-a.dataset": "customers",
                                       "parties.bank-b.dataset": "accounts"}.items()])
    assert yaml.safe_load(one(docs, "ConfigMap", "job")["data"]["job.yaml"])["job_id"] == "j1"


def test_dockerfile_matches_the_chart(rendered):
    dockerfile = (REPO / "Dockerfile").read_text()
    node = container(one(rendered["bank-a"], "Deployment")["spec"]["template"]["spec"], "node")
    final = dockerfile.rsplit("\nFROM ", 1)[1]   # the runtime stage
    assert re.search(r"^USER 10001:10001$", final, re.M)
    assert re.search(r'^ENTRYPOINT \["vfl"\]$', final, re.M) and node["command"] == ["vfl"]
    cmd = re.search(r"^CMD (\[.*\])$", final, re.M).group(1)
    assert yaml.safe_load(cmd) == node["args"]
    assert re.search(r"^EXPOSE 50051 50052$", final, re.M)
    workdir = re.search(r"^WORKDIR (\S+)$", final, re.M).group(1)
    assert workdir == node["workingDir"], "Dockerfile WORKDIR and the chart's workingDir should agree"
    assert "torch==2.13.0 --index-url https://download.pytorch.org/whl/cpu" in dockerfile
    env = {e["name"]: e["value"] for e in node["env"]}
    for name, value in env.items():
        assert re.search(rf"\b{name}={re.escape(value)}\b", final), f"Dockerfile ENV {name} should be {value}"
    dockerignore = (REPO / ".dockerignore").read_text().split()
    assert dockerignore[0] == "*" and {"!vfl", "!psi", "!pyproject.toml"} <= set(dockerignore)
    for entry in dockerignore:   # every file the build context re-includes exists
        if entry.startswith("!"):
            assert (REPO / entry[1:]).exists(), f".dockerignore re-includes {entry[1:]}, which does not exist"


def test_small_job_spec_is_valid():
    from vfl.job.spec import parse_job_spec
    parse_job_spec(small_job_spec())


def test_allowed_pii_columns_render_into_node_config(helm):
    """Values `policy.allowPiiColumns` is node.yaml's `policy.allow_pii_columns` (the data audit's allow list)."""
    from pathlib import Path

    from vfl.node.config import parse_node_config
    config = load_yaml_config(helm.template("bank-b", values=[BANK_B], sets=["policy.allowPiiColumns={phone,zip4}"]))
    assert parse_node_config(config, Path("/")).policy.allow_pii_columns == {"phone", "zip4"}
    default = load_yaml_config(helm.template("bank-b", values=[BANK_B]))
    assert default["policy"]["allow_pii_columns"] == []


def test_metrics_port_network_policy_and_service_monitor(rendered):
    """metrics.enabled: node.yaml's metrics_listen, the container and Service port, a NetworkPolicy rule that admits
    only metrics.allowFrom, and (serviceMonitor.enabled) a ServiceMonitor that the CRD schema test above validates."""
    docs = rendered["bank-b-with-metrics"]
    assert load_yaml_config(docs)["metrics_listen"] == "0.0.0.0:9464"
    container = one(docs, "Deployment")["spec"]["template"]["spec"]["containers"][0]
    assert {"name": "metrics", "containerPort": 9464, "protocol": "TCP"} in container["ports"]
    assert {"name": "metrics", "port": 9464, "targetPort": "metrics", "protocol": "TCP"} in \
        one(docs, "Service")["spec"]["ports"]
    rules = one(docs, "NetworkPolicy")["spec"]["ingress"]
    [metrics_rule] = [r for r in rules if r["ports"] == [{"port": "metrics", "protocol": "TCP"}]]
    assert metrics_rule["from"] == [{"namespaceSelector": {"matchLabels": {"kubernetes.io/metadata.name": "monitoring"}}}]
    monitor = one(docs, "ServiceMonitor")
    assert monitor["metadata"]["labels"]["release"] == "kube-prom"
    assert monitor["spec"]["endpoints"] == [{"port": "metrics", "path": "/metrics", "scheme": "http", "interval": "30s"}]
    for name in ("bank-a", "bank-b"):   # off by default: no endpoint, no port, no ServiceMonitor
        assert "metrics_listen" not in load_yaml_config(rendered[name])
        assert not by_kind(rendered[name], "ServiceMonitor")


def test_the_service_monitor_schema_catches_a_bad_endpoint():
    """Control: the vendored schema refuses what the CRD refuses (an unknown scheme, a malformed interval)."""
    validator = crd_validator("monitoring.coreos.com/v1", "ServiceMonitor")
    good = {"apiVersion": "monitoring.coreos.com/v1", "kind": "ServiceMonitor", "metadata": {"name": "x"},
            "spec": {"selector": {"matchLabels": {"a": "b"}}, "endpoints": [{"port": "metrics", "interval": "30s"}]}}
    assert not list(validator.iter_errors(good))
    for bad in ({"port": "metrics", "scheme": "ftp"}, {"port": "metrics", "interval": "30 seconds"}):
        assert list(validator.iter_errors({**good, "spec": {**good["spec"], "endpoints": [bad]}}))
    assert list(validator.iter_errors({**good, "spec": {"endpoints": []}}))   # selector is required


def test_retention_renders_into_node_config(helm):
    """Values `retention` is node.yaml's `retention` (docs/governance.md); unset, nothing is deleted."""
    from pathlib import Path

    from vfl.node.config import parse_node_config
    config = load_yaml_config(helm.template("bank-b", values=[BANK_B],
                                            sets=["retention.checkpoints=7", "retention.aligned_ids=0"]))
    assert parse_node_config(config, Path("/")).retention.days == {"checkpoints": 7, "aligned_ids": 0}
    assert "retention" not in load_yaml_config(helm.template("bank-b", values=[BANK_B]))
    with pytest.raises(HelmError):
        helm.template("bank-b", values=[BANK_B], sets=["retention.checkpoint=7"])   # a typo fails the install


def test_serving_port_and_values_render_into_node_config(rendered, helm):
    """serving.*: node.yaml's `serving` (models on the volume, limits per caller), the serving port in the container,
    the Service and the NetworkPolicy; off by default."""
    from pathlib import Path

    from vfl.node.config import DEFAULT_SCORE_RATE, RateLimit, parse_node_config
    docs = rendered["bank-a-with-serving"]
    config = load_yaml_config(docs)
    serving = parse_node_config(config, Path("/")).serving
    assert serving.listen == "0.0.0.0:50053" and serving.max_ids == 64 and serving.micro_batch
    credit = serving.models["credit"]
    assert credit.path == Path("/var/lib/vfl/models/credit") and credit.table == "applicants" and credit.job is None
    assert serving.rate_limit == DEFAULT_SCORE_RATE and serving.rate_limits == {"ops-bank-a": RateLimit(20.0, 20.0)}
    node = one(docs, "Deployment")["spec"]["template"]["spec"]["containers"][0]
    assert {"name": "serving", "containerPort": 50053, "protocol": "TCP"} in node["ports"]
    assert {"name": "serving", "port": 50053, "targetPort": "serving", "protocol": "TCP"} in \
        one(docs, "Service")["spec"]["ports"]
    [rule] = [r for r in one(docs, "NetworkPolicy")["spec"]["ingress"] if r["ports"] == [{"port": "serving",
                                                                                           "protocol": "TCP"}]]
    assert rule["from"] == [{"ipBlock": {"cidr": "10.20.0.0/16"}}]
    for name in ("bank-a", "bank-b"):
        assert "serving" not in load_yaml_config(rendered[name])
        assert all(p["name"] != "serving" for p in one(rendered[name], "Service")["spec"]["ports"])
    # registered without its own port: the models are served through the main port only
    models_only = load_yaml_config(helm.template("bank-a", values=[BANK_A], sets=SERVING_SETS[1:3]))
    assert "listen" not in models_only["serving"] and models_only["serving"]["models"]["credit"]["table"] == "applicants"


@pytest.mark.parametrize("sets, message", [
    (["serving.models.credit.path=../credit"], "serving.models.credit.path"),
    (["serving.models.credit.path=models/c", "serving.models.credit.table=nope"], "not one of this release's datasets"),
    (["serving.models.credit.table=applicants"], "give exactly one of path"),
    (["serving.missingIds=hide"], "missingIds"),
])
def test_bad_serving_values_are_refused_at_install(helm, sets, message):
    with pytest.raises(HelmError) as refused:
        helm.template("bank-a", values=[BANK_A], sets=sets)
    assert message in refused.value.stderr, refused.value.stderr


def test_roles_render_into_node_config(helm):
    """Values `roles` is node.yaml's `roles` (docs/governance.md); `admins` still means role train; unset, no client
    identity but the node's own has a role."""
    from pathlib import Path

    from vfl.node.config import parse_node_config
    config = load_yaml_config(helm.template("bank-a", values=[BANK_A],
                                            sets=["roles.risk-audit=read", "roles.scorer=predict", "admins={ops}"]))
    assert parse_node_config(config, Path("/")).roles == {"ops": "train", "risk-audit": "read", "scorer": "predict",
                                                          # the example's own
                                                          "ops-bank-a": "train", "risk-audit-bank-a": "read"}
    plain = load_yaml_config(helm.template("bank-b", values=[BANK_B]))
    assert "roles" not in plain and parse_node_config(plain, Path("/")).roles == {}
    with pytest.raises(HelmError) as info:
        helm.template("bank-b", values=[BANK_B], sets=["roles.auditor=admin"])   # not a role: the schema refuses
    assert "'/roles/auditor'" in info.value.stderr


def test_at_rest_encryption_renders_into_node_config_and_mounts_its_secrets(rendered):
    """Values `atRest` is node.yaml's `at_rest` (docs/governance.md): on by default with the node's own key on the
    volume; with keySecret and previousKeySecrets, those Secrets are mounted read-only into the node's container
    only (a training Job's client never reads job files) and named as at_rest.key and previous_keys."""
    from pathlib import Path

    from vfl.node.config import parse_node_config
    default = parse_node_config(load_yaml_config(rendered["bank-b"]), Path("/"))
    assert default.at_rest.encrypt and default.at_rest.key_is_default
    assert default.at_rest.key == Path("/var/lib/vfl/keys/at-rest.key")        # on the data volume
    docs = rendered["bank-b-with-at-rest-secrets"]
    config = parse_node_config(load_yaml_config(docs), Path("/"))
    assert config.at_rest.key == Path("/etc/vfl/at-rest/current/key") and not config.at_rest.key_is_default
    assert config.at_rest.previous_keys == (Path("/etc/vfl/at-rest/previous-0/key"),)
    pod = one(docs, "Deployment")["spec"]["template"]["spec"]
    secrets = {v["name"]: v["secret"]["secretName"] for v in pod["volumes"] if "secret" in v}
    assert secrets["at-rest-key"] == "bank-b-at-rest-2" and secrets["at-rest-previous-0"] == "bank-b-at-rest-1"
    mounts = {m["name"]: m for m in pod["containers"][0]["volumeMounts"]}
    assert mounts["at-rest-key"] == {"name": "at-rest-key", "mountPath": "/etc/vfl/at-rest/current", "readOnly": True}
    assert mounts["at-rest-previous-0"]["mountPath"] == "/etc/vfl/at-rest/previous-0"
    plain = one(rendered["bank-b"], "Deployment")["spec"]["template"]["spec"]["volumes"]
    assert not [v for v in plain if v["name"].startswith("at-rest")]
    job_pod = one(rendered["bank-a-with-job"], "Job")["spec"]["template"]["spec"]
    assert not [v for v in job_pod["volumes"] if v["name"].startswith("at-rest")]


def test_at_rest_encryption_can_be_turned_off(helm):
    from pathlib import Path

    from vfl.node.config import parse_node_config
    config = load_yaml_config(helm.template("bank-b", values=[BANK_B], sets=["atRest.encrypt=false"]))
    assert parse_node_config(config, Path("/")).at_rest.encrypt is False
    with pytest.raises(HelmError) as info:
        helm.template("bank-b", values=[BANK_B], sets=["atRest.keySecret=Bad_Name"])
    assert "'/atRest/keySecret'" in info.value.stderr
