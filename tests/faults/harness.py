"""The fault suite's federation and its tools: real `vfl serve` processes (through tests/faults/launcher.py, for the
stage barriers), the passive node behind a fault proxy, shortened keepalive and timeouts, and checks that nothing
was lost."""
from __future__ import annotations

import copy
import json
import os
import signal
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

import numpy as np

from tests.faults.launcher import STAGES
from tests.faults.proxy import FaultProxy
from tests.procs import NodesThrough

LAUNCHER = Path(__file__).with_name("launcher.py")


def nodes_through_launcher() -> NodesThrough:
    """vfl.api's `subprocess`, with each Federation node started through the fault launcher."""
    return NodesThrough(LAUNCHER)
ACTIVE, PASSIVE = "guest", "host"
# keepalive notices a silent peer within ~2 s (grpcio pings at most every second)
PING_MS, PING_TIMEOUT_MS = 1000, 1000
DETECT_SECONDS = (PING_MS + PING_TIMEOUT_MS) / 1000
TIMEOUTS = {"resume_wait_seconds": 40, "lease_seconds": 20, "drain_seconds": 5}
# plaintext split learning (the nodes allow it for tests): runs of one spec train bit for bit alike, so "the same
# model" is checked to 1e-6; the stages under test do not depend on the crypto (tests/node covers Paillier resumes)
JOB = {"model": {"bottom": {"hidden": [16], "out": 8}, "interactive": {"out": 8}, "top": {"hidden": [8]}},
       "train": {"epochs": 2, "batch_size": 64, "lr": 0.01, "interactive_lr": 0.1, "seed": 2},
       "split": {"validation": 0.1, "test": 0.25, "seed": 4},
       "crypto": {"mode": "plaintext"}, "privacy": {"defense": "none"}}
TOLERANCE = 1e-6


@dataclass
class Suite:
    fed: object
    proxy: FaultProxy
    barriers: Path
    reference: str = "reference"
    timings: dict = field(default_factory=dict)

    # ------------------------------------------------------------------ nodes
    def pid(self, party: str) -> int:
        return self.fed.processes[party].pid

    def signal(self, party: str, sig: int) -> None:
        os.kill(self.pid(party), sig)

    def kill(self, party: str) -> None:
        self.signal(party, signal.SIGKILL)
        self.fed.processes[party].wait(30)

    def terminate(self, party: str) -> None:
        """SIGTERM: the node drains (timeouts.drain_seconds) and exits by itself."""
        self.signal(party, signal.SIGTERM)
        self.fed.processes[party].wait(60)

    def start(self, party: str) -> None:
        self.fed.start_node(party)

    def client(self, party: str = ACTIVE):
        from vfl.api import Client
        return Client.from_node_config(self.fed.configs[party])

    def job_dir(self, party: str, job_id: str) -> Path:
        return self.fed.workdir / party / "jobs" / job_id

    # ------------------------------------------------------------------ barriers
    def reached(self, job_id: str, stage: str) -> Path:
        return self.barriers / f"{job_id}.{stage}.reached"

    def go(self, job_id: str, stage: str) -> None:
        (self.barriers / f"{job_id}.{stage}.go").write_text("go")

    def release(self, job_id: str) -> None:
        for stage in STAGES:
            self.go(job_id, stage)

    # ------------------------------------------------------------------ a job under faults
    def submit(self, job_id: str, barriers: bool = True, **changes) -> "Run":
        spec = {"job_id": job_id, "kind": "train", "task": "binary", "active": ACTIVE,
                "parties": {ACTIVE: {"dataset": "table"}, PASSIVE: {"dataset": "table"}}, **copy.deepcopy(JOB)}
        spec.update(changes)
        if barriers:
            (self.barriers / f"{job_id}.barriers").write_text("on")
        run = Run(self, job_id)
        run.thread = threading.Thread(target=run.first_stream, args=(spec,), daemon=True)
        run.thread.start()
        return run


@dataclass
class Run:
    suite: Suite
    job_id: str
    thread: threading.Thread | None = None
    stream_error: str | None = None
    stream_result: dict | None = None

    def first_stream(self, spec: dict) -> None:
        from vfl.api import JobError
        client = self.suite.client()
        try:
            self.stream_result = client.run(spec, progress=False)
        except JobError as exc:
            self.stream_error = str(exc)
        finally:
            client.close()

    def wait_reached(self, stage: str, timeout: float = 120) -> bool:
        """Until the job stops at `stage`'s barrier (True), or it is over without reaching it (False)."""
        path = self.suite.reached(self.job_id, stage)
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if path.exists():
                return True
            state = self.active_state()
            if state is not None and state not in ("running", "committing", "suspended"):
                return False
            time.sleep(0.05)
        raise AssertionError(f"job {self.job_id} reached neither stage {stage} nor its end in {timeout} s")

    def active_state(self) -> str | None:
        found = read_status(self.suite.job_dir(ACTIVE, self.job_id))
        return found.get("state") if found else None

    def through_stages(self, faults: dict[str, Callable[[], Callable[[], None] | None]]) -> list[str]:
        """Walk the job through its stages: at each one in `faults`, the fault is put in place while the job waits
        at the stage's barrier; whatever it returns runs after the job was let go. Returns the stages reached."""
        reached = []
        for stage in STAGES:
            if not self.wait_reached(stage):
                break
            reached.append(stage)
            fault = faults.get(stage)
            after = fault() if fault else None
            self.suite.go(self.job_id, stage)
            if after:
                after()
        self.suite.release(self.job_id)
        return reached

    def outcome(self, timeout: float = 180) -> dict:
        """Follow the job to its end over WatchJob (re-attaching while the active node restarts): its result, or
        {'error': message}."""
        from vfl.api import JobError
        deadline = time.monotonic() + timeout
        last = None
        while time.monotonic() < deadline:
            client = self.suite.client()
            try:
                return client.attach(self.job_id, progress=False)
            except JobError as exc:  # a failed job (code None), or the node restarting (UNAVAILABLE, ...)
                last = str(exc)
                if exc.code not in ("UNAVAILABLE", "CANCELLED", "DEADLINE_EXCEEDED", "UNKNOWN"):
                    return {"error": last}
            finally:
                client.close()
            time.sleep(0.5)
        raise AssertionError(f"job {self.job_id} did not end within {timeout} s; last: {last}")


def read_status(job_dir: Path) -> dict | None:
    try:
        return json.loads((job_dir / "status.json").read_text())
    except (OSError, ValueError):
        return None


def model_arrays(job_dir: Path, party: str) -> dict[str, np.ndarray]:
    import torch
    from vfl.job.checkpoint import load_torch
    part = load_torch(job_dir / "model" / "party.pt")   # the harness runs the nodes: it holds their at-rest keys
    out = {}

    def walk(value, prefix):
        if isinstance(value, torch.Tensor):
            out[prefix] = value.detach().double().numpy()
        elif isinstance(value, dict):
            for key, item in value.items():
                walk(item, f"{prefix}.{key}")
    walk({k: v for k, v in part.items() if k in ("model", "bottom", "links", "share")}, party)
    return out


def assert_same_model(suite: Suite, job_id: str) -> None:
    """Every party's saved part (the interactive W included) as an uninterrupted run's, within 1e-6."""
    ours, theirs = {}, {}
    for party in (ACTIVE, PASSIVE):
        ours.update(model_arrays(suite.job_dir(party, job_id), party))
        theirs.update(model_arrays(suite.job_dir(party, suite.reference), party))
    assert ours.keys() == theirs.keys() and ours
    differences = {k: float(np.abs(ours[k] - theirs[k]).max()) for k in ours}
    assert max(differences.values()) <= TOLERANCE, differences


def assert_nothing_partial(suite: Suite, job_id: str) -> None:
    """No temp file, no staged artifact, no model part at a party whose job did not succeed."""
    for party in (ACTIVE, PASSIVE):
        job_dir = suite.job_dir(party, job_id)
        if not job_dir.exists():
            continue
        assert not list(job_dir.rglob("*.tmp")), (party, list(job_dir.rglob("*.tmp")))
        assert not (job_dir / "staged").exists(), party
        found = read_status(job_dir) or {}
        if found.get("state") != "succeeded":
            assert not (job_dir / "model").exists(), (party, found)


def states(suite: Suite, job_id: str) -> dict[str, str | None]:
    """Each party's state of the job as its node reports it (vfl jobs), or None if it never heard of it."""
    out = {}
    for party in (ACTIVE, PASSIVE):
        client = suite.client(party)
        try:
            jobs = {j["job_id"]: j for j in client.jobs()}
        finally:
            client.close()
        out[party] = jobs[job_id]["state"] if job_id in jobs else None
    return out


def assert_succeeded_everywhere(suite: Suite, run: Run, outcome: dict) -> None:
    assert "error" not in outcome, outcome
    assert [h["epoch"] for h in outcome["history"]] == [1, 2]
    assert states(suite, run.job_id) == {ACTIVE: "succeeded", PASSIVE: "succeeded"}
    assert_same_model(suite, run.job_id)
    assert_nothing_partial(suite, run.job_id)


def assert_failed_everywhere(suite: Suite, run: Run, outcome: dict, reason: str) -> None:
    """A clear failure: the reason at the submitter, 'failed' at every party that heard of the job, nothing left
    open or half-written."""
    assert reason in outcome.get("error", ""), outcome
    found = states(suite, run.job_id)
    assert found[ACTIVE] == "failed" and found[PASSIVE] in ("failed", None), found
    assert_nothing_partial(suite, run.job_id)
