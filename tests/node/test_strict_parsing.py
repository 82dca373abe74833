"""Strict parsing of job specs and node configs (issue 15, item 5).

Every spec and config goes through vfl.config_util (files, submitted text, a peer's OpenJob), so these tests
use the public parsers: parse_job_spec_yaml for a spec as text, load_node_config for a file.
"""
from __future__ import annotations

import pytest
import yaml

from vfl.errors import ConfigError
from vfl.job.spec import parse_job_spec_yaml
from vfl.node.config import load_node_config

SPEC = """\
job_id: strict-1
active: a
parties: {a: {dataset: x}, b: {dataset: y}}
"""

NODE = """\
party: bank-a
role: active
insecure: true
listen: "127.0.0.1:5000"
"""


@pytest.mark.parametrize("section, key, value", [
    ("train", "lr", ".nan"), ("train", "interactive_lr", ".NaN"), ("train", "lr", "-.inf"),
    ("privacy", "clip_norm", ".nan"), ("privacy", "noise_multiplier", ".inf"), ("privacy", "delta", ".nan"),
    ("split", "validation", ".nan"), ("crypto", "activation_bound", ".inf"),
])
def test_nan_and_infinity_are_refused_in_a_spec(section, key, value):
    """Before: NaN passed every range check (comparisons with NaN are false) and noise_multiplier: .inf has no
    upper bound, so `lr: .nan` failed late with a misleading error and `.inf` noise trained to completion."""
    with pytest.raises(ConfigError, match=rf"^{section}\.{key}: must be a finite number"):
        parse_job_spec_yaml(SPEC + f"{section}: {{{key}: {value}}}\n")


def test_a_float_too_large_for_a_double_is_refused():
    with pytest.raises(ConfigError, match=r"^train\.lr: must be a finite number"):
        parse_job_spec_yaml(SPEC + f"train: {{lr: {10 ** 400}}}\n")


@pytest.mark.parametrize("text, key", [
    (SPEC + "train: {lr: 0.01}\ntrain: {lr: 10}\n", "train"),                  # a whole section twice
    (SPEC + "train:\n  lr: 0.01\n  epochs: 2\n  lr: 9.0\n", "lr"),             # a key inside a section
    (SPEC.replace("job_id: strict-1", "job_id: strict-1\njob_id: other"), "job_id"),
    (SPEC.replace("{a: {dataset: x}", "{a: {dataset: x, dataset: z}"), "dataset"),  # in a flow mapping
], ids=["section", "key", "top-level", "flow"])
def test_duplicate_keys_are_refused_in_a_spec(text, key):
    """Before: YAML's last-wins silently dropped the first value."""
    with pytest.raises(ConfigError, match=rf"found duplicate key '{key}'"):
        parse_job_spec_yaml(text)


def test_duplicate_keys_are_refused_in_a_node_config(tmp_path):
    path = tmp_path / "node.yaml"
    path.write_text(NODE + "policy: {min_key_bits: 2048}\npolicy: {min_key_bits: 1024}\n")
    with pytest.raises(ConfigError, match=r"(?s)node config .*found duplicate key 'policy'.*line 6"):
        load_node_config(path)


def test_merge_keys_may_still_be_overridden():
    """A YAML merge (<<) is not a duplicate: its explicit keys are meant to override the merged ones.

    A guard (it passed before the strict loader too): it fails if the duplicate check counts merged keys."""
    spec = parse_job_spec_yaml(SPEC + "train: {<<: {epochs: 2, lr: 0.5}, lr: 0.25}\n")
    assert (spec.train.epochs, spec.train.lr) == (2, 0.25)


def test_node_config_numbers_are_finite(tmp_path):
    """The node config's first float (timeouts, new with this check) refuses NaN like the spec's."""
    path = tmp_path / "node.yaml"
    path.write_text(NODE + "timeouts: {resume_wait_seconds: .nan}\n")
    with pytest.raises(ConfigError, match=r"timeouts\.resume_wait_seconds: must be a finite number"):
        load_node_config(path)


def test_a_dataset_s_missing_value_constant_is_finite(tmp_path):
    """Before: `missing: {income: .nan}` was accepted (a NaN filler leaves the gap it should fill)."""
    path = tmp_path / "node.yaml"
    path.write_text(NODE + "datasets: {c: {path: c.csv, missing: {income: .nan}}}\n")
    with pytest.raises(ConfigError, match=r"datasets\.c\.missing\.income: must be a finite number"):
        load_node_config(path)
    path.write_text(NODE + "datasets: {c: {path: c.csv, missing: {income: 0.5, region: unknown}}}\n")
    assert load_node_config(path).dataset("c").missing == {"income": 0.5, "region": "unknown"}


@pytest.mark.parametrize("text", [
    SPEC.replace("job_id: strict-1", "job_id: " + "x" * 1_000_000),             # a bad value
    SPEC + "train: {epochs: " + "9" * 4000 + "}\n",                           # a huge integer
    SPEC + "crypto: {mode: " + "m" * 1_000_000 + "}\n",                       # not one of the choices
    SPEC + "model: {bottom: {hidden: [" + "7" * 4000 + "]}}\n",                # a list entry
    SPEC + "train:\n  ? " + "k" * 1_000_000 + "\n  : 1\n",                      # an unknown (explicit) key
    SPEC.replace("active: a", "active: " + "A" * 1_000_000),                   # a bad party name
], ids=["job_id", "integer", "choice", "list-entry", "unknown-key", "party-name"])
def test_error_messages_quote_values_cut_short(text):
    """Before: each of these quoted the whole value, so a megabyte of spec became a megabyte-long error line
    (in the passive's log, and as a gRPC status detail over the metadata limit)."""
    with pytest.raises(ConfigError) as info:
        parse_job_spec_yaml(text)
    message = str(info.value)
    assert len(message) < 1000, message[:300]
    assert "more characters]" in message


def test_an_integer_too_long_for_python_is_a_clear_error():
    """Before: PyYAML's int() of a 100,000-digit number raised ValueError (Python's digit limit), which is not one
    of the project's errors."""
    with pytest.raises(ConfigError, match="not valid YAML"):
        parse_job_spec_yaml(SPEC + "train: {epochs: " + "9" * 100_000 + "}\n")


def test_a_deeply_nested_spec_is_a_clear_error():
    """Before: PyYAML's recursive parser raised RecursionError, which is not one of the project's errors."""
    with pytest.raises(ConfigError, match="nested too deeply"):
        parse_job_spec_yaml(SPEC + "extra: " + "[" * 100_000 + "]" * 100_000 + "\n")


def test_yaml_errors_are_bounded():
    """A guard (PyYAML already cuts its snippets): fails if a YAML error ever quotes the whole document."""
    with pytest.raises(ConfigError) as info:
        parse_job_spec_yaml(SPEC + "train: {lr: '" + "q" * 1_000_000)
    assert len(str(info.value)) < 2000


def test_the_stored_spec_round_trips_with_the_strict_loader():
    """The spec a node stores and ships (spec_to_yaml_dict) parses again under the strict loader.

    A guard: fails if the strict loader refuses what PyYAML's safe_dump writes."""
    spec = parse_job_spec_yaml(SPEC + "train: {epochs: 2, lr: 0.5}\n")
    assert parse_job_spec_yaml(spec.to_yaml()) == spec
    assert yaml.safe_load(spec.to_yaml())["train"]["lr"] == 0.5
