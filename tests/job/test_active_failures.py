"""A job the active node cannot even start still ends: its submitter gets an error event, not silence.

Before the fix the job directory and job.yaml were written outside the job's error handling: with a jobs_dir that
could not be written, the job thread died without an event and the submitter's stream waited forever (issue 15,
defect 3). This test failed then by timing out on `events.follow`.
"""
from __future__ import annotations

import threading

from tests.job.conftest import job_spec
from tests.job.local import LocalNetwork, LocalNode
from vfl.job.registry import JobRegistry


def test_an_unwritable_jobs_dir_fails_the_job_with_an_event(configs, tmp_path):
    import dataclasses
    blocked = tmp_path / "not-a-directory"
    blocked.write_text("a file where the jobs directory should be")
    guest = dataclasses.replace(configs["guest"], jobs_dir=blocked)
    host = JobRegistry(LocalNode(configs["host"]))
    node = LocalNode(guest, LocalNetwork("guest", {"host": host}))
    events = JobRegistry(node).start_active(job_spec("blocked-1"))
    seen = []
    follower = threading.Thread(target=lambda: seen.extend(events.follow()), daemon=True)
    follower.start()
    follower.join(timeout=60)
    assert not follower.is_alive(), "the job ended without a final event: its submitter would wait forever"
    last = seen[-1]
    assert last.kind == "error" and last.done and last.failed
    assert "not-a-directory" in last.message or "Not a directory" in last.message, last.message
