"""Every example's Kubernetes values (examples/*/k8s) lint strictly, render manifests Kubernetes accepts, and deploy the
same node as the example's local node.yaml: same party, role, peers (by name and identity) and datasets (the same
files, ids, labels, categories, fills and ID formats)."""
from __future__ import annotations

from pathlib import Path

import kubernetes_validate.utils as kv_utils
import pytest
import yaml

from vfl.node.config import parse_node_config

from .conftest import KUBE_VERSION, REPO, one

EXAMPLE_VALUES = sorted((REPO / "examples").glob("*/k8s/*-values.yaml"))


def test_every_example_with_nodes_has_values_for_each_party():
    for example in ("bank-credit", "hospitals"):
        parties = {p.parent.name for p in (REPO / "examples" / example).glob("*/node.yaml")}
        with_values = {p.name.removesuffix("-values.yaml") for p in EXAMPLE_VALUES if p.parts[-3] == example}
        assert parties and parties == with_values, example


def datasets(config: dict) -> dict:
    """Datasets without the directory part of their path (the volume and the local data dir differ)."""
    return {name: {**ds, "path": Path(ds["path"]).name} for name, ds in (config.get("datasets") or {}).items()}


@pytest.mark.parametrize("values", EXAMPLE_VALUES, ids=lambda p: f"{p.parts[-3]}/{p.stem}")
def test_example_values_deploy_the_local_node(helm, values):
    assert "1 chart(s) linted, 0 chart(s) failed" in helm.lint(values=[values])
    party = values.name.removesuffix("-values.yaml")
    docs = helm.template(party, values=[values])
    for doc in docs:   # cert-manager's Certificate has no schema here; test_chart.py checks it against ours
        if doc["apiVersion"] != "cert-manager.io/v1":
            kv_utils.validate(doc, KUBE_VERSION, strict=True)
    deployed = yaml.safe_load(one(docs, "ConfigMap", "node")["data"]["node.yaml"])
    local = yaml.safe_load((values.parents[1] / party / "node.yaml").read_text())
    parse_node_config(deployed, Path("/"))   # the node accepts what the chart writes
    assert (deployed["party"], deployed["role"]) == (local["party"], local["role"])
    assert [(p["name"], p["identity"]) for p in deployed["peers"]] == \
        [(p["name"], p["identity"]) for p in local["peers"]]
    assert datasets(deployed) == datasets(local)
