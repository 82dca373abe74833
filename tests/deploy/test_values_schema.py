"""Bad values fail at install time (values.schema.json and the chart's own checks), naming the bad key.

Structure (types, known keys, enums, ranges) is the schema's job. Formats whose schema error would print a bare
regular expression (names, addresses, identities, CIDRs, data paths, job ids) are checked by the chart's templates
(_helpers.tpl), whose messages name the key, say what is expected and give an example. The template patterns are
compared here with the program's own rules (vfl/node/config.py, vfl/job/spec.py, Python's ipaddress).
"""
from __future__ import annotations

import ipaddress
import json
import re
from dataclasses import fields

import pytest
import yaml

from .conftest import BANK_A, BANK_B, CHART, HelmError, small_job_spec

HELPERS = (CHART / "templates" / "_helpers.tpl").read_text()
SCHEMA = json.loads((CHART / "values.schema.json").read_text())
JOB_SETS = ["job.enabled=true", "job.spec.job_id=j1", "job.spec.active=bank-a",
            "job.spec.parties.bank-a.dataset=customers", "job.spec.parties.bank-b.dataset=accounts"]


@pytest.mark.parametrize("kw, key", [
    ({"sets": ["role=boss"]}, "'/role'"),
    ({"sets": ["peers=null"]}, "missing property 'peers'"),
    ({"sets": ["colour=red"]}, "'colour'"),                                               # unknown top-level key
    ({"sets": ["tls.secretName=Bank_TLS"]}, "'/tls/secretName'"),
    ({"sets": ["datasets.customers.id=null"]}, "'/datasets/customers/id'"),
    ({"sets": ["datasets.customers.colour=red"]}, "'colour'"),
    ({"sets": ["workers=0"]}, "'/workers'"),
    ({"set_strings": ["reportHandlerTiming=yes"]}, "'/reportHandlerTiming'"),
    ({"sets": ["persistence.size=lots"]}, "'/persistence/size'"),
    ({"sets": ["persistence.size=-5Gi"]}, "'/persistence/size'"),
    ({"sets": ["resources.limits.cpu=two"]}, "'/resources/limits/cpu'"),
    ({"sets": ["resources.limits.cpu=-1"]}, "'/resources/limits/cpu'"),                  # a number: minimum
    ({"set_strings": ["resources.limits.cpu=-1"]}, "'/resources/limits/cpu'"),           # a string: pattern
    ({"sets": ["resources.requests.memory=-2Gi"]}, "'/resources/requests/memory'"),
    ({"sets": ["resources.requests.memory=2GB"]}, "'/resources/requests/memory'"),
    ({"sets": ["job.resources.limits.memory=-512Mi"]}, "'/job/resources/limits/memory'"),
    ({"sets": ["service.type=Ingress"]}, "'/service/type'"),
    ({"sets": ["image.pullPolicy=Sometimes"]}, "'/image/pullPolicy'"),
    ({"sets": ["networkPolicy.from=everyone"]}, "'/networkPolicy/from'"),
    # NetworkPolicyPeer keys only (kubernetes-validate refuses the rendered policy otherwise)
    ({"sets": ["networkPolicy.from[0].cidr=203.0.113.0/24"]}, "additional properties 'cidr' not allowed"),
    ({"sets": ["networkPolicy.probeFrom[0].cidr=10.0.0.0/8"]}, "'/networkPolicy/probeFrom/0'"),
    ({"sets": ["networkPolicy.from[1].ipBlock.except[0]=10.0.0.0/8"]}, "missing property 'cidr'"),
    ({"sets": ["networkPolicy.from[0].ipBlock.cidr=10.0.0.0/8", "networkPolicy.from[0].ipBlock.range=x"]},
     "'/networkPolicy/from/0/ipBlock'"),
    ({"sets": ["networkPolicy.from[0].ipBlock.cidr=10.0.0.0/8",                          # ipBlock with a selector
               "networkPolicy.from[0].podSelector.matchLabels.app=x"]}, "'/networkPolicy/from/0'"),
    ({"sets": ["networkPolicy.from[1].podSelector.matchLabel.app=x"]}, "'matchLabel'"),
    ({"sets": ["networkPolicy.from[1].namespaceSelector.matchExpressions[0].key=team",
               "networkPolicy.from[1].namespaceSelector.matchExpressions[0].operator=Like"]},
     "'/networkPolicy/from/1/namespaceSelector/matchExpressions/0/operator'"),
    ({"sets": ["networkPolicy.from[1]=null"]}, "'/networkPolicy/from/1'"),
    ({"sets": ["limits.openJobsPerMinute=0"]}, "'/limits/openJobsPerMinute'"),
    ({"set_strings": ["limits.openJobsPerMinute=30"]}, "'/limits/openJobsPerMinute'"),
    ({"sets": ["limits.burst=60"]}, "'burst'"),
    ({"sets": ["policy.maxHiddenWidth=0"]}, "'/policy/maxHiddenWidth'"),
    ({"set_strings": ["policy.maxEpochs=10"]}, "'/policy/maxEpochs'"),
    ({"sets": ["policy.maxKeyBits=5000"]}, "'/policy/maxKeyBits'"),
    ({"sets": ["policy.maxWidth=5"]}, "'maxWidth'"),
    ({"sets": ["timeouts.callSeconds=0"]}, "'/timeouts/callSeconds'"),
    ({"sets": ["timeouts.resumeWait=5"]}, "'resumeWait'"),
])
def test_schema_rejects_bad_values(helm, kw, key):
    with pytest.raises(HelmError) as info:
        helm.template("bank-a", values=[BANK_A], **kw)
    assert "schema" in info.value.stderr
    assert key in info.value.stderr, info.value.stderr


# (values file, helm arguments, the message's beginning, a fragment saying what is expected)
READABLE = [
    (BANK_A, {"sets": ["party=Bank_A"]}, 'party: "Bank_A" is not a valid party name', "(e.g. bank-a)"),
    (BANK_A, {"sets": ["party=-bank"]}, 'party: "-bank" is not a valid party name', "lowercase letters"),
    (BANK_A, {"sets": ["peers[0].name=Bank_B"]}, 'peers[0].name: "Bank_B" is not a valid party name', "e.g. bank-a"),
    (BANK_A, {"sets": ["peers[0].address=vfl.bank-b.example.com"]},
     'peers[0].address: "vfl.bank-b.example.com" is not host:port', "e.g. vfl.bank-b.example.com:443"),
    (BANK_A, {"sets": ["peers[0].address=vfl.bank-b.example.com:99999"]},
     'peers[0].address: "vfl.bank-b.example.com:99999" is not host:port', "port from 1 to 65535"),
    (BANK_A, {"sets": ["peers[0].address=vfl.bank-b.example.com:0"]}, "peers[0].address:", "port from 1 to 65535"),
    (BANK_A, {"set_strings": ["identity=*"]}, 'identity: "*": wildcard identities are not allowed', "e.g. bank-b"),
    (BANK_A, {"sets": ["identity=*.bank-a.example.com"]}, "identity:", "wildcard identities are not allowed"),
    (BANK_A, {"sets": ["identity=bank_a"]}, 'identity: "bank_a" is not a DNS name', "e.g. bank-b"),
    (BANK_A, {"sets": ["identity=vfl..bank-a.example.com"]}, "identity:", "is not a DNS name"),
    (BANK_A, {"sets": ["peers[0].identity=*.bank-b.example.com"]}, "peers[0].identity:", "wildcard"),
    (BANK_A, {"set_strings": ["admins[0]=*"]}, 'admins[0]: "*": wildcard identities are not allowed', "ops-bank-a"),
    (BANK_A, {"set_strings": ["roles.*=read"]}, 'roles: "*": wildcard identities are not allowed', "ops-bank-a: train"),
    (BANK_A, {"sets": ["roles.bank-b=read"]}, 'roles.bank-b: "bank-b" is the identity of peers[0] (bank-b)',
     "give the client its own certificate identity"),
    (BANK_A, {"sets": ["admins={ops}", "roles.ops=read"]}, 'roles.ops: "ops" is also listed in admins',
     "list it in one place"),
    (BANK_A, {"sets": ["roles.bank-a=read"]}, "roles.bank-a: \"bank-a\" is this node's own identity",
     "remove the entry"),
    (BANK_A, {"sets": ["service.loadBalancerSourceRanges[0]=999.1.1.1/99"]},
     'service.loadBalancerSourceRanges[0]: "999.1.1.1/99" is not a CIDR', "e.g. 203.0.113.0/24"),
    (BANK_A, {"sets": ["service.loadBalancerSourceRanges[0]=203.0.113.0"]}, "service.loadBalancerSourceRanges[0]:",
     "prefix length"),
    (BANK_A, {"sets": ["networkPolicy.from[0].ipBlock.cidr=10.0.0.0/33"]},
     'networkPolicy.from[0].ipBlock.cidr: "10.0.0.0/33" is not a CIDR', "e.g. 203.0.113.0/24"),
    (BANK_B, {"sets": ["networkPolicy.probeFrom[0].ipBlock.cidr=10.0.0.0/8",
                       "networkPolicy.probeFrom[0].ipBlock.except[0]=10.1.0.0/16x"]},
     "networkPolicy.probeFrom[0].ipBlock.except[0]:", "is not a CIDR"),
    (BANK_A, {"sets": ["datasets.customers.path=../secrets.csv"]},
     'datasets.customers.path: "../secrets.csv" must be a path relative to the data directory /var/lib/vfl/data',
     "e.g. customers.csv"),
    (BANK_A, {"sets": ["datasets.customers.path=2024/../../x.csv"]}, "datasets.customers.path:", "without '..'"),
    (BANK_A, {"sets": ["datasets.customers.path=/etc/vfl/tls/tls.key"]}, "datasets.customers.path:", "relative"),
    (BANK_A, {"sets": ["datasets.customers.path=./customers.csv"]}, "datasets.customers.path:", "relative"),
    (BANK_A, {"sets": JOB_SETS + ["job.spec.job_id=Credit_1"]}, 'job.spec.job_id: "Credit_1" must be',
     "lowercase letters, digits or '-'"),
]


@pytest.mark.parametrize("values, kw, message, expected", READABLE,
                         ids=[" ".join(kw.get("sets", []) + kw.get("set_strings", []))[-60:] for _, kw, _, _ in READABLE])
def test_format_errors_are_readable(helm, values, kw, message, expected):
    """The message names the key, says what is expected with an example, and prints no regular expression."""
    with pytest.raises(HelmError) as info:
        helm.template("release", values=[values], **kw)
    err = info.value.stderr
    assert message in err and expected in err, err
    assert "pattern" not in err and "^" not in err and "{0," not in err, err


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


# ---------------------------------------------------------------------------------------------- job spec keys

@pytest.mark.parametrize("sets, key", [
    (["job.spec.train.epoch=3"], "job.spec.train.epoch: unknown key"),
    (["job.spec.colour=red"], "job.spec.colour: unknown key"),
    (["job.spec.model.bottom.outs=3"], "job.spec.model.bottom.outs: unknown key"),
    (["job.spec.model.top.out=3"], "job.spec.model.top.out: unknown key"),          # the top model has no `out`
    (["job.spec.model.bottom_overrides.bank-b.hiden[0]=4"], "job.spec.model.bottom_overrides.bank-b.hiden:"),
    (["job.spec.parties.bank-b.data=accounts"], "job.spec.parties.bank-b.data: unknown key"),
    (["job.spec.crypto.keybits=2048"], "job.spec.crypto.keybits: unknown key"),
    (["job.spec.privacy.defence=dp"], "job.spec.privacy.defence: unknown key"),
    (["job.spec.train=5"], "job.spec.train: must be a mapping"),
])
def test_job_spec_unknown_keys_fail_at_install(helm, sets, key):
    with pytest.raises(HelmError) as info:
        helm.template("bank-a", values=[BANK_A], sets=JOB_SETS + sets)
    assert key in info.value.stderr, info.value.stderr
    assert "takes" in info.value.stderr or "mapping" in info.value.stderr   # says what the section accepts


def test_job_spec_text_is_checked_too(helm, tmp_path):
    """--set-file job.spec=train.yaml (YAML text, which the schema cannot look into) gets the same check."""
    spec = small_job_spec("j1")
    spec["train"]["epoch"] = spec["train"].pop("epochs")
    path = tmp_path / "train.yaml"
    path.write_text(yaml.safe_dump(spec))
    with pytest.raises(HelmError) as info:
        helm.template("bank-a", values=[BANK_A], sets=["job.enabled=true"], set_files=[f"job.spec={path}"])
    assert "job.spec.train.epoch: unknown key; job.spec.train takes epochs, batch_size" in info.value.stderr


def test_every_key_the_node_knows_is_accepted(helm, tmp_path):
    """The node's own full rendering of a spec (every section, every key) passes the chart's key check."""
    from vfl.job.spec import parse_job_spec, spec_to_yaml_dict
    spec = small_job_spec("j1")
    spec["model"]["bottom_overrides"] = {"bank-b": {"hidden": [4], "out": 4}}
    spec["positive_class"] = "1"
    spec.setdefault("train", {})["early_stopping"] = {"patience": 2}
    full = spec_to_yaml_dict(parse_job_spec(spec))
    full["model_job"] = "earlier-job"
    path = tmp_path / "full.yaml"
    path.write_text(yaml.safe_dump(full))
    docs = helm.template("bank-a", values=[BANK_A], sets=["job.enabled=true"], set_files=[f"job.spec={path}"])
    assert any(d["kind"] == "Job" for d in docs)


def test_job_spec_key_table_matches_the_node():
    from vfl.job import spec as js
    table = yaml.safe_load(re.search(r'define "vfl-party.jobSpecKeys" -}}\n(.*?)\n{{- end }}', HELPERS, re.S).group(1))

    def names(cls, drop=()):
        return {f.name for f in fields(cls)} - set(drop)

    assert set(table["train"]) == names(js.TrainSpec)
    assert set(table["early_stopping"]) == names(js.EarlyStoppingSpec)
    assert set(table["crypto"]) == names(js.CryptoSpec)
    assert set(table["split"]) == names(js.SplitSpec)
    assert set(table["psi"]) == names(js.PsiSpec)
    assert set(table["privacy"]) == names(js.PrivacySpec)
    assert set(table["override"]) == names(js.MlpSpec)                  # a party's own bottom model may name a module
    assert set(table["mlp"]) == names(js.MlpSpec, drop={"module"})      # model.bottom may not (vfl/job/spec.py)
    assert set(table["top"]) == names(js.MlpSpec, drop={"out", "module"})
    full = js.spec_to_yaml_dict(js.parse_job_spec(small_job_spec()))
    assert set(table["spec"]) == set(full) | {"model_job", "positive_class"}
    assert set(table["model"]) == set(full["model"])
    assert set(table["interactive"]) == set(full["model"]["interactive"])
    assert set(table["party"]) == set(next(iter(full["parties"].values())))


# ---------------------------------------------------------------------------------------------- the patterns

def template_pattern(name: str) -> re.Pattern:
    m = re.search(r'define "vfl-party\.' + name + r'" -}}(.*?){{- end }}', HELPERS)
    return re.compile(m.group(1))


def test_party_name_pattern_is_the_nodes():
    from vfl.config_util import _NAME
    assert template_pattern("partyNamePattern").pattern == _NAME.pattern


def test_key_sizes_are_the_engines():
    """The chart cannot import Python, so a test keeps its list of key sizes equal to the one source."""
    from vfl.he.keys import ALLOWED_KEY_BITS
    assert SCHEMA["properties"]["policy"]["properties"]["minKeyBits"]["enum"] == list(ALLOWED_KEY_BITS)


CIDRS = ["10.0.0.0/8", "0.0.0.0/0", "255.255.255.255/32", "203.0.113.7/24", "::/0", "2001:db8::/32", "fe80::1/64",
         "1:2:3:4:5:6:7:8/128", "1::/0", "::1/128", "2001:DB8::/48",
         "999.1.1.1/99", "10.0.0.0/33", "1.2.3/8", "01.2.3.4/8", "10.0.0.0", "10.0.0.0/", "10.0.0.0/08", "::/129",
         "1::2::3/64", "1:2:3:4:5:6:7:8:9/64", "gggg::/16", "2001:db8::/032", "::ffff:1.2.3.4/96", "", "/8",
         "10.0.0.0/8 ", " 10.0.0.0/8"]


@pytest.mark.parametrize("cidr", CIDRS)
def test_cidr_pattern_agrees_with_ipaddress(cidr):
    def valid(text):
        address, _, prefix = text.partition("/")
        if not prefix.isdigit() or (len(prefix) > 1 and prefix[0] == "0") or "." in address and ":" in address:
            return False   # IPv4-mapped IPv6 and zero-padded prefixes are refused, as Kubernetes' strict checks do
        try:
            ipaddress.ip_network(text, strict=False)
            return True
        except ValueError:
            return False
    assert bool(template_pattern("cidrPattern").match(cidr)) == valid(cidr)


@pytest.mark.parametrize("path, ok", [
    ("customers.csv", True), ("2024/q1/customers.csv", True), (".hidden.csv", True), ("..customers.csv", True),
    ("a..b/c", True), ("..", False), (".", False), ("../x.csv", False), ("a/../../x", False), ("a/./b", False),
    ("/var/lib/vfl/data/x.csv", False), ("a//b", False), ("a/", False), ("", False),
])
def test_data_path_pattern(path, ok):
    assert bool(template_pattern("dataPathPattern").match(path)) == ok


@pytest.mark.parametrize("name, ok", [
    ("bank-b", True), ("vfl.bank-b.example.com", True), ("a", True), ("x" * 63, True), ("x" * 64, False),
    ("*", False), ("*.example.com", False), ("a..b", False), ("-a", False), ("a-", False), ("Bank", False),
    ("bank_b", False), ("", False), ("a.", False),
])
def test_identity_pattern(name, ok):
    assert bool(template_pattern("dnsNamePattern").match(name)) == ok


@pytest.mark.parametrize("address", ["vfl.bank-b.example.com:443", "127.0.0.1:50051", "[2001:db8::7]:443",
                                     "host:1", "host:65535", "host:0", "host:65536", "host", "host:", ":443",
                                     "host:+443", "a b:443"])
def test_address_pattern_agrees_with_the_node(address):
    from vfl.errors import ConfigError
    from vfl.config_util import check_address
    try:
        check_address(address, "x")
        node_ok = True
    except ConfigError:
        node_ok = False
    assert bool(template_pattern("addressPattern").match(address)) == node_ok


@pytest.mark.parametrize("quantity, ok", [
    ("2", True), ("500m", True), ("0.5", True), (".5", True), ("1.5Gi", True), ("4Gi", True), ("1e3", True),
    ("2G", True), ("100Ki", True), ("+1", True), ("0", True),
    ("-1", False), ("-2Gi", False), ("two", False), ("2GB", False), ("1.5.5", False), ("Gi", False), ("", False),
    ("2 Gi", False), ("1Gib", False),
])
def test_quantity_pattern(quantity, ok):
    assert bool(re.match(SCHEMA["definitions"]["quantity"]["pattern"], quantity)) == ok


def test_unusual_but_valid_values_render(helm):
    """IPv6 peers and CIDRs, FQDN identities, nested data paths, selectors, numeric and exponent quantities."""
    docs = helm.template("edge", sets=[
        "party=p1.example", "role=passive", "identity=vfl.p1.example.com",
        "peers[0].name=p2", "peers[0].address=[2001:db8::7]:443", "peers[0].identity=vfl.p2.example.com",
        "datasets.t.path=2024/q1/customers.csv", "datasets.t.id=id",
        "service.type=LoadBalancer", "service.loadBalancerSourceRanges[0]=2001:db8::/32",
        "networkPolicy.from[0].namespaceSelector.matchLabels.team=ml",
        "networkPolicy.from[0].podSelector.matchExpressions[0].key=app",
        "networkPolicy.from[0].podSelector.matchExpressions[0].operator=Exists",
        "networkPolicy.from[1].ipBlock.cidr=2001:db8::/32", "networkPolicy.from[1].ipBlock.except[0]=2001:db8:1::/48",
        "resources.requests.cpu=0.5", "resources.requests.memory=1e9", "resources.limits.cpu=2"])
    config = yaml.safe_load(next(d for d in docs if d["kind"] == "ConfigMap")["data"]["node.yaml"])
    assert config["peers"][0]["address"] == "[2001:db8::7]:443"


def test_required_values_have_no_usable_defaults(helm):
    """Installing without a party name fails on the schema rather than deploying a nameless node."""
    with pytest.raises(HelmError) as info:
        helm.template("x")
    assert "'/party'" in info.value.stderr and "'/peers'" in info.value.stderr


def test_schema_is_strict_everywhere():
    """Every object in the schema either lists its keys and refuses others, or describes free-form maps."""
    free_form = {"annotations", "spec", "datasets"}

    def walk(node, path):
        if isinstance(node, dict):
            if node.get("type") == "object" and "properties" in node and path[-1] not in free_form:
                assert node.get("additionalProperties") is False, "/".join(path)
            for k, v in node.items():
                walk(v, path + [k])
        elif isinstance(node, list):
            for i, v in enumerate(node):
                walk(v, path + [str(i)])
    walk(SCHEMA, ["root"])
