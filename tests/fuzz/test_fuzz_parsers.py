"""Fuzz the job spec parser and the node config parser (issue 15, item 8).

A job spec arrives from a peer (OpenJob) or a submitter; a node config from an operator. Both parsers may refuse
their input only with ConfigError. Specs they accept must survive the trip every spec makes to the passive parties
(to_yaml, then parse again) unchanged, and must satisfy the checks a node relies on later.
"""
from __future__ import annotations

import copy
import math
from pathlib import Path

import yaml
from hypothesis import given
from hypothesis import strategies as st

from tests.fuzz.profiles import FUZZ
from vfl.errors import ConfigError
from vfl.job.spec import parse_job_spec, parse_job_spec_yaml, spec_to_yaml_dict
from vfl.node.config import parse_node_config

SPEC = {"job_id": "fuzz-1", "kind": "train", "task": "binary", "active": "bank-a",
        "parties": {"bank-a": {"dataset": "customers"}, "bank-b": {"dataset": "accounts"}},
        "model": {"bottom": {"hidden": [8], "out": 4}, "interactive": {"out": 4}, "top": {"hidden": [4]},
                  "bottom_overrides": {"bank-b": {"hidden": [6], "out": 4}}},
        "train": {"epochs": 2, "batch_size": 64, "lr": 0.01, "seed": 1},
        "split": {"validation": 0.1, "test": 0.2, "seed": 0}, "crypto": {"key_bits": 1024},
        "psi": {"strip": True}, "privacy": {"defense": "auto", "clip_norm": 1.0}}

NODE = {"party": "bank-a", "role": "active", "listen": "0.0.0.0:50051", "insecure": True,
        "peers": [{"name": "bank-b", "address": "bank-b.example:50051", "identity": "bank-b"}],
        "datasets": {"customers": {"path": "c.csv", "id": "id", "label": "y", "categorical": ["region"],
                                   "id_format": {"strip": True, "pad": 6}, "missing": {"income": "median"}}},
        "admins": ["ops"], "policy": {"min_key_bits": 2048, "max_hidden_width": 512},
        "limits": {"open_jobs_per_minute": 10}, "timeouts": {"resume_wait_seconds": 30},
        "models": {"tab": "pkg.mod:factory"}}

scalars = st.one_of(st.none(), st.booleans(), st.integers(), st.integers(-2**70, 2**70),
                    st.floats(allow_nan=True, allow_infinity=True), st.text(max_size=30),
                    st.sampled_from(["relu", "plaintext", "paillier", "auto", "predict", "cardinality", "bank-b",
                                     "1e400", ".nan", "0.0.0.0:1"]))
# YAML mapping keys need not be strings: `1: x`, `null: y`, `true: z` are keys too
keys = st.one_of(st.text(max_size=12), st.integers(), st.floats(allow_nan=False), st.none(), st.booleans())
values = st.recursive(scalars, lambda inner: st.lists(inner, max_size=4) |
                      st.dictionaries(keys, inner, max_size=4), max_leaves=12)


def paths(tree, prefix=()):
    """Every key path of a nested dict/list, for mutation."""
    yield prefix
    if isinstance(tree, dict):
        for key, value in tree.items():
            yield from paths(value, prefix + (key,))
    elif isinstance(tree, list):
        for i, value in enumerate(tree):
            yield from paths(value, prefix + (i,))


@st.composite
def mutated(draw, base: dict, max_changes: int = 3) -> dict:
    """`base` with a few values replaced, keys added or keys deleted anywhere in it."""
    tree = copy.deepcopy(base)
    for _ in range(draw(st.integers(1, max_changes))):
        path = draw(st.sampled_from(list(paths(tree))))
        if not path:
            continue
        parent = tree
        for key in path[:-1]:
            parent = parent[key]
        action = draw(st.sampled_from(["replace", "delete", "add"]))
        if action == "delete" and isinstance(parent, dict):
            parent.pop(path[-1], None)
        elif action == "add" and isinstance(parent, dict):
            parent[draw(keys)] = draw(values)
        else:
            parent[path[-1]] = draw(values)
    return tree


def check_spec(spec) -> None:
    """What the node relies on for every accepted spec."""
    assert parse_job_spec_yaml(spec.to_yaml()) == spec          # the trip to the passive parties
    assert spec_to_yaml_dict(spec)["job_id"] == spec.job_id
    assert all(math.isfinite(v) for v in (spec.train.lr, spec.train.interactive_lr, spec.crypto.activation_bound))
    assert 0 <= spec.train.seed and 0 <= spec.split.seed
    assert spec.active in {p.name for p in spec.parties}


@FUZZ
@given(data=mutated(SPEC))
def test_mutated_specs_parse_or_refuse(data):
    try:
        spec = parse_job_spec(data)
    except ConfigError:
        return
    check_spec(spec)


@FUZZ
@given(data=values)
def test_arbitrary_structures_as_specs_are_refused_cleanly(data):
    try:
        check_spec(parse_job_spec(data))
    except ConfigError:
        pass


# (specs nested thousands deep: tests/node/test_strict_parsing.py; each takes PyYAML about a second to refuse)
@FUZZ
@given(text=st.one_of(st.text(max_size=400), mutated(SPEC).map(lambda d: yaml.safe_dump(d, sort_keys=False)),
                      st.builds(lambda base, junk, at: base[:at] + junk + base[at:],
                                st.just(yaml.safe_dump(SPEC)), st.text(max_size=20), st.integers(0, 400))))
def test_spec_text_parses_or_refuses(text):
    try:
        spec = parse_job_spec_yaml(text)
    except ConfigError:
        return
    check_spec(spec)


@FUZZ
@given(data=mutated(NODE))
def test_mutated_node_configs_parse_or_refuse(data):
    try:
        config = parse_node_config(data, Path("/srv/node"))
    except ConfigError:
        return
    assert config.policy.max_key_bits >= config.policy.min_key_bits
    assert math.isfinite(config.timeouts.resume_wait_seconds) and math.isfinite(config.timeouts.call_seconds)


@FUZZ
@given(data=values)
def test_arbitrary_structures_as_node_configs_are_refused_cleanly(data):
    try:
        parse_node_config(data, Path("/srv/node"))
    except ConfigError:
        pass


@FUZZ
@given(text=st.one_of(st.text(max_size=400), mutated(NODE).map(lambda d: yaml.safe_dump(d, sort_keys=False))))
def test_node_config_files_load_or_refuse(tmp_path_factory, text):
    from vfl.node.config import load_node_config
    path = tmp_path_factory.mktemp("node", numbered=True) / "node.yaml"
    path.write_text(text)
    try:
        load_node_config(path)
    except ConfigError:
        pass
