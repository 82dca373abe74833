"""Encrypted training between separate node processes over mutual TLS: quality, prediction, resume."""
from __future__ import annotations

import copy
import json
import threading
import time

import numpy as np
import pytest

from tests.node.conftest import SMALL_JOB, breast_parties


@pytest.fixture(scope="module")
def federation(tmp_path_factory):
    from vfl.api import Federation
    # node-local secret seeds: two jobs of one spec start from the same weights at every node (resume tests)
    with Federation(breast_parties(), workdir=tmp_path_factory.mktemp("fed"), secret_seed=11) as fed:
        yield fed


def test_encrypted_training_matches_centralized_on_breast(federation):
    """Quality: within 0.01 AUC of the same architecture trained on pooled columns, same split and seed."""
    from vfl.baseline import initial_state, train_centralized
    from vfl.job.spec import parse_job_spec
    job = copy.deepcopy(SMALL_JOB)
    job["train"]["epochs"] = 8
    job["privacy"] = {"defense": "none"}
    model = federation.fit(task="binary", job_id="quality", progress=False, **job)
    enc = model.metrics["test"]
    assert model.metrics["intersection"] == len(federation.parties["host"].data)
    # peers keep their handler time by default (report_handler_timing is for benchmarks), so the active
    # party reports each round trip as one figure instead of guessing a split (the split: test_links.py)
    timing = model.metrics["timing"]["guest"]
    assert timing["peer work + transport"] > 0
    assert "waiting on peers' work" not in timing and "transport" not in timing, timing
    assert timing["decrypt"] > 0 and timing["encrypt"] > 0
    guest, host = (federation.parties[p].data for p in ("guest", "host"))
    common = sorted(set(guest["id"]) & set(host["id"]))
    g = guest.set_index("id").loc[common]
    h = host.set_index("id").loc[common]
    spec = parse_job_spec({"job_id": "c", "active": "guest", "task": "binary",
                           "parties": {"guest": {"dataset": "t"}, "host": {"dataset": "t"}}, **job})
    start = initial_state({p: federation.workdir / p / "jobs" / "quality" for p in ("guest", "host")}, "guest")
    base = train_centralized(spec, np.array(common), {"guest": g.drop(columns=["y"]).to_numpy(float),
                                                      "host": h.to_numpy(float)}, g["y"].to_numpy(), initial=start)
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


# Resume runs use the finest fixed point the spec allows. Each party rounds its own uniformly random weight
# share to 2^-precision_bits before a product, so two encrypted runs of one spec differ by a +-1-ulp rounding
# that depends on the random shares; Adam and the training dynamics amplify it (up to ~1e-2 in the final
# parameters at the default 14 bits, measured). With 24 bits two uninterrupted runs agree to ~1.5e-7 (float32
# noise); plaintext-mode runs are bit-identical, so torch itself is deterministic here.
RESUME_JOB = copy.deepcopy(SMALL_JOB)
RESUME_JOB["train"]["epochs"] = 4
RESUME_JOB["crypto"].update(precision_bits=24, gradient_bits=24)
# Max |difference| allowed between a resumed and an uninterrupted run, in every saved parameter and in W:
# ~700x the measured run-to-run noise, and ~500x below what one lost epoch changes (0.05 to 0.2).
MODEL_TOLERANCE = 1e-4
KILL_AT = (2, 1)  # kill the passive node right after step 1 of epoch 2 (1-based, as in progress events)


def fit_killing_host(federation, job: dict, job_id: str):
    """Fit, killing the passive node during epoch 2 and restarting it a second later."""
    events = []
    killed = threading.Event()

    def on_event(event):
        events.append(event)
        if event.kind == "progress" and not killed.is_set():
            metrics = json.loads(event.metrics_json or "{}")
            if (metrics.get("epoch"), metrics.get("step")) == KILL_AT:
                killed.set()
                threading.Thread(target=kill_and_restart, daemon=True).start()

    def kill_and_restart():
        federation.kill("host")
        time.sleep(1.0)
        federation.restart("host")

    model = federation.fit(task="binary", job_id=job_id, progress=False, on_event=on_event, **job)
    assert killed.is_set()
    return model, events


def saved_model(federation, job_id: str) -> dict[str, np.ndarray]:
    """Every party's saved part of one job, and the interactive weight W = U + V rebuilt from both shares."""
    from vfl.job.checkpoint import load_torch
    from vfl.protocol.layout import SHARE_FRACTION_BITS
    jobs = {p: federation.workdir / p / "jobs" / job_id / "model" / "party.pt" for p in ("guest", "host")}
    guest, host = (load_torch(jobs[p]) for p in ("guest", "host"))   # sealed at rest; Federation holds the keys
    out = {f"guest.{k}": v.numpy() for k, v in guest["model"].items()}
    out.update({f"host.{k}": v.numpy() for k, v in host["bottom"].items()})
    u, v = guest["links"]["host"]["share"], host["share"]
    out["W"] = ((u.weights + v.weights).astype(np.float64) / 2.0**SHARE_FRACTION_BITS)
    return out


def test_passive_killed_mid_training_resumes_with_nothing_lost(federation):
    """Kill the passive node during epoch 2, restart it: the job resumes from epoch 1 and ends where an
    uninterrupted run of the same spec ends (same metrics, same model parts, same W)."""
    job = copy.deepcopy(RESUME_JOB)
    job["privacy"] = {"defense": "none"}  # DP noise is fresh randomness: runs could not be compared
    reference = federation.fit(task="binary", job_id="resume-reference", progress=False, **job)
    model, events = fit_killing_host(federation, job, "resume")
    assert model.metrics["resumes"] == 1
    resumed = [e.message for e in events if "resumed from epoch" in e.message]
    assert len(resumed) == 1 and "resumed from epoch 1 " in resumed[0], resumed
    # every epoch completed once: epoch 1 was not run again (its metrics, wall time included, are the ones
    # reported before the kill), and no epoch is missing
    epochs = [json.loads(e.metrics_json) for e in events if e.kind == "epoch"]
    assert [m["epoch"] for m in epochs] == [1, 2, 3, 4]
    history = model.metrics["history"]
    assert history[0] == epochs[0] and [h["epoch"] for h in history] == [1, 2, 3, 4]
    # the same training as without the failure: per-epoch loss and validation metrics, test metrics (a metric
    # moves only if float noise flips a prediction across 0.5 or two scores' order), saved parts and W
    for ours, theirs in zip(history, reference.metrics["history"]):
        for key in ("loss", "validation_auc", "validation_accuracy"):
            assert ours[key] == pytest.approx(theirs[key], abs=1e-4), (ours["epoch"], key)
    for key, value in reference.metrics["test"].items():
        assert model.metrics["test"][key] == pytest.approx(value, abs=1e-3), key
    resumed, uninterrupted = saved_model(federation, "resume"), saved_model(federation, "resume-reference")
    assert resumed.keys() == uninterrupted.keys()
    differences = {k: float(np.abs(resumed[k] - uninterrupted[k]).max()) for k in resumed}
    assert max(differences.values()) <= MODEL_TOLERANCE, differences


def test_rolled_back_epoch_counts_in_the_privacy_budget(federation):
    """With the DP defense, the epoch rolled back by a resume released its noisy gradients too."""
    from vfl.privacy.accounting import label_dp_epsilon
    job = copy.deepcopy(RESUME_JOB)
    job["privacy"] = {"defense": "dp"}
    model, events = fit_killing_host(federation, job, "resume-dp")
    assert model.metrics["resumes"] == 1
    assert [h["epoch"] for h in model.metrics["history"]] == [1, 2, 3, 4]
    assert model.metrics["test"]["auc"] > 0.9
    privacy = model.metrics["privacy"]
    assert privacy["defense"] == "dp"
    expected = label_dp_epsilon(2.0, 4 + model.metrics["resumes"], privacy["delta"])
    assert privacy["epsilon"] == pytest.approx(expected, abs=1e-3)
