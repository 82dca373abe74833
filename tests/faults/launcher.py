"""Test-only node launcher for the fault suite: ``python tests/faults/launcher.py serve --config node.yaml``.

It runs the ordinary ``vfl`` CLI after patching, here only (production code has no hook), stage barriers into the
active runtime, so a test can put a fault in place exactly when a job reaches a stage: with
``$VFL_FAULT_BARRIER_DIR`` set, a job for which ``<dir>/<job_id>.barriers`` exists stops at the start of each stage,
writes ``<dir>/<job_id>.<stage>.reached`` and waits until ``<dir>/<job_id>.<stage>.go`` exists. Stages: open (before
the OpenJob calls), psi (before the session), psi-mid (the session's first progress report: it is under way at both
parties), setup (before Setup), train (before the second epoch), evaluate (before the test evaluation), close (before
the close's prepare). A barrier is a step boundary: a cancel or a drain
stops the job there. A stage reached again (after a resume or a restart) passes: its go file exists.
"""
from __future__ import annotations

import os
import sys
import time
from pathlib import Path

BARRIER_ENV = "VFL_FAULT_BARRIER_DIR"
STAGES = ("open", "psi", "psi-mid", "setup", "train", "evaluate", "close")


def barrier(job, stage: str) -> None:
    root = os.environ.get(BARRIER_ENV)
    if not root:
        return
    root = Path(root)
    job_id = job.spec.job_id
    go = root / f"{job_id}.{stage}.go"
    if not (root / f"{job_id}.barriers").exists() or go.exists():
        return
    (root / f"{job_id}.{stage}.reached").write_text(str(os.getpid()))
    deadline = time.monotonic() + 300
    while not go.exists():
        job._check_stop()
        if time.monotonic() > deadline:
            raise TimeoutError(f"barrier {stage} of job {job_id}: no go within 300 s")
        time.sleep(0.05)


def install() -> None:
    from vfl.job import active
    cls = active.ActiveJob

    def wrap(name: str, stage: str, when=lambda job, *args, **kwargs: True) -> None:
        original = getattr(cls, name)

        def patched(self, *args, **kwargs):
            if when(self, *args, **kwargs):
                barrier(self, stage)
            return original(self, *args, **kwargs)
        setattr(cls, name, patched)
    wrap("_open", "open")
    wrap("_psi", "psi")
    wrap("_psi_progress", "psi-mid")  # its first progress report: the session is under way at both ends
    wrap("_setup_links", "setup")
    wrap("_run_epoch", "train", lambda job, epoch: epoch == 1)
    # the test evaluation: predict_rows over the test split (the validation of each epoch goes through `evaluate`)
    wrap("predict_rows", "evaluate", lambda job, positions, phase, epoch: phase == "eval"
         and positions is job.data.split.test)
    wrap("_close_succeeded", "close")


if __name__ == "__main__":
    sys.path.insert(0, str(Path(__file__).resolve().parents[2]))
    install()
    from vfl.cli.main import main
    sys.exit(main(sys.argv[1:]))
