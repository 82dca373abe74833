"""charts/vfl-party with ray.enabled: a KubeRay RayCluster (ray.io/v1) for the party, validated against the
RayCluster schema (tests/deploy/schemas/raycluster-v1.json) with its pod templates validated as core/v1
PodTemplates by kubernetes-validate; the node config points the node at it; NetworkPolicies keep Ray's ports
inside the namespace."""
from __future__ import annotations

import copy
import json

import jsonschema
import kubernetes_validate.utils as kv_utils
import pytest
import yaml

from vfl.node.config import parse_node_config

from .conftest import BANK_A, BANK_B, KUBE_VERSION, HelmError, REPO, by_kind, one

SCHEMA = REPO / "tests" / "deploy" / "schemas" / "raycluster-v1.json"
RAY = ["ray.enabled=true"]


@pytest.fixture(scope="module")
def validator() -> jsonschema.Draft7Validator:
    schema = json.loads(SCHEMA.read_text())
    jsonschema.Draft7Validator.check_schema(schema)
    return jsonschema.Draft7Validator(schema)


@pytest.fixture(scope="module")
def with_ray(helm) -> list[dict]:
    return helm.template("bank-a", values=[BANK_A], sets=RAY + ["ray.workers.maxReplicas=16", "ray.keyActors=4"])


def node_config(docs: list[dict]) -> dict:
    return yaml.safe_load(one(docs, "ConfigMap", "node")["data"]["node.yaml"])


def pod_template_errors(template: dict) -> list[str]:
    """A RayCluster's pod template is a core/v1 PodTemplateSpec: validate it as a PodTemplate, strictly."""
    doc = {"apiVersion": "v1", "kind": "PodTemplate", "metadata": {"name": "t"}, "template": template}
    try:
        kv_utils.validate(doc, KUBE_VERSION, strict=True)
    except kv_utils.ValidationError as exc:
        return [f"{'.'.join(map(str, exc.path))}: {exc.message}"]
    return []


def test_the_raycluster_passes_its_schema_and_its_pod_templates_kubernetes_validate(with_ray, validator):
    cluster = one(with_ray, "RayCluster")
    assert cluster["apiVersion"] == "ray.io/v1" and cluster["metadata"]["name"] == "bank-a-vfl-ray"
    errors = [f"{'.'.join(map(str, e.absolute_path))}: {e.message}" for e in validator.iter_errors(cluster)]
    assert not errors, errors
    spec = cluster["spec"]
    templates = [spec["headGroupSpec"]["template"]] + [g["template"] for g in spec["workerGroupSpecs"]]
    for template in templates:
        assert not pod_template_errors(template), pod_template_errors(template)
        container = template["spec"]["containers"][0]
        assert container["securityContext"]["readOnlyRootFilesystem"] is True
        assert {m["mountPath"] for m in container["volumeMounts"]} == {"/tmp", "/dev/shm"}
    # the values reach the cluster: autoscaling bounds, resources, the head kept for the GCS
    group = spec["workerGroupSpecs"][0]
    assert (group["minReplicas"], group["replicas"], group["maxReplicas"]) == (1, 1, 16)
    assert spec["enableInTreeAutoscaling"] is True and spec["autoscalerOptions"]["upscalingMode"] == "Default"
    assert spec["headGroupSpec"]["rayStartParams"]["num-cpus"] == "0"
    assert group["template"]["spec"]["containers"][0]["resources"]["limits"]["cpu"] == "4"
    assert spec["rayVersion"] == "2.60.0"


def test_the_schema_catches_what_kuberay_would_refuse(with_ray, validator):
    base = one(with_ray, "RayCluster")

    def broken(change) -> bool:
        doc = copy.deepcopy(base)
        change(doc["spec"])
        return bool(list(validator.iter_errors(doc)))

    assert broken(lambda s: s.update(headgroupSpec=s["headGroupSpec"]))                      # a typo
    assert broken(lambda s: s["headGroupSpec"].pop("template"))                              # required
    assert broken(lambda s: s["workerGroupSpecs"][0].pop("groupName"))
    assert broken(lambda s: s["workerGroupSpecs"][0]["rayStartParams"].update({"num-cpus": 4}))   # not a string
    assert broken(lambda s: s["autoscalerOptions"].update(upscalingMode="Fast"))
    assert broken(lambda s: s["workerGroupSpecs"][0].update(maxReplicas="16"))
    template = copy.deepcopy(base["spec"]["headGroupSpec"]["template"])
    template["spec"]["containers"][0]["resource"] = {}                                       # caught as a pod template
    assert pod_template_errors(template)


def test_the_node_is_pointed_at_the_cluster_s_head(with_ray):
    config = node_config(with_ray)
    assert config["compute"] == {"backend": "ray", "address": "bank-a-vfl-ray-head-svc:6379", "key_actors": 4}
    parsed = parse_node_config({**config, "tls": None, "insecure": True}, REPO)
    assert parsed.compute.backend == "ray" and parsed.compute.address == "bank-a-vfl-ray-head-svc:6379"


def test_ray_s_ports_answer_only_this_namespace(with_ray):
    ray_policy = one(with_ray, "NetworkPolicy", "ray")
    spec = ray_policy["spec"]
    assert spec["podSelector"] == {"matchLabels": {"ray.io/cluster": "bank-a-vfl-ray"}}
    assert spec["policyTypes"] == ["Ingress"]
    # one rule, from pods of this namespace only: no namespaceSelector, no ipBlock, on every port
    assert spec["ingress"] == [{"from": [{"podSelector": {}}]}]
    # the node (the Ray driver) accepts the Ray pods' calls back to it
    node_rules = one(with_ray, "NetworkPolicy", "node")["spec"]["ingress"]
    assert {"from": [{"podSelector": {"matchLabels": {"ray.io/cluster": "bank-a-vfl-ray"}}}]} in node_rules
    for doc in by_kind(with_ray, "NetworkPolicy"):
        kv_utils.validate(doc, KUBE_VERSION, strict=True)


def test_without_ray_the_node_computes_locally_and_nothing_of_ray_renders(helm):
    docs = helm.template("bank-b", values=[BANK_B])
    assert not by_kind(docs, "RayCluster")
    assert all("ray.io/cluster" not in json.dumps(d) for d in docs)
    assert node_config(docs)["compute"] == {"backend": "local"}


def test_an_existing_cluster_is_used_by_its_address(helm):
    docs = helm.template("bank-b", values=[BANK_B], sets=RAY + ["ray.address=shared-ray-head-svc:6379"])
    assert not by_kind(docs, "RayCluster") and len(by_kind(docs, "NetworkPolicy")) == 1
    assert node_config(docs)["compute"] == {"backend": "ray", "address": "shared-ray-head-svc:6379"}


@pytest.mark.parametrize("sets,message", [
    (["ray.address=head"], r"ray.address: \"head\" is not host:port"),
    (["ray.workers.minReplicas=3", "ray.workers.replicas=2"], r"ray.workers: need minReplicas <= replicas <= maxReplicas"),
    (["ray.autoscaling.upscalingMode=Fast"], r"upscalingMode"),
    (["ray.head.numCpus=two"], r"numCpus"),
])
def test_bad_ray_values_are_refused(helm, sets, message):
    with pytest.raises(HelmError, match=message):
        helm.template("bank-a", values=[BANK_A], sets=RAY + sets)


def test_lint_strict_with_ray(helm):
    assert "1 chart(s) linted, 0 chart(s) failed" in helm.lint(values=[BANK_A], sets=RAY)
