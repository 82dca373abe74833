"""Node configs and job specs: bad input gets an error that names the offending key."""
from __future__ import annotations

import pytest
import yaml

from vfl.errors import ConfigError
from vfl.job.spec import load_job_spec, parse_job_spec, spec_to_yaml_dict
from vfl.node.config import load_node_config

BASE_NODE = {"party": "bank-a", "role": "active", "listen": "127.0.0.1:5000", "insecure": True,
             "peers": [{"name": "bank-b", "address": "127.0.0.1:5001"}],
             "datasets": {"customers": {"path": "c.csv", "id": "cid", "label": "y"}}}


def write(tmp_path, data, name="node.yaml"):
    path = tmp_path / name
    path.write_text(yaml.safe_dump(data))
    return path


def test_node_config_loads(tmp_path):
    config = load_node_config(write(tmp_path, BASE_NODE))
    assert config.peer("bank-b").identity == "bank-b"
    assert config.dataset("customers").path == tmp_path / "data" / "c.csv"
    assert config.job_dir("j1") == tmp_path / "jobs" / "j1"
    assert config.report_handler_timing is False  # handler times stay home unless a benchmark asks


def test_handler_timing_is_a_node_option_only(tmp_path):
    """report_handler_timing is the node operator's choice: node.yaml sets it, a job spec cannot."""
    assert load_node_config(write(tmp_path, {**BASE_NODE, "report_handler_timing": True})).report_handler_timing
    with pytest.raises(ConfigError, match="report_handler_timing: must be true or false"):
        load_node_config(write(tmp_path, {**BASE_NODE, "report_handler_timing": "yes"}))
    for where in ({"report_handler_timing": True}, {"train": {"report_handler_timing": True}},
                  {"crypto": {"report_handler_timing": True}}):
        with pytest.raises(ConfigError, match="report_handler_timing"):
            parse_job_spec({**BASE_JOB, **where})


def test_open_job_limit_defaults_and_can_be_set(tmp_path):
    assert load_node_config(write(tmp_path, BASE_NODE)).limits.open_jobs_per_minute == 30
    config = load_node_config(write(tmp_path, {**BASE_NODE, "limits": {"open_jobs_per_minute": 5}}))
    assert config.limits.open_jobs_per_minute == 5


@pytest.mark.parametrize("change, key", [
    ({"limits": {"open_jobs_per_minute": 0}}, "limits.open_jobs_per_minute: must be >= 1"),
    ({"limits": {"open_jobs_per_minute": "many"}}, "limits.open_jobs_per_minute: must be an integer"),
    ({"limits": {"open_jobs_per_hour": 5}}, "limits.open_jobs_per_hour"),
    ({"role": "boss"}, "role"),
    ({"listen": "nope"}, "listen"),
    ({"peers": [{"name": "bank-b"}]}, "peers[0].address"),
    ({"peers": [{"name": "bank-a", "address": "x:1"}]}, "peers[0].name"),
    ({"insecure": False}, "tls"),
    ({"datasets": {"c": {"id": "x"}}}, "datasets.c.path"),
    ({"workers": 0}, "workers"),
    ({"colour": "red"}, "colour"),
])
def test_node_config_errors_name_the_key(tmp_path, change, key):
    with pytest.raises(ConfigError) as info:
        load_node_config(write(tmp_path, {**BASE_NODE, **change}))
    assert key in str(info.value)


BASE_JOB = {"active": "bank-a", "parties": {"bank-a": {"dataset": "x"}, "bank-b": {"dataset": "y"}}}


def test_job_spec_roundtrip():
    spec = parse_job_spec({**BASE_JOB, "train": {"epochs": 3}, "model": {"bottom_overrides": {"bank-b": {"out": 8}}}})
    assert spec.party("bank-b").bottom.out == 8
    assert parse_job_spec(spec_to_yaml_dict(spec)) == spec


@pytest.mark.parametrize("change, key", [
    ({"train": {"epoch": 3}}, "train.epoch"),
    ({"train": {"batch_size": 0}}, "train.batch_size"),
    ({"task": "ranking"}, "task"),
    ({"active": "bank-c"}, "active"),
    ({"crypto": {"key_bits": 1536}}, "crypto.key_bits"),
    ({"crypto": {"stat_security_bits": 20}}, "crypto.stat_security_bits"),
    ({"parties": {"bank-a": {"dataset": "x"}}}, "parties"),
    ({"model": {"bottom": {"hidden": [0]}}}, "model.bottom.hidden[0]"),
    ({"kind": "predict"}, "model_job"),
])
def test_job_spec_errors_name_the_key(change, key):
    with pytest.raises(ConfigError) as info:
        parse_job_spec({**BASE_JOB, **change})
    assert key in str(info.value)


def test_cardinality_job_kind():
    spec = parse_job_spec({**BASE_JOB, "kind": "cardinality"})
    assert spec.kind == "cardinality" and spec.psi_mode == "cardinality"
    assert parse_job_spec(spec_to_yaml_dict(spec)) == spec
    assert {parse_job_spec({**BASE_JOB, "kind": k, "model_job": "t"}).psi_mode
            for k in ("train", "predict", "psi")} == {"intersection"}


def test_a_job_spec_cannot_set_node_limits():
    with pytest.raises(ConfigError, match="limits"):
        parse_job_spec({**BASE_JOB, "limits": {"open_jobs_per_minute": 1000}})


def test_job_spec_file_errors(tmp_path):
    path = tmp_path / "job.yaml"
    path.write_text("active: [unclosed")
    with pytest.raises(ConfigError, match="not valid YAML"):
        load_job_spec(path)
    with pytest.raises(ConfigError, match="cannot read"):
        load_job_spec(tmp_path / "missing.yaml")


def test_widths_that_do_not_fit_a_ciphertext_are_refused_before_psi():
    from vfl.errors import ConfigError
    from vfl.job.spec import parse_job_spec
    spec = {"job_id": "wide", "task": "binary", "active": "a", "parties": {"a": {"dataset": "x"}, "b": {"dataset": "y"}},
            "model": {"bottom": {"out": 48}, "interactive": {"out": 48}}, "crypto": {"key_bits": 2048}}
    with pytest.raises(ConfigError, match=r"model.bottom_overrides.b.out .* do not fit a 2048-bit ciphertext"):
        parse_job_spec(spec)
    spec["crypto"].update(precision_bits=14, gradient_bits=16)  # the older, narrower fixed point fits
    assert parse_job_spec(spec).interactive_out == 48
    spec["crypto"] = {"mode": "plaintext"}  # nothing is packed in plaintext mode
    assert parse_job_spec(spec).crypto.mode == "plaintext"
