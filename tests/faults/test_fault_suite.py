"""The fault suite (issue 15, "A fault suite in make test"): real node processes, a fault proxy between them, and at
each stage of a job (open, PSI, set-up, an epoch, the test evaluation, the close) a fault of each kind: kill -9,
SIGTERM and SIGSTOP of either node, a cut, a stall and a delay of the link; then a full and a read-only jobs_dir at
each role, and several jobs at once. Each case checks that nothing was lost: the job ends with the model an
uninterrupted run ends with (every saved parameter and W within 1e-6), or fails with a clear reason at every party;
no partial file is left, and no job stays open at any party.

One federation serves the whole module: a job walks through its stages and meets the fault at each one (the nodes
stop at stage barriers, tests/faults/launcher.py, while the fault is put in place). What each fault does, how long
noticing it takes and what an operator sees: docs/operations.md.
"""
from __future__ import annotations

import signal
import threading
import time

import pytest

from psi.transport import keepalive
from tests.faults import harness
from tests.faults.harness import (ACTIVE, DETECT_SECONDS, PASSIVE, PING_MS, PING_TIMEOUT_MS, TIMEOUTS, Suite,
                                  assert_failed_everywhere, assert_nothing_partial, assert_succeeded_everywhere,
                                  states)
from tests.faults.launcher import BARRIER_ENV
from tests.faults.proxy import FaultProxy
from tests.node.conftest import breast_parties

pytestmark = pytest.mark.slow
STOP_SECONDS = DETECT_SECONDS + 0.5  # a stopped node or a stalled link outlasts keepalive: the job must resume
PSI_ONCE = "PSI runs once per job"


@pytest.fixture(scope="module")
def suite(tmp_path_factory):
    import vfl.api
    from vfl.api import Federation
    workdir = tmp_path_factory.mktemp("faults")
    barriers = workdir / "barriers"
    barriers.mkdir()
    proxy = FaultProxy()
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv(keepalive.TIME_ENV, str(PING_MS))
        patch.setenv(keepalive.TIMEOUT_ENV, str(PING_TIMEOUT_MS))
        patch.setenv(BARRIER_ENV, str(barriers))
        patch.setattr(vfl.api, "subprocess", harness.nodes_through_launcher())
        # the active node reaches the passive one through the proxy
        with Federation(breast_parties(), workdir=workdir / "fed", secret_seed=5,
                        node_options={"timeouts": TIMEOUTS}, peer_addresses={PASSIVE: proxy.address}) as fed:
            proxy.target_port = fed.ports[PASSIVE]
            suite = Suite(fed, proxy, barriers)
            run = suite.submit(suite.reference, barriers=False)
            run.thread.join(120)
            assert run.stream_result is not None, run.stream_error
            yield suite
    proxy.close()


# ---------------------------------------------------------------------------------------------- the faults
def kill_passive(suite: Suite):
    suite.kill(PASSIVE)
    return lambda: suite.start(PASSIVE)  # the job meets a dead peer, waits, and resumes once it is back


def terminate_passive(suite: Suite):
    suite.terminate(PASSIVE)
    return lambda: suite.start(PASSIVE)


def stop_passive(suite: Suite):
    suite.signal(PASSIVE, signal.SIGSTOP)

    def resume():
        time.sleep(STOP_SECONDS)
        suite.signal(PASSIVE, signal.SIGCONT)
    return resume


def kill_active(suite: Suite):
    suite.kill(ACTIVE)
    suite.start(ACTIVE)  # the restarted node recovers the job (JobRegistry.recover) and stops at this barrier again


def terminate_active(suite: Suite):
    suite.terminate(ACTIVE)  # drained: the job is suspended at every party
    suite.start(ACTIVE)


def stop_active(suite: Suite):
    suite.signal(ACTIVE, signal.SIGSTOP)
    time.sleep(STOP_SECONDS)
    suite.signal(ACTIVE, signal.SIGCONT)


def cut_link(suite: Suite):
    suite.proxy.cut(2.0)


def stall_link(suite: Suite):
    suite.proxy.stall(STOP_SECONDS)


def delay_link(suite: Suite):
    suite.proxy.delay(0.2, 2.0)


STAGES = ("open", "psi", "psi-mid", "setup", "train", "evaluate", "close")  # psi-mid: during the PSI session
LATER = STAGES[3:]  # the stages after the job's alignment is saved
RESTARTS = ("open", "psi") + LATER  # a passive restarted in the middle of PSI lost the session: see below


def run_faults(suite: Suite, job_id: str, fault, stages):
    """Submit a job and put `fault` in place at each of `stages`; (run, stages reached, outcome)."""
    run = suite.submit(job_id)
    reached = run.through_stages({stage: (lambda: fault(suite)) for stage in stages})
    return run, reached, run.outcome()


# ---------------------------------------------------------------------------------------------- at every stage
@pytest.mark.parametrize("fault", [cut_link, stall_link, delay_link, stop_active], ids=lambda f: f.__name__)
def test_a_fault_at_every_stage_loses_nothing(suite, fault):
    """The job meets the fault at each of its stages, in the middle of its PSI session too (the session's stream is
    reattached), one after the other, and still ends with the uninterrupted run's model, succeeded at both
    parties."""
    t0 = time.monotonic()
    run, reached, outcome = run_faults(suite, f"every-{fault.__name__}", fault, STAGES)
    suite.timings[fault.__name__] = round(time.monotonic() - t0, 1)
    assert reached == list(STAGES), (reached, outcome)
    assert_succeeded_everywhere(suite, run, outcome)


@pytest.mark.parametrize("fault", [kill_passive, terminate_passive], ids=lambda f: f.__name__)
def test_a_passive_restart_at_every_stage_loses_nothing(suite, fault):
    """The passive node restarts at each stage but the middle of PSI (next test): each time the job resumes, and it
    ends with the uninterrupted run's model."""
    t0 = time.monotonic()
    run, reached, outcome = run_faults(suite, f"restart-{fault.__name__}", fault, RESTARTS)
    suite.timings[fault.__name__] = round(time.monotonic() - t0, 1)
    assert reached == list(STAGES), (reached, outcome)
    assert_succeeded_everywhere(suite, run, outcome)


@pytest.mark.parametrize("fault", [kill_active, terminate_active], ids=lambda f: f.__name__)
def test_the_active_node_lost_after_the_alignment_resumes_at_every_stage(suite, fault):
    """Killed (or drained) at set-up, mid-training, before the test evaluation and before the close: each time the
    restarted node resumes the job from the last checkpoint both parties hold, to the same model."""
    t0 = time.monotonic()
    run, reached, outcome = run_faults(suite, f"later-{fault.__name__}", fault, LATER)
    suite.timings[fault.__name__] = round(time.monotonic() - t0, 1)
    assert reached == list(STAGES), (reached, outcome)
    assert_succeeded_everywhere(suite, run, outcome)


@pytest.mark.parametrize("stage", ["open", "psi"])
@pytest.mark.parametrize("fault", [kill_active, terminate_active], ids=lambda f: f.__name__)
def test_the_active_node_lost_before_the_alignment_fails_the_job_everywhere(suite, fault, stage):
    """Before its PSI alignment is saved a job cannot resume (PSI runs once per job): the restarted node fails it
    with that reason and closes the passive party's side."""
    run, reached, outcome = run_faults(suite, f"{stage}-{fault.__name__}", fault, [stage])
    assert reached[-1] == stage
    assert_failed_everywhere(suite, run, outcome, PSI_ONCE)


def test_a_passive_restarted_in_the_middle_of_psi_fails_the_job_clearly(suite):
    """The restarted passive node lost the session's state (its keys never leave it), and the job's one PSI session
    is claimed there: a new session is refused, and the job fails at every party with that reason."""
    run, reached, outcome = run_faults(suite, "restart-mid-psi", kill_passive, ["psi-mid"])
    assert reached[-1] == "psi-mid"
    assert_failed_everywhere(suite, run, outcome, PSI_ONCE)


def test_a_stopped_passive_node_at_each_stage(suite):
    """SIGSTOP of the passive node for longer than keepalive's detection, at each stage (in the middle of PSI too:
    the session's stream is reattached when the node continues): the job resumes each time. (Just before PSI the
    session's first message waits in the stopped node's socket buffer: see the next test.)"""
    run, reached, outcome = run_faults(suite, "stopped-passive", stop_passive, ("open", "psi-mid") + LATER)
    assert reached == list(STAGES), (reached, outcome)
    assert_succeeded_everywhere(suite, run, outcome)


def test_a_passive_node_stopped_at_psi_resumes_or_fails_clearly(suite):
    """A session whose first message reached the stopped passive node has claimed the job's one PSI session there:
    a second session is refused, so the job fails at every party with that reason. If the message never reached
    it, the retried session runs and the job succeeds. Either way nothing is lost."""
    run, reached, outcome = run_faults(suite, "stopped-psi", stop_passive, ["psi"])
    if "error" in outcome:
        assert_failed_everywhere(suite, run, outcome, PSI_ONCE)
    else:
        assert_succeeded_everywhere(suite, run, outcome)


# ---------------------------------------------------------------------------------------------- disks
@pytest.mark.parametrize("mode", ["full", "read-only"])
@pytest.mark.parametrize("party", [ACTIVE, PASSIVE])
def test_an_unwritable_jobs_dir_fails_the_job_at_once_and_clearly(suite, party, mode):
    """The party's jobs_dir fills up (or turns read-only) while the job waits before its second epoch: the next
    checkpoint fails, and the submitter hears at once which party could not write which file, and why."""
    from tests.disks import small_disk
    job_id = f"disk-{party}-{mode}"
    job_dir = suite.job_dir(party, job_id)
    with small_disk(job_dir, size_kib=2048) as disk:
        run = suite.submit(job_id)
        for stage in STAGES[:4]:
            assert run.wait_reached(stage)
            suite.go(job_id, stage)
        assert run.wait_reached("train")
        disk.fill() if mode == "full" else disk.read_only()
        t0 = time.monotonic()
        suite.release(job_id)
        outcome = run.outcome()
        took = time.monotonic() - t0
        cause = "No space left on device" if mode == "full" else "Read-only file system"
        assert f"party '{party}' cannot write its checkpoint: {cause}" in outcome.get("error", ""), outcome
        assert took < 15, f"the failure took {took:.1f} s to reach the submitter"
        assert str(suite.fed.workdir) not in outcome["error"]  # a path never travels, a peer's above all
        assert states(suite, job_id) == {ACTIVE: "failed", PASSIVE: "failed"}
        assert not list(job_dir.rglob("*.tmp")) and not (job_dir / "model").exists()
        if mode == "read-only":
            disk.read_only(False)
        disk.free()
    assert_nothing_partial(suite, job_id)


# ---------------------------------------------------------------------------------------------- several jobs
def test_concurrent_jobs_all_survive_a_passive_restart(suite):
    """Three jobs at once; the passive node is killed and restarted while all of them train: each resumes and ends
    with the uninterrupted run's model."""
    runs = [suite.submit(f"together-{i}") for i in range(3)]
    for stage in STAGES[:4]:  # all three walk to their second epoch together
        for run in runs:
            assert run.wait_reached(stage)
        for run in runs:
            suite.go(run.job_id, stage)
    for run in runs:
        assert run.wait_reached("train")
    suite.kill(PASSIVE)
    for run in runs:
        suite.release(run.job_id)
    time.sleep(0.5)
    suite.start(PASSIVE)
    outcomes = {}
    threads = [threading.Thread(target=lambda r=r: outcomes.setdefault(r.job_id, r.outcome())) for r in runs]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(240)
    for run in runs:
        assert_succeeded_everywhere(suite, run, outcomes[run.job_id])
