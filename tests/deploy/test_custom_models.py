"""Custom bottom models on Kubernetes: the chart's `models` and `extraPythonPath` values.

`models` (name -> "package.module:factory") becomes node.yaml's `models:`; `extraPythonPath` (a directory on the data
volume) becomes the node container's PYTHONPATH. Bad names and import paths fail at install time with messages that
name the key and give an example. tests/deploy/test_loopback_release.py runs a job in which bank-b's release uses a
custom bottom imported from its volume through extraPythonPath.
"""
from __future__ import annotations

import re
from pathlib import Path

import pytest
import yaml

from vfl.node.config import parse_node_config

from .conftest import BANK_A, BANK_B, CHART, HelmError, by_kind, one, small_job_spec
from .materialize import container

HELPERS = (CHART / "templates" / "_helpers.tpl").read_text()
MODELS = {"ln": "bank_models.nets:layernorm_bottom", "tab.v2": "org_models.factories:Tabular.build",
          "_Wide-1": "wide:make"}


def values_file(tmp_path: Path, name: str, values: dict) -> Path:
    path = tmp_path / f"{name}.yaml"
    path.write_text(yaml.safe_dump(values))
    return path


def node_config(docs: list[dict]) -> dict:
    return yaml.safe_load(one(docs, "ConfigMap", "node")["data"]["node.yaml"])


def env_of(ctr: dict) -> dict[str, str]:
    return {e["name"]: e["value"] for e in ctr.get("env") or []}


def template_pattern(name: str) -> str:
    return re.search(r'define "vfl-party\.' + name + r'" -}}(.*?){{- end }}', HELPERS).group(1)


def test_models_render_into_node_config(helm, tmp_path):
    extra = values_file(tmp_path, "models", {"models": MODELS, "extraPythonPath": "python"})
    docs = helm.template("bank-b", values=[BANK_B, extra])
    cfg = node_config(docs)
    assert cfg["models"] == MODELS
    assert parse_node_config(cfg, Path("/")).models == MODELS   # the node accepts what the chart writes
    pod = one(docs, "Deployment")["spec"]["template"]["spec"]
    node = container(pod, "node")
    assert env_of(node)["PYTHONPATH"] == "/var/lib/vfl/python"
    # the directory is on the data volume: the persistent claim mounted at /var/lib/vfl
    mounts = {m["mountPath"]: m["name"] for m in node["volumeMounts"]}
    volumes = {v["name"]: v for v in pod["volumes"]}
    assert "persistentVolumeClaim" in volumes[mounts["/var/lib/vfl"]]


def test_without_models_nothing_changes(helm):
    docs = helm.template("bank-b", values=[BANK_B])
    assert "models" not in node_config(docs)
    pod = one(docs, "Deployment")["spec"]["template"]["spec"]
    assert "PYTHONPATH" not in env_of(container(pod, "node"))


def test_active_release_with_job_using_its_own_model(helm, tmp_path):
    """The Job's own override names one of the release's models; Job pods (no data volume) get no PYTHONPATH."""
    spec = small_job_spec("j1")
    spec["model"]["bottom_overrides"] = {"bank-a": {"module": "ln"}}
    extra = values_file(tmp_path, "job", {"models": {"ln": MODELS["ln"]}, "extraPythonPath": "code/python",
                                          "job": {"enabled": True, "spec": spec}})
    docs = helm.template("bank-a", values=[BANK_A, extra])
    assert node_config(docs)["models"] == {"ln": MODELS["ln"]}
    node = container(one(docs, "Deployment")["spec"]["template"]["spec"], "node")
    assert env_of(node)["PYTHONPATH"] == "/var/lib/vfl/code/python"
    job_spec = yaml.safe_load(one(docs, "ConfigMap", "job")["data"]["job.yaml"])
    assert job_spec["model"]["bottom_overrides"]["bank-a"]["module"] == "ln"
    pod = one(docs, "Job")["spec"]["template"]["spec"]
    for ctr in pod["initContainers"] + pod["containers"]:
        assert "PYTHONPATH" not in env_of(ctr), ctr["name"]
        assert not any(m["mountPath"].startswith("/var/lib/vfl") for m in ctr["volumeMounts"]), ctr["name"]


def test_another_partys_model_is_not_checked_here(helm):
    """Only bank-b's node knows bank-b's models: a job naming one renders at bank-a."""
    docs = helm.template("bank-a", values=[BANK_A], sets=[
        "job.enabled=true", "job.spec.job_id=j1", "job.spec.active=bank-a", "job.spec.parties.bank-a.dataset=customers",
        "job.spec.parties.bank-b.dataset=accounts", "job.spec.model.bottom_overrides.bank-b.module=tabular"])
    assert by_kind(docs, "Job")


def test_config_checksum_ignores_models_but_not_the_python_path(helm):
    """The node re-reads models for every job (as it does datasets); PYTHONPATH is read at start-up."""
    def template(*sets):
        return one(helm.template("bank-b", values=[BANK_B], sets=list(sets)), "Deployment")["spec"]["template"]

    def checksum(*sets):
        return template(*sets)["metadata"]["annotations"]["vfl.dev/config-checksum"]

    base = template()
    assert checksum("models.ln=bank_models.nets:layernorm_bottom") == checksum()
    with_path = template("extraPythonPath=python")
    assert with_path["spec"] != base["spec"]   # a new pod template: Kubernetes restarts the node


# (values, the message's beginning, a fragment saying what is expected)
READABLE = [
    ({"models": {"ln": "bank_models.nets"}}, 'models.ln: "bank_models.nets" is not an import path',
     "e.g. bank_models.nets:tabular_bottom"),
    ({"models": {"ln": "a.b:c:d"}}, 'models.ln: "a.b:c:d" is not an import path', "package.module:factory"),
    ({"models": {"ln": "bank-models.nets:f"}}, 'models.ln: "bank-models.nets:f" is not an import path',
     "dotted Python names"),
    ({"models": {"ln": "bank_models..nets:f"}}, "models.ln:", "is not an import path"),
    ({"models": {"ln": "1bank.nets:f"}}, "models.ln:", "is not an import path"),
    ({"models": {"ln": "bank_models.nets:"}}, "models.ln:", "is not an import path"),
    ({"models": {"ln": "bank_models.nets:f "}}, "models.ln:", "is not an import path"),
    ({"models": {"1ln": "a:b"}}, 'models: "1ln" is not a valid model name', "(e.g. tabular)"),
    ({"models": {"my model": "a:b"}}, 'models: "my model" is not a valid model name', "letters, digits"),
    ({"models": {"x" * 64: "a:b"}}, "models: \"" + "x" * 64 + "\" is not a valid model name", "up to 62"),
    ({"extraPythonPath": "../python"}, 'extraPythonPath: "../python" must be a directory on the data volume',
     "e.g. python for /var/lib/vfl/python"),
    ({"extraPythonPath": "/opt/python"}, 'extraPythonPath: "/opt/python" must be a directory', "relative"),
    ({"extraPythonPath": "python/"}, "extraPythonPath:", "relative to its mount point /var/lib/vfl"),
    ({"extraPythonPath": "jobs"}, 'extraPythonPath: "jobs" is under jobs/', "use a directory of its own (e.g. python)"),
    ({"extraPythonPath": "jobs/credit-1"}, 'extraPythonPath: "jobs/credit-1" is under jobs/',
     "the node writes the artifacts of every job"),
    ({"job": {"enabled": True, "spec": {**small_job_spec("j1"), "model": {"bottom_overrides": {
        "bank-a": {"module": "lnn"}}}}}, "models": {"ln": "a:b", "deep": "c:d"}},
     'job.spec.model.bottom_overrides.bank-a.module: "lnn" is not one of this release\'s models (it defines deep, ln)',
     "add it under models or fix the name"),
    ({"job": {"enabled": True, "spec": {**small_job_spec("j1"), "model": {"bottom_overrides": {
        "bank-a": {"module": "ln"}}}}}},
     'job.spec.model.bottom_overrides.bank-a.module: "ln" is not one of this release\'s models (it defines none)',
     "add it under models"),
]


@pytest.mark.parametrize("values, message, expected", READABLE, ids=[m[:50] for _, m, _ in READABLE])
def test_bad_models_are_refused_readably(helm, tmp_path, values, message, expected):
    """The message names the key, says what is expected with an example, and prints no regular expression."""
    with pytest.raises(HelmError) as info:
        helm.template("bank-a", values=[BANK_A, values_file(tmp_path, "bad", values)])
    err = info.value.stderr
    assert message in err and expected in err, err
    assert "pattern" not in err and "^" not in err and "{0," not in err and "[A-Z" not in err, err


@pytest.mark.parametrize("kw, key", [
    ({"sets": ["models.ln=1"]}, "'/models/ln'"),                        # a number, not an import path
    ({"sets": ["models[0]=a:b"]}, "'/models'"),                         # a list, not a mapping
    ({"set_strings": ["models.ln="]}, "'/models/ln'"),                  # empty
    ({"sets": ["extraPythonPath=5"]}, "'/extraPythonPath'"),
])
def test_schema_rejects_wrong_types(helm, kw, key):
    with pytest.raises(HelmError) as info:
        helm.template("bank-a", values=[BANK_A], **kw)
    assert "schema" in info.value.stderr and key in info.value.stderr, info.value.stderr


def test_patterns_are_the_nodes():
    from vfl.config_util import _IMPORT_PATH, _MODEL_NAME
    assert template_pattern("modelNamePattern") == _MODEL_NAME.pattern
    assert template_pattern("importPathPattern") == _IMPORT_PATH.pattern


@pytest.mark.parametrize("name, path", [("ln", "a:b"), ("_x.y-z", "pkg.sub.mod:Factory.build"), ("A" * 63, "A_1:_f")])
def test_valid_entries_render(helm, tmp_path, name, path):
    docs = helm.template("bank-a", values=[BANK_A, values_file(tmp_path, "ok", {"models": {name: path}})])
    assert node_config(docs)["models"] == {name: path}
