"""Bad values fail at install time (values.schema.json and the chart's own checks), naming the bad key."""
from __future__ import annotations

import json

import pytest

from .conftest import BANK_A, BANK_B, CHART, HelmError


@pytest.mark.parametrize("sets, key", [
    (["role=boss"], "'/role'"),
    (["party=Bank_A"], "'/party'"),
    (["peers[0].address=vfl.bank-b.example.com"], "'/peers/0/address'"),      # no port
    (["peers[0].address=vfl.bank-b.example.com:99999"], "'/peers/0/address'"),
    (["peers=null"], "missing property 'peers'"),
    (["colour=red"], "'colour'"),                                               # unknown top-level key
    (["tls.secretName=Bank_TLS"], "'/tls/secretName'"),
    (["datasets.customers.id=null"], "'/datasets/customers/id'"),
    (["datasets.customers.colour=red"], "'colour'"),
    (["workers=0"], "'/workers'"),
    (["persistence.size=lots"], "'/persistence/size'"),
    (["resources.limits.cpu=two"], "'/resources/limits/cpu'"),
    (["service.type=Ingress"], "'/service/type'"),
    (["image.pullPolicy=Sometimes"], "'/image/pullPolicy'"),
    (["networkPolicy.from=everyone"], "'/networkPolicy/from'"),
    (["job.enabled=true", "job.spec.job_id=Credit_1", "job.spec.active=bank-a",
      "job.spec.parties.bank-a.dataset=customers"], "'/job/spec/job_id'"),
])
def test_schema_rejects_bad_values(helm, sets, key):
    with pytest.raises(HelmError) as info:
        helm.template("bank-a", values=[BANK_A], sets=sets)
    assert "schema" in info.value.stderr
    assert key in info.value.stderr, info.value.stderr


@pytest.mark.parametrize("values, sets, key", [
    (BANK_A, ["peers[0].name=bank-a"], "peers[0].name"),                       # itself as a peer
    (BANK_A, ["peers[1].name=bank-b", "peers[1].address=x.example.com:1"], "peers[1].name"),  # duplicate
    (BANK_B, ["certManager.issuerRef.name="], "certManager.issuerRef.name"),
    (BANK_B, ["job.enabled=true", "job.spec.job_id=j1", "job.spec.active=bank-b",
              "job.spec.parties.bank-b.dataset=accounts"], "job.enabled"),      # passive party
    (BANK_A, ["job.enabled=true"], "job.spec"),                                # no spec
    (BANK_A, ["job.enabled=true", "job.spec.job_id=j1", "job.spec.active=bank-b",
              "job.spec.parties.bank-a.dataset=customers"], "job.spec.active"),
])
def test_chart_checks_name_the_key(helm, values, sets, key):
    with pytest.raises(HelmError) as info:
        helm.template("release", values=[values], sets=sets)
    assert f"{key}:" in info.value.stderr, info.value.stderr


def test_required_values_have_no_usable_defaults(helm):
    """Installing without a party name fails on the schema rather than deploying a nameless node."""
    with pytest.raises(HelmError) as info:
        helm.template("x")
    assert "'/party'" in info.value.stderr and "'/peers'" in info.value.stderr


def test_schema_is_strict_everywhere():
    """Every object in the schema either lists its keys and refuses others, or describes free-form maps."""
    schema = json.loads((CHART / "values.schema.json").read_text())
    free_form = {"annotations", "from", "probeFrom", "spec", "datasets"}

    def walk(node, path):
        if isinstance(node, dict):
            if node.get("type") == "object" and "properties" in node and path[-1] not in free_form:
                assert node.get("additionalProperties") is False, "/".join(path)
            for k, v in node.items():
                walk(v, path + [k])
        elif isinstance(node, list):
            for i, v in enumerate(node):
                walk(v, path + [str(i)])
    walk(schema, ["root"])
