"""A party's own torch bottom model: named in the job spec, resolved only by that party's node config."""
from __future__ import annotations

import copy

import numpy as np
import pytest
import torch
import yaml

from tests.node import custom_models
from tests.node.conftest import SMALL_JOB, breast_parties
from vfl.errors import ConfigError
from vfl.job.spec import parse_job_spec, spec_to_yaml_dict
from vfl.models.custom import build_bottom, import_path_of, resolve_factory

LAYERNORM = "tests.node.custom_models:layernorm_bottom"
BASE_JOB = {"active": "bank-a", "parties": {"bank-a": {"dataset": "x"}, "bank-b": {"dataset": "y"}}}


# ------------------------------------------------------------------------------------------ spec and config

def test_spec_names_a_module_per_party_and_roundtrips():
    spec = parse_job_spec({**BASE_JOB, "model": {"bottom": {"out": 8},
                                                 "bottom_overrides": {"bank-b": {"module": "tabular", "out": 4}}}})
    assert spec.party("bank-b").bottom.module == "tabular" and spec.party("bank-b").bottom.out == 4
    assert spec.party("bank-a").bottom.module is None and spec.party("bank-a").bottom.out == 8
    assert parse_job_spec(spec_to_yaml_dict(spec)) == spec
    both = parse_job_spec({**BASE_JOB, "model": {"bottom_overrides": {"bank-a": {"module": "a"},
                                                                      "bank-b": {"module": "b"}}}})
    assert parse_job_spec(spec_to_yaml_dict(both)) == both
    # a spec without modules serializes exactly as before (no `module` key anywhere)
    assert "module" not in yaml.safe_dump(spec_to_yaml_dict(parse_job_spec(BASE_JOB)))


@pytest.mark.parametrize("model, key", [
    ({"bottom": {"module": "tabular"}}, "model.bottom.module"),
    ({"bottom_overrides": {"bank-b": {"module": "tabular", "hidden": [4]}}}, "model.bottom_overrides.bank-b.hidden"),
    ({"bottom_overrides": {"bank-b": {"module": "a b"}}}, "model.bottom_overrides.bank-b.module"),
    ({"bottom_overrides": {"bank-b": {"module": ["x"]}}}, "model.bottom_overrides.bank-b.module"),
    ({"top": {"module": "tabular"}}, "model.top.module"),
])
def test_spec_module_errors_name_the_key(model, key):
    with pytest.raises(ConfigError) as info:
        parse_job_spec({**BASE_JOB, "model": model})
    assert key in str(info.value)


def test_node_config_models(tmp_path):
    from vfl.node.config import load_node_config
    base = {"party": "bank-a", "role": "active", "insecure": True}
    path = tmp_path / "node.yaml"
    path.write_text(yaml.safe_dump({**base, "models": {"tabular": LAYERNORM}}))
    assert load_node_config(path).models == {"tabular": LAYERNORM}
    for models, key in [({"tabular": "no colon"}, "models.tabular"), ({"tabular": 3}, "models.tabular"),
                        ({"bad name!": LAYERNORM}, "models.bad name!")]:
        path.write_text(yaml.safe_dump({**base, "models": models}))
        with pytest.raises(ConfigError) as info:
            load_node_config(path)
        assert key in str(info.value)


# ------------------------------------------------------------------------------------------ resolution

def _bottom(module, out=8):
    return parse_job_spec({**BASE_JOB, "model": {"bottom_overrides": {"bank-b": {"module": module, "out": out}}}}
                          ).party("bank-b").bottom


def test_resolve_and_build_a_custom_bottom():
    factory = resolve_factory({"tabular": LAYERNORM}, "tabular", "bank-b")
    assert factory is custom_models.layernorm_bottom
    module = build_bottom(_bottom("tabular"), 5, factory, "bank-b")
    assert isinstance(module[1], torch.nn.LayerNorm) and module(torch.zeros(3, 5)).shape == (3, 8)
    assert resolve_factory({}, None, "bank-b") is None  # no module: the default MLP


def test_undefined_model_name_is_a_clear_error():
    with pytest.raises(ConfigError) as info:
        resolve_factory({"tabular": LAYERNORM}, "nope", "bank-b")
    message = str(info.value)
    assert "model.bottom_overrides.bank-b.module" in message and "'nope'" in message and "tabular" in message
    # an error a passive node sends to the active party hides its other model names and import paths
    with pytest.raises(ConfigError) as info:
        resolve_factory({"tabular": LAYERNORM}, "nope", "bank-b", for_peer=True)
    assert "'nope'" in str(info.value) and "tabular" not in str(info.value)
    with pytest.raises(ConfigError) as info:
        resolve_factory({"m": "secret_pkg.nets:f"}, "m", "bank-b", for_peer=True)
    assert "model.bottom_overrides.bank-b.module" in str(info.value) and "secret_pkg" not in str(info.value)


@pytest.mark.parametrize("path, words", [
    ("tests.node.no_such_module:f", ["models.m", "cannot import", "tests.node.no_such_module"]),
    ("tests.node.custom_models:missing", ["models.m", "no attribute", "missing"]),
])
def test_unimportable_factory_is_a_clear_error(path, words):
    with pytest.raises(ConfigError) as info:
        resolve_factory({"m": path}, "m", "bank-b")
    assert all(w in str(info.value) for w in words), str(info.value)


def test_wrong_width_and_non_module_are_clear_errors():
    with pytest.raises(ConfigError) as info:
        build_bottom(_bottom("wide", out=8), 5, custom_models.wrong_width, "bank-b")
    message = str(info.value)
    assert "model.bottom_overrides.bank-b.out" in message and "'wide'" in message
    assert "(batch, 8)" in message and "(2, 9)" in message
    with pytest.raises(ConfigError, match="not a torch.nn.Module"):
        build_bottom(_bottom("odd"), 5, custom_models.not_a_module, "bank-b")


def test_peer_facing_errors_name_the_key_but_not_the_details(caplog):
    """A passive party's build and load errors go to the active party: only the spec key and the model name;
    the factory's exception text (a private path) and the parameter names and shapes stay in its node log."""
    from vfl.errors import DataError
    from vfl.models.custom import load_part
    bottom = _bottom("broken")
    with pytest.raises(ConfigError) as info:  # the party's own view keeps the details
        build_bottom(bottom, 5, custom_models.failing_bottom, "bank-b")
    assert custom_models.SECRET_PATH in str(info.value) and "FileNotFoundError" in str(info.value)
    with caplog.at_level("ERROR", logger="vfl.models"), pytest.raises(ConfigError) as info:
        build_bottom(bottom, 5, custom_models.failing_bottom, "bank-b", for_peer=True)
    message = str(info.value)
    assert message == ("model.bottom_overrides.bank-b.module: party 'bank-b' could not build its bottom model "
                       "'broken' (details in its node log)"), message
    assert custom_models.SECRET_PATH in caplog.text  # logged locally
    with pytest.raises(ConfigError) as info:
        build_bottom(_bottom("wide", out=8), 5, custom_models.wrong_width, "bank-b", for_peer=True)
    message = str(info.value)
    assert "model.bottom_overrides.bank-b.out" in message and "(batch, 8)" in message and "(2, 9)" not in message
    module = build_bottom(_bottom("tabular"), 5, custom_models.layernorm_bottom, "bank-b")
    saved = custom_models.layernorm_bottom(6, 8).state_dict()  # trained on one more feature
    with pytest.raises(DataError) as info:
        load_part(module, saved, _bottom("tabular"), "old-job", "bank-b")
    assert "0.weight" in str(info.value)
    with pytest.raises(DataError) as info:
        load_part(module, saved, _bottom("tabular"), "old-job", "bank-b", for_peer=True)
    message = str(info.value)
    assert "model job 'old-job'" in message and "'tabular'" in message and "node log" in message
    assert "0.weight" not in message and "torch.Size" not in message and "size mismatch" not in message


def test_factory_must_be_importable_by_module_path(tmp_path):
    from vfl.api import Federation
    assert import_path_of(custom_models.layernorm_bottom, "bottom") == LAYERNORM

    def closure(i, o):
        return torch.nn.Linear(i, o)
    for bad, words in [(lambda i, o: torch.nn.Linear(i, o), "lambda"), (closure, "nested"),
                       ("tests.node.custom_models:layernorm_bottom", "callable")]:
        with pytest.raises(ConfigError) as info:
            import_path_of(bad, "Party('host').bottom")
        assert words in str(info.value) and "Party('host').bottom" in str(info.value)
    main_fn = type(closure)(closure.__code__, {})  # a function object whose module is __main__
    main_fn.__module__, main_fn.__qualname__ = "__main__", "factory"
    with pytest.raises(ConfigError, match="__main__"):
        import_path_of(main_fn, "bottom")
    # the Federation refuses before starting any node process
    guest, host = breast_parties()
    host.bottom = lambda i, o: torch.nn.Linear(i, o)
    with pytest.raises(ConfigError, match=r"Party\('host'\)\.bottom"):
        Federation([guest, host], workdir=tmp_path / "fed")
    assert not (tmp_path / "fed").exists()


def test_baseline_needs_the_factory_for_a_named_module():
    from vfl.baseline import train_centralized
    spec = parse_job_spec({**BASE_JOB, "model": {"bottom_overrides": {"bank-b": {"module": "tabular"}}},
                           "train": {"epochs": 1}})
    ids = np.array([str(i) for i in range(40)])
    rng = np.random.default_rng(0)
    x = {"bank-a": rng.normal(size=(40, 3)), "bank-b": rng.normal(size=(40, 4))}
    y = (x["bank-a"][:, 0] > 0).astype(np.int64)
    with pytest.raises(ConfigError, match="model.bottom_overrides.bank-b.module"):
        train_centralized(spec, ids, x, y)
    result = train_centralized(spec, ids, x, y, models={"bank-b": {"tabular": custom_models.layernorm_bottom}})
    assert "accuracy" in result["test"]


# ------------------------------------------------------------------------------------------ real nodes

@pytest.fixture(scope="module")
def federation(tmp_path_factory):
    from vfl.api import Federation
    guest, host = breast_parties()
    guest.bottom = custom_models.layernorm_bottom   # the active party's own module
    host.bottom = custom_models.layernorm_bottom    # and the passive party's
    # one more model offered by both nodes, for the wrong-width case
    with Federation([guest, host], workdir=tmp_path_factory.mktemp("fed"),
                    node_options={"models": {"too_wide": "tests.node.custom_models:wrong_width",
                                             "broken": "tests.node.custom_models:failing_bottom"}}) as fed:
        yield fed


def _job(epochs=4):
    job = copy.deepcopy(SMALL_JOB)
    job["train"]["epochs"] = epochs
    job["privacy"] = {"defense": "none"}
    return job


def test_custom_bottoms_train_end_to_end_and_match_the_baseline(federation):
    from vfl.baseline import initial_state, train_centralized
    config = yaml.safe_load(federation.configs["host"].read_text())
    assert config["models"] == {"too_wide": "tests.node.custom_models:wrong_width",
                                "broken": "tests.node.custom_models:failing_bottom", "layernorm_bottom": LAYERNORM}
    job = _job()
    model = federation.fit(task="binary", job_id="custom", progress=False, **job)
    assert model.metrics["test"]["auc"] > 0.9

    # each saved part holds that architecture's parameters and the name to rebuild it
    parts = model.metrics["model_parts"]
    from vfl.job.checkpoint import load_torch
    host_part = load_torch(parts["host"])     # sealed at rest: the Federation holds every node's key
    guest_part = load_torch(parts["guest"])
    host_dim = len(federation.parties["host"].data.columns) - 1
    reference = custom_models.layernorm_bottom(host_dim, 8).state_dict()
    assert host_part["bottom_module"] == "layernorm_bottom" and host_part["bottom_factory"] == LAYERNORM
    assert {k: v.shape for k, v in host_part["bottom"].items()} == {k: v.shape for k, v in reference.items()}
    assert not torch.equal(host_part["bottom"]["1.weight"], torch.ones(12))  # the LayerNorm was trained
    assert guest_part["bottom_module"] == "layernorm_bottom"
    assert guest_part["model"]["bottom.1.weight"].shape == (12,)  # LayerNorm inside the active bottom

    # the centralized baseline builds the same modules and starts from the encrypted run's initial weights
    guest, host = (federation.parties[p].data for p in ("guest", "host"))
    common = sorted(set(guest["id"]) & set(host["id"]))
    g, h = guest.set_index("id").loc[common], host.set_index("id").loc[common]
    spec_dict = {"job_id": "c", "active": "guest", "task": "binary",
                 "parties": {"guest": {"dataset": "t"}, "host": {"dataset": "t"}},
                 **{**job, "model": federation._with_bottoms(job["model"])}}
    start = initial_state({p: federation.workdir / p / "jobs" / "custom" for p in ("guest", "host")}, "guest")
    base = train_centralized(parse_job_spec(spec_dict), np.array(common),
                             {"guest": g.drop(columns=["y"]).to_numpy(float), "host": h.to_numpy(float)},
                             g["y"].to_numpy(), initial=start, models=federation.bottom_models())
    assert abs(model.metrics["test"]["auc"] - base["test"]["auc"]) <= 0.01, (model.metrics["test"], base["test"])

    # prediction jobs rebuild both custom modules from the saved parts
    new_guest = guest.drop(columns=["y"]).head(60)
    new_host = host[host["id"].isin(new_guest["id"])]
    predictions = model.predict({"guest": new_guest, "host": new_host})
    assert sorted(predictions["id"]) == sorted(set(new_guest["id"]) & set(new_host["id"]))
    labels = guest.set_index("id").loc[predictions["id"], "y"].to_numpy()
    assert ((predictions["prediction"].to_numpy() > 0.5) == labels).mean() > 0.85


def _failed_job_message(federation, job_id: str, party: str, module: str) -> str:
    """Run a one-epoch job with `party`'s bottom set to `module`; the job must fail: its error message."""
    from vfl.api import JobError
    job = _job(epochs=1)
    job["model"] = {**job["model"], "bottom_overrides": {party: {"module": module}}}
    with pytest.raises(JobError) as info:
        federation.fit(task="binary", job_id=job_id, progress=False, **job)
    return str(info.value)


@pytest.mark.parametrize("party", ["host", "guest"])
def test_undefined_module_name_fails_the_job_naming_the_key(federation, party):
    message = _failed_job_message(federation, f"undefined-{party}", party, "nope")
    assert f"model.bottom_overrides.{party}.module" in message and "'nope'" in message, message
    if party == "host":  # the passive node does not tell the active party which other models it has
        assert "too_wide" not in message and "layernorm" not in message


def test_wrong_output_width_fails_the_job_clearly(federation):
    message = _failed_job_message(federation, "too-wide", "host", "too_wide")
    assert "model.bottom_overrides.host.out" in message and "'too_wide'" in message and "(batch, 8)" in message
    assert "(2, 9)" not in message, message  # the shape the host's module returned stays in its node log


@pytest.mark.parametrize("party", ["host", "guest"])
def test_failing_factory_fails_the_job_without_leaking_the_passive_details(federation, party):
    message = _failed_job_message(federation, f"broken-{party}", party, "broken")
    assert f"model.bottom_overrides.{party}.module" in message and "'broken'" in message, message
    if party == "host":  # the active party learns the key, not the passive operator's exception text
        assert custom_models.SECRET_PATH not in message and "FileNotFoundError" not in message, message
        assert "node log" in message
    else:  # the active party's own model: its operator sees everything
        assert custom_models.SECRET_PATH in message, message
