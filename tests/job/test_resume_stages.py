"""A lost peer at any stage of a job, and the lifecycle around it: the job resumes and ends with the model an
uninterrupted run ends with (issue 15, "Recovery at both ends"), in one process (tests/job/local.py).

Before: only the epoch loop resumed. A peer lost at open, set-up, an epoch's checkpoint, the test evaluation, a
prediction or the close failed the job (a 3 s cut during the final evaluation lost a fully trained model).
"""
from __future__ import annotations

import dataclasses
import json
import threading
import time

import numpy as np
import pytest
import torch

from tests.job.conftest import job_spec
from tests.job.local import LocalNetwork, LocalNode, run_local_job
from vfl.errors import VflError
from vfl.job import checkpoint
from vfl.job.events import EventLog
from vfl.job.registry import JobRegistry
from vfl.protocol.messages import (CloseJobRequest, EndEpochRequest, ForwardRequest, OpenJob, OpenJobReply,
                                   SetupRequest)

# plaintext mode: the same spec trains bit for bit the same (tests/node/test_training.py), so "the same model" is
# checked to 1e-6 with no fixed-point noise; node-local secret seeds give every run the same initial weights
EXACT = {"crypto": {"mode": "plaintext"}, "privacy": {"defense": "none"}, "train__epochs": 2}
TOLERANCE = 1e-6


class Unavailable(VflError):
    status = "UNAVAILABLE"


@pytest.fixture
def seeded(configs):
    return {name: dataclasses.replace(config, secret_seed=7 + i) for i, (name, config) in enumerate(configs.items())}


def arrays(value, prefix: str = ""):
    """Every number a saved model part holds, flattened: {path: array}."""
    if isinstance(value, torch.Tensor):
        return {prefix: value.detach().double().numpy()}
    if isinstance(value, np.ndarray) and value.dtype != object:
        return {prefix: value.astype(np.float64)}
    if isinstance(value, dict):
        out = {}
        for key, item in value.items():
            out.update(arrays(item, f"{prefix}.{key}"))
        return out
    if hasattr(value, "__dict__") and not isinstance(value, type):
        return arrays(vars(value), prefix)
    return {}


def model_of(configs, job_id: str) -> dict[str, np.ndarray]:
    out = {}
    for party, config in configs.items():
        part = torch.load(checkpoint.model_part_path(config.job_dir(job_id)), weights_only=False)
        out.update(arrays({k: v for k, v in part.items() if k in ("model", "bottom", "links", "share")}, party))
    return out


def assert_same_model(configs, job_id: str, reference: str) -> None:
    ours, theirs = model_of(configs, job_id), model_of(configs, reference)
    assert ours.keys() == theirs.keys() and ours
    differences = {k: float(np.abs(ours[k] - theirs[k]).max()) for k in ours}
    assert max(differences.values()) <= TOLERANCE, differences


def drop_once(match):
    """A tamper that loses the first message `match` accepts, as a cut link would: UNAVAILABLE."""
    dropped = []

    def tamper(peer, message):
        if not dropped and match(message):
            dropped.append(message)
            raise Unavailable("connection reset")
        return message
    tamper.dropped = dropped
    return tamper


STAGES = {
    "open": lambda m: isinstance(m, OpenJob),
    "open-reply-lost": lambda m: isinstance(m, OpenJobReply),  # the passive opened; its answer never arrived
    "setup": lambda m: isinstance(m, SetupRequest),
    "first-checkpoint": lambda m: isinstance(m, EndEpochRequest) and m.epoch == 0,
    "epoch-checkpoint": lambda m: isinstance(m, EndEpochRequest) and m.epoch == 1,
    "train": lambda m: isinstance(m, ForwardRequest) and m.phase == "train" and (m.epoch, m.step) == (1, 2),
    "evaluate": lambda m: isinstance(m, ForwardRequest) and m.phase == "eval" and m.epoch == 2,
    "close-prepare": lambda m: isinstance(m, CloseJobRequest) and m.phase == "prepare",
    "close-commit": lambda m: isinstance(m, CloseJobRequest) and m.phase == "commit",
}


@pytest.fixture
def reference(seeded):
    return run_local_job(job_spec("reference", **EXACT), seeded)


@pytest.mark.parametrize("stage", sorted(STAGES))
def test_a_peer_lost_at_each_stage_costs_nothing(seeded, reference, stage):
    tamper = drop_once(STAGES[stage])
    result = run_local_job(job_spec(f"lost-{stage}", **EXACT), seeded, tamper=tamper)
    assert tamper.dropped, f"the {stage} message never passed"
    assert [h["epoch"] for h in result["history"]] == [1, 2]
    assert_same_model(seeded, f"lost-{stage}", "reference")
    for ours, theirs in zip(result["history"], reference["history"]):
        assert ours["loss"] == pytest.approx(theirs["loss"], abs=TOLERANCE)
    assert result["test"] == pytest.approx(reference["test"], abs=TOLERANCE)
    for config in seeded.values():
        state = json.loads((config.job_dir(f"lost-{stage}") / "status.json").read_text())["state"]
        assert state == "succeeded"


def test_a_prediction_survives_a_lost_peer(seeded, reference):
    spec = job_spec("predict-lost", kind="predict", model_job="reference")
    clean = run_local_job(job_spec("predict-clean", kind="predict", model_job="reference"), seeded)
    tamper = drop_once(lambda m: isinstance(m, ForwardRequest) and m.phase == "predict")
    result = run_local_job(spec, seeded, tamper=tamper)
    assert tamper.dropped
    import pandas as pd
    ours, theirs = (pd.read_csv(r["predictions"]).sort_values("id").reset_index(drop=True) for r in (result, clean))
    assert list(ours["id"]) == list(theirs["id"])  # each PSI session has its own row order
    assert np.allclose(ours["prediction"], theirs["prediction"], atol=TOLERANCE)


def test_a_resumed_passive_reports_everything_that_crossed(seeded):
    """Issue 15, point 10: the passive party's privacy report after a resume counts the messages before it too.
    Before, the reopened job had a new, empty wire ledger: the host's report counted only what came after."""
    tamper = drop_once(STAGES["train"])  # the request is lost before the host sees it
    run_local_job(job_spec("ledger-1", **EXACT), seeded, tamper=tamper)
    guest, host = (json.loads((seeded[p].job_dir("ledger-1") / "privacy_report.json").read_text())["messages"]
                   for p in ("guest", "host"))
    count = {(m["direction"], m["kind"]): m["messages"] for m in host}
    for m in guest:
        kind = m["kind"]
        if m["peer"] != "host" or kind.startswith("CloseJobReply"):  # that reply carries the report itself
            continue
        expected = m["messages"] - (1 if kind.startswith("ForwardRequest") and m["direction"] == "sent" else 0)
        other = "received" if m["direction"] == "sent" else "sent"
        assert count.get((other, kind), 0) == expected, (kind, m["direction"])
    assert count[("received", "SetupRequest.layout")] == 2  # the first set-up and the resumed one


def test_the_lease_closes_a_job_whose_active_party_is_gone(seeded):
    """A passive job whose active party sends nothing for its lease is closed (its slot freed), and stays
    resumable; a prepared close whose commit never comes is rolled back."""
    host = JobRegistry(LocalNode(dataclasses.replace(seeded["host"], policy=dataclasses.replace(
        seeded["host"].policy, max_open_jobs_per_peer=1))))
    spec = job_spec("gone-1", kind="psi")
    host.handle(OpenJob(job_id="gone-1", spec_yaml=spec.to_yaml()), "guest")
    lease = seeded["host"].timeouts.lease_seconds
    assert host.expire_leases(time.monotonic() + lease / 2) == []
    assert host.expire_leases(time.monotonic() + lease + 1) == ["gone-1"]
    assert json.loads((seeded["host"].job_dir("gone-1") / "status.json").read_text())["state"] == "interrupted"
    other = job_spec("gone-2", kind="psi")  # the slot is free again
    host.handle(OpenJob(job_id="gone-2", spec_yaml=other.to_yaml()), "guest")


def test_a_prepared_close_whose_commit_never_comes_is_rolled_back(seeded):
    host = JobRegistry(LocalNode(seeded["host"]))
    at_commit, release = threading.Event(), threading.Event()

    class Gone(VflError):
        status = "PERMISSION_DENIED"  # not recoverable: the job ends once the test lets it

    def tamper(peer, message):
        if isinstance(message, CloseJobRequest) and message.phase == "commit":
            at_commit.set()
            release.wait(60)
            raise Gone("the active party vanished")
        return message
    def run() -> None:
        with pytest.raises(VflError):
            run_local_job(job_spec("no-commit", **EXACT), seeded, tamper=tamper, registries={"host": host})
    runner = threading.Thread(target=run)
    runner.start()
    assert at_commit.wait(120)
    host_dir = seeded["host"].job_dir("no-commit")
    assert json.loads((host_dir / "status.json").read_text())["state"] == "prepared"
    assert (host_dir / checkpoint.STAGED).exists()
    assert host.expire_leases(time.monotonic() + seeded["host"].timeouts.lease_seconds + 1) == ["no-commit"]
    found = json.loads((host_dir / "status.json").read_text())
    assert found["state"] == "failed" and "lease expired before the commit" in found["reason"]
    assert not (host_dir / checkpoint.STAGED).exists() and not checkpoint.model_part_path(host_dir).exists()
    release.set()
    runner.join(60)


def test_renewals_keep_a_job_open_while_its_active_party_waits(seeded):
    """The active job renews the lease every third of it, also while a call of its own takes longer than the
    lease: the passive's reaper does not close a job whose active party is alive."""
    short = {name: dataclasses.replace(c, timeouts=dataclasses.replace(c.timeouts, lease_seconds=3.0))
             for name, c in seeded.items()}
    host = JobRegistry(LocalNode(short["host"]))
    stop = threading.Event()
    host.run_lease_reaper(stop, interval=0.2)
    slept = []

    def slow(peer, message):
        if isinstance(message, EndEpochRequest) and message.epoch == 1 and not slept:
            slept.append(message)
            time.sleep(5)  # the active party is busy for longer than the lease
        return message
    try:
        result = run_local_job(job_spec("renewed-1", **EXACT), short, tamper=slow, registries={"host": host})
    finally:
        stop.set()
    assert slept and result["resumes"] == 0


def _events_until(events: EventLog, predicate, timeout: float = 120):
    deadline = time.monotonic() + timeout
    seen = []
    for event in events.follow(lambda: time.monotonic() > deadline, poll=0.2):
        seen.append(event)
        if predicate(event):
            return seen
    raise AssertionError(f"no such event within {timeout} s: {[e.message for e in seen][-5:]}")


def test_a_drained_active_node_suspends_its_job_and_resumes_it_after_a_restart(seeded, reference):
    """SIGTERM at the active node (JobRegistry.drain): the job stops at its next step, every party records it as
    suspended, and the restarted node (a new registry on the same jobs_dir: JobRegistry.recover) resumes it from
    the last checkpoint both hold, to the model an uninterrupted run ends with. Before: recover() did nothing, and
    the job died with 'cannot schedule new futures after shutdown'."""
    host = JobRegistry(LocalNode(seeded["host"]))
    network = LocalNetwork("guest", {"host": host})
    guest = JobRegistry(LocalNode(seeded["guest"], network))
    events = guest.start_active(job_spec("drained-1", **EXACT))
    _events_until(events, lambda e: e.kind == "epoch")
    guest.drain(30)
    last = events.last()
    assert last.kind == "suspended" and last.done and "resumes from its checkpoint of epoch" in last.message, last
    for config in seeded.values():
        assert json.loads((config.job_dir("drained-1") / "status.json").read_text())["state"] == "suspended"
    restarted = JobRegistry(LocalNode(seeded["guest"], network))
    assert restarted.recover() == ["drained-1"]
    done = _events_until(restarted.active_events["drained-1"], lambda e: e.done)[-1]
    assert done.kind == "result", done.message
    assert [h["epoch"] for h in done.metrics["history"]] == [1, 2]
    assert_same_model(seeded, "drained-1", "reference")
    for config in seeded.values():
        assert json.loads((config.job_dir("drained-1") / "status.json").read_text())["state"] == "succeeded"


def test_a_job_stopped_before_its_psi_ended_fails_at_every_party_after_a_restart(seeded):
    """PSI runs once per job: a job whose active node stopped before the alignment was saved cannot resume; the
    restarted node fails it with that reason and closes the passive party's side."""
    from vfl.data.atomic import atomic_write_text
    from vfl.job import status
    host = JobRegistry(LocalNode(seeded["host"]))
    spec = job_spec("mid-psi", **EXACT)
    host.handle(OpenJob(job_id="mid-psi", spec_yaml=spec.to_yaml()), "guest")
    job_dir = seeded["guest"].job_dir("mid-psi")  # what the stopped node left: its spec and status
    atomic_write_text(job_dir / "job.yaml", spec.to_yaml())
    status.write_status(job_dir, "guest", job_id="mid-psi", kind="train", role="active", active="guest",
                        state="running", stage="psi")
    restarted = JobRegistry(LocalNode(seeded["guest"], LocalNetwork("guest", {"host": host})))
    assert restarted.recover() == ["mid-psi"]
    done = _events_until(restarted.active_events["mid-psi"], lambda e: e.done)[-1]
    assert done.failed and "PSI runs once per job" in done.message and "new job id" in done.message
    guest_status = json.loads((job_dir / "status.json").read_text())
    host_status = json.loads((seeded["host"].job_dir("mid-psi") / "status.json").read_text())
    assert guest_status["state"] == host_status["state"] == "failed"
    assert "mid-psi" not in host.passive_jobs


def test_a_restart_while_committing_finishes_the_commit(seeded):
    """The active node stopped after every party prepared and it recorded its decision: the restarted node commits
    at every party (from their disks) and itself."""
    host = JobRegistry(LocalNode(seeded["host"]))

    class Crash(BaseException):
        pass

    def crash(peer, message):
        if isinstance(message, CloseJobRequest) and message.phase == "commit":
            raise Crash()  # the node dies here: nothing of the job runs after it
        return message
    with pytest.raises(Crash):
        run_local_job(job_spec("crash-commit", **EXACT), seeded, tamper=crash, registries={"host": host})
    job_dir = seeded["guest"].job_dir("crash-commit")
    assert json.loads((job_dir / "status.json").read_text())["state"] == "committing"
    host.passive_jobs.clear()  # and the host restarted too
    restarted = JobRegistry(LocalNode(seeded["guest"], LocalNetwork("guest", {"host": host})))
    assert restarted.recover() == ["crash-commit"]
    done = _events_until(restarted.active_events["crash-commit"], lambda e: e.done)[-1]
    assert done.kind == "result", done.message
    for config in seeded.values():
        assert json.loads((config.job_dir("crash-commit") / "status.json").read_text())["state"] == "succeeded"
        assert checkpoint.model_part_path(config.job_dir("crash-commit")).exists()
    assert (job_dir / "result.json").exists()


def test_a_peer_lost_after_early_stopping_resumes_at_the_kept_epoch(seeded):
    """Early stopping took every party back to its best epoch; a peer lost in the test evaluation after that is
    resumed at that epoch, not the last one trained, so the kept model is the one evaluated and saved."""
    spec = dict(EXACT, train={**yaml_train(), "epochs": 5, "lr": 0.3, "interactive_lr": 0.5,
                              "early_stopping": {"patience": 5, "metric": "accuracy"}})
    reference = run_local_job(job_spec("stopped-ref", **spec), seeded)
    kept = reference["early_stopping"]["kept_epoch"]
    tamper = drop_once(lambda m: isinstance(m, ForwardRequest) and m.phase == "eval" and m.epoch == 5)
    result = run_local_job(job_spec("stopped-lost", **spec), seeded, tamper=tamper)
    assert tamper.dropped and result["early_stopping"]["kept_epoch"] == kept
    assert result["test"] == pytest.approx(reference["test"], abs=TOLERANCE)
    assert_same_model(seeded, "stopped-lost", "stopped-ref")
    assert kept < 5, f"the settings should overfit so that an earlier epoch is kept (kept {kept})"


def yaml_train() -> dict:
    from tests.job.conftest import JOB
    return dict(JOB["train"])
