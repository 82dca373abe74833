"""Encrypted training between separate node processes over mutual TLS: quality, prediction, resume."""
from __future__ import annotations

import copy
import threading
import time

import numpy as np
import pytest

from tests.node.conftest import SMALL_JOB, breast_parties


@pytest.fixture(scope="module")
def federation(tmp_path_factory):
    from vfl.api import Federation
    with Federation(breast_parties(), workdir=tmp_path_factory.mktemp("fed")) as fed:
        yield fed


def test_encrypted_training_matches_centralized_on_breast(federation):
    """Quality: within 0.01 AUC of the same architecture trained on pooled columns, same split and seed."""
    from vfl.baseline import initial_interactive_weights, train_centralized
    from vfl.job.spec import parse_job_spec
    job = copy.deepcopy(SMALL_JOB)
    job["train"]["epochs"] = 8
    job["privacy"] = {"defense": "none"}
    model = federation.fit(task="binary", job_id="quality", progress=False, **job)
    enc = model.metrics["test"]
    assert model.metrics["intersection"] == len(federation.parties["host"].data)
    # the time breakdown separates the peer's own work (its reported handler time) from transport
    timing = model.metrics["timing"]["guest"]
    assert timing["waiting on peers' work"] > 0 and timing["transport"] > 0
    assert timing["decrypt"] > 0 and timing["encrypt"] > 0
    guest, host = (federation.parties[p].data for p in ("guest", "host"))
    common = sorted(set(guest["id"]) & set(host["id"]))
    g = guest.set_index("id").loc[common]
    h = host.set_index("id").loc[common]
    spec = parse_job_spec({"job_id": "c", "active": "guest", "task": "binary",
                           "parties": {"guest": {"dataset": "t"}, "host": {"dataset": "t"}}, **job})
    w0 = initial_interactive_weights({p: federation.workdir / p / "jobs" / "quality" for p in ("guest", "host")},
                                     "guest")
    base = train_centralized(spec, np.array(common), {"guest": g.drop(columns=["y"]).to_numpy(float),
                                                      "host": h.to_numpy(float)}, g["y"].to_numpy(), initial_weights=w0)
    assert enc["auc"] > 0.95
    assert abs(enc["auc"] - base["test"]["auc"]) <= 0.01, (enc, base["test"])
    # each party saved only its own part
    parts = model.metrics["model_parts"]
    assert set(parts) == {"guest", "host"} and "guest" in parts["guest"] and "host" in parts["host"]


def test_joint_prediction_for_new_ids(federation):
    model = federation.fit(task="binary", job_id="for-predict", progress=False, **SMALL_JOB)
    guest, host = (federation.parties[p].data for p in ("guest", "host"))
    new_guest = guest.drop(columns=["y"]).head(60)
    new_host = host[host["id"].isin(new_guest["id"])]
    predictions = model.predict({"guest": new_guest, "host": new_host}, job_id="predict-1")
    assert sorted(predictions["id"]) == sorted(set(new_guest["id"]) & set(new_host["id"]))
    assert predictions["prediction"].between(0, 1).all()
    labels = guest.set_index("id").loc[predictions["id"], "y"].to_numpy()
    assert ((predictions["prediction"].to_numpy() > 0.5) == labels).mean() > 0.85


def test_passive_killed_mid_training_resumes_from_last_epoch(federation):
    """Kill the passive node during epoch 2, restart it: the job resumes from its last checkpoint."""
    job = copy.deepcopy(SMALL_JOB)
    job["train"]["epochs"] = 4
    events = []
    killed = threading.Event()

    def on_event(event):
        events.append(event)
        if event.kind == "epoch" and '"epoch": 1' in event.metrics_json and not killed.is_set():
            killed.set()
            threading.Thread(target=restart_later, daemon=True).start()

    def restart_later():
        time.sleep(0.3)  # inside epoch 2
        federation.kill("host")
        time.sleep(1.0)
        federation.restart("host")

    model = federation.fit(task="binary", job_id="resume", progress=False, on_event=on_event, **job)
    assert killed.is_set()
    assert model.metrics["resumes"] >= 1
    assert [h["epoch"] for h in model.metrics["history"]] == [1, 2, 3, 4]
    assert any("resumed from epoch" in e.message for e in events)
    assert model.metrics["test"]["auc"] > 0.9
    # the rolled-back epoch released its noisy gradients twice: the budget counts every started epoch
    from vfl.privacy.accounting import label_dp_epsilon
    privacy = model.metrics["privacy"]
    assert privacy["defense"] == "dp"  # the default for a binary task
    expected = label_dp_epsilon(2.0, 4 + model.metrics["resumes"], privacy["delta"])
    assert privacy["epsilon"] == pytest.approx(expected, abs=1e-3)
