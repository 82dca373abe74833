"""A cancelled job stops at every party, whatever it is doing (issue 16, "A cancelled job stops at every party and
leaves a clear state"), in one process (tests/job/local.py) with the real registries and runtimes.

tests/cli/test_job_commands.py cancels a training job over `vfl cancel` on real nodes, between two steps. Here: the
two places where a job can stay for long without taking a step. Before: a cancel was noticed only at the job's next
step, so a job waiting for a lost peer (up to timeouts.resume_wait_seconds, a minute by default) or running its PSI
session (minutes for a large table) ran on, and `vfl cancel` gave up after 60 s with the job still `running`.
"""
from __future__ import annotations

import json
import threading
import time

from tests.job.conftest import job_spec
from tests.job.local import LocalNetwork, LocalNode, ProgressNetwork
from vfl.errors import VflError
from vfl.job.party_data import has_alignment
from vfl.job.registry import JobRegistry
from vfl.protocol.messages import CloseJobRequest, ForwardRequest

EXACT = {"crypto": {"mode": "plaintext"}, "privacy": {"defense": "none"}}


class Unreachable(VflError):
    status = "UNAVAILABLE"


def status_of(config, job_id: str) -> dict:
    return json.loads((config.job_dir(job_id) / "status.json").read_text())


def wait_for(events, predicate, timeout: float = 120):
    deadline = time.monotonic() + timeout
    for event in events.follow(lambda: time.monotonic() > deadline, poll=0.1):
        if predicate(event):
            return event
    raise AssertionError(f"no such event within {timeout} s")


def test_a_job_waiting_for_a_lost_peer_is_cancelled_at_once(configs):
    """The passive party is unreachable mid-training (every call fails as a cut link would), so the job waits up to
    the resume wait (60 s) for it; a cancel ends the wait. The passive party hears of it as soon as it is back."""
    host = JobRegistry(LocalNode(configs["host"]))
    down = threading.Event()

    def tamper(peer, message):
        if down.is_set() and not isinstance(message, CloseJobRequest):
            raise Unreachable("connection reset by peer")
        return message
    network = LocalNetwork("guest", {"host": host}, tamper=tamper)
    guest = JobRegistry(LocalNode(configs["guest"], network))
    events = guest.start_active(job_spec("cancel-waiting", **EXACT, train__epochs=50))
    wait_for(events, lambda e: e.kind == "epoch")
    down.set()
    wait_for(events, lambda e: "waiting up to" in e.message)
    t0 = time.monotonic()
    shown = guest.cancel("cancel-waiting", by="the test", wait=30)
    took = time.monotonic() - t0
    assert shown["state"] == "cancelled", shown
    assert took < 10, f"the cancel took {took:.1f} s"
    last = events.last()
    assert last.kind == "cancelled" and last.done and "cancelled by the test" in last.message, last
    for config in configs.values():
        found = status_of(config, "cancel-waiting")
        assert found["state"] == "cancelled" and "cancelled by the test" in found["reason"], found
    assert "cancel-waiting" not in host.passive_jobs


def test_a_job_in_the_middle_of_its_psi_session_is_cancelled_at_once(configs):
    """The cancel arrives while the PSI session runs: the session ends at its next progress report, the passive
    party's side of it is aborted, no alignment is saved at either party, and both record the job as cancelled."""
    host = JobRegistry(LocalNode(configs["host"]))
    guest: JobRegistry | None = None
    cancelled = {}

    def cancel_now():
        runner = threading.Thread(target=lambda: cancelled.update(guest.cancel("cancel-psi", by="the test", wait=30)))
        runner.start()
        deadline = time.monotonic() + 30
        while guest.active_jobs["cancel-psi"]._stop is None:  # the registry asked the job to stop
            assert time.monotonic() < deadline
            time.sleep(0.01)
        cancel_now.runner = runner
    network = ProgressNetwork("guest", {"host": host}, on_first_report=cancel_now)
    guest = JobRegistry(LocalNode(configs["guest"], network))
    events = guest.start_active(job_spec("cancel-psi", **EXACT))
    last = wait_for(events, lambda e: e.done)
    cancel_now.runner.join(30)
    assert last.kind == "cancelled" and "stage psi" in last.message, last
    assert cancelled["state"] == "cancelled", cancelled
    assert len(network.reports) == 1, f"the PSI session ran on after the cancel: {network.reports[-3:]}"
    for config in configs.values():
        found = status_of(config, "cancel-psi")
        assert found["state"] == "cancelled" and "cancelled by the test" in found["reason"], found
        assert not has_alignment(config.job_dir("cancel-psi"))
    assert "cancel-psi" not in host.passive_jobs


def test_a_drain_lets_a_psi_session_finish(configs):
    """A drain (SIGTERM) does not end a PSI session: a job stopped before its alignment is saved cannot resume
    (PSI runs once per job), so the session finishes if it can and the job is suspended after it, resumable."""
    host = JobRegistry(LocalNode(configs["host"]))
    guest: JobRegistry | None = None

    def drain_now():
        guest.active_jobs["drain-psi"].request_stop("suspended", "the active node 'guest' is shutting down")
    network = ProgressNetwork("guest", {"host": host}, on_first_report=drain_now)
    guest = JobRegistry(LocalNode(configs["guest"], network))
    events = guest.start_active(job_spec("drain-psi", **EXACT))
    last = wait_for(events, lambda e: e.done)
    assert last.kind == "suspended" and "from its saved PSI alignment" in last.message, last
    assert len(network.reports) > 1
    for config in configs.values():
        assert status_of(config, "drain-psi")["state"] == "suspended"
        assert has_alignment(config.job_dir("drain-psi"))


def test_a_cancel_does_not_wait_for_the_passive_party_to_answer_a_step(configs):
    """Control for the first test: a step in flight is not interrupted (the passive party answers it), the cancel
    lands at the next step boundary, within a step's time."""
    host = JobRegistry(LocalNode(configs["host"]))
    slow = threading.Event()

    def tamper(peer, message):
        if slow.is_set() and isinstance(message, ForwardRequest):
            time.sleep(0.5)
        return message
    guest = JobRegistry(LocalNode(configs["guest"], LocalNetwork("guest", {"host": host}, tamper=tamper)))
    events = guest.start_active(job_spec("cancel-step", **EXACT, train__epochs=50))
    wait_for(events, lambda e: e.kind == "epoch")
    slow.set()
    shown = guest.cancel("cancel-step", by="the test", wait=30)
    assert shown["state"] == "cancelled"
    assert events.last().kind == "cancelled"


def test_a_cancel_at_a_passive_party_fails_the_job_everywhere_naming_that_party(configs):
    """A passive party's operator cancels its side of a running job: the active party cannot resume it there, so
    the job fails at the active party with a reason naming the passive party and its cancel; the passive party keeps
    `cancelled`, with its own operator's reason."""
    host = JobRegistry(LocalNode(configs["host"]))
    guest = JobRegistry(LocalNode(configs["guest"], LocalNetwork("guest", {"host": host})))
    events = guest.start_active(job_spec("cancel-at-host", **EXACT, train__epochs=50))
    wait_for(events, lambda e: e.kind == "epoch")
    shown = host.cancel("cancel-at-host", by="the host's operator")
    assert shown["state"] == "cancelled", shown
    last = wait_for(events, lambda e: e.done, timeout=60)
    assert last.failed and "'host'" in last.message and "cancelled" in last.message, last.message
    assert status_of(configs["guest"], "cancel-at-host")["state"] == "failed"
    found = status_of(configs["host"], "cancel-at-host")
    assert found["state"] == "cancelled" and "cancelled by the host's operator" in found["reason"], found
    assert "cancel-at-host" not in host.passive_jobs
