"""The fault suite's stage barriers (tests/faults/launcher.py) are reached, each of them, by a job of the runtime as it
is now: in one process (tests/job/local.py), in seconds, so that a runtime change that moves a stage away from the
method a barrier patches shows here, by name, and not as the fault suite's stage walks timing out.

Before: the test evaluation had moved from `ActiveJob.evaluate` to `predict_rows`, so the `evaluate` barrier was
never reached and every fault-suite case that walks all stages failed after minutes of waiting.
"""
from __future__ import annotations

import time

from tests.faults import launcher
from tests.job.conftest import job_spec, local_configs
from tests.job.local import LocalNode, ProgressNetwork
from vfl.job.registry import JobRegistry


def test_a_job_reaches_every_stage_barrier_in_order(tmp_path, monkeypatch):
    from vfl.job import active
    for name, value in list(vars(active.ActiveJob).items()):  # install() patches the class: restored after the test
        if callable(value):
            monkeypatch.setattr(active.ActiveJob, name, value)
    launcher.install()
    barriers = tmp_path / "barriers"
    barriers.mkdir()
    monkeypatch.setenv(launcher.BARRIER_ENV, str(barriers))
    (barriers / "walk.barriers").write_text("on")
    configs = local_configs(tmp_path / "nodes")
    host = JobRegistry(LocalNode(configs["host"]))
    guest = JobRegistry(LocalNode(configs["guest"], ProgressNetwork("guest", {"host": host})))
    events = guest.start_active(job_spec("walk", crypto={"mode": "plaintext"}, privacy={"defense": "none"},
                                         train__epochs=2))
    reached = []
    for stage in launcher.STAGES:
        deadline = time.monotonic() + 60
        while not (barriers / f"walk.{stage}.reached").exists():
            assert not events.finished, f"the job ended without reaching barrier {stage!r}; reached {reached}"
            assert time.monotonic() < deadline, f"barrier {stage!r} not reached in 60 s; reached {reached}"
            time.sleep(0.02)
        reached.append(stage)
        (barriers / f"walk.{stage}.go").write_text("go")
    deadline = time.monotonic() + 120
    for event in events.follow(lambda: time.monotonic() > deadline, poll=0.1):
        if event.done:
            assert event.kind == "result", event.message
            break
    assert reached == list(launcher.STAGES)
