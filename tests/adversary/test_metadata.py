"""Adversaries playing the active party, reading what the passive node sends besides the payloads.

Each test runs real node processes (`vfl.api.Federation`, mutual TLS on loopback) and a real job. The active
node is started through tests/adversary/metadata_tap.py, which records, inside the active party's own
process, the status code, status details and initial and trailing metadata of every call it makes to the
passive node. That record, the active node's log, its job directory and the job's events are what the
active party holds; each adversary searches them for something the passive party did not agree to reveal.
"""
from __future__ import annotations

import copy
import re
from pathlib import Path

import pytest

from tests.procs import NodesThrough
from tests.adversary.metadata_models import SECRET_MARKER, fails_on_real_batches
from tests.adversary.metadata_tap import DIR_ENV, read_tap
from tests.node.conftest import SMALL_JOB, breast_parties

TAP = Path(__file__).with_name("metadata_tap.py")
PARTY = "/vfl.node.Party/"
PER_STEP = ("Forward", "WeightGradient", "InputGradient")
NUMBER = re.compile(r"[-+]?(\d+\.?\d*|\.\d+)([eE][-+]?\d+)?")
ERROR_ID = re.compile(r"error id ([0-9a-f]{8,})")


@pytest.fixture
def tapped(tmp_path, monkeypatch) -> Path:
    """Nodes started by this test run through the tap; returns the directory the tap writes to."""
    import vfl.api
    tap_dir = tmp_path / "tap"
    monkeypatch.setenv(DIR_ENV, str(tap_dir))
    monkeypatch.setattr(vfl.api, "subprocess", NodesThrough(TAP))
    return tap_dir


def _job(epochs: int = 1) -> dict:
    job = copy.deepcopy(SMALL_JOB)
    job["train"]["epochs"] = epochs
    job["privacy"] = {"defense": "none"}
    return job


def party_calls(records: list[dict]) -> list[dict]:
    """The tap's records of Party-service calls (the per-step training RPCs and the job lifecycle)."""
    return [r for r in records if r["method"].startswith(PARTY)]


def handler_timings(records: list[dict]) -> list[tuple[str, str, float]]:
    """(method, metadata key, seconds) for every number the passive node put in a call's metadata.

    The adversary does not trust key names: any initial or trailing metadata value that reads as a number is
    taken as a candidate per-call time (what the handler-timing side channel needs, one figure per call).
    """
    found = []
    for record in records:
        for key, value in record["initial_metadata"] + record["trailing_metadata"]:
            match = NUMBER.fullmatch(value.strip().rstrip("sm"))
            if match:
                found.append((record["method"].rsplit("/", 1)[-1], key, float(match.group(0))))
    return found


def run_training(tmp_path: Path, node_options: dict | None = None) -> dict:
    from vfl.api import Federation
    with Federation(breast_parties(), workdir=tmp_path / "fed", node_options=node_options) as fed:
        model = fed.fit(task="binary", job_id="metadata", progress=False, **_job())
    return model.metrics


def test_active_party_finds_no_handler_timing_in_what_the_passive_node_sends(tmp_path, tapped):
    """Adversary: the active party of a real training job, holding its own node process and everything it
    receives from the passive node over gRPC, including initial and trailing metadata of every call.

    It tries to learn the passive node's time inside each handler (Forward, WeightGradient, InputGradient,
    ...): the multi-exponentiation skips zero digits and bottom outputs end in ReLU, so that time tracks how
    many of the passive party's activations are zero. With the default node config it must find no number in
    any call's metadata, and no timing of the passive party's in the CloseJob report that lands in the job's
    result. Fails at b87a1c7, where every reply carried `vfl-handler-seconds` (and the CloseJob report the
    passive party's time per kind of work, which a job of one forward call turns into a per-call figure).
    """
    metrics = run_training(tmp_path)
    records = read_tap(tapped, "guest")  # every call the active node made: Party RPCs and the PSI session
    seen = {r["method"][len(PARTY):] for r in party_calls(records) if r["code"] == "OK"}
    assert set(PER_STEP) <= seen, f"the tap saw no completed {set(PER_STEP) - seen} call: nothing was checked"
    timings = handler_timings(records)
    assert not timings, (f"the active party extracted {len(timings)} per-call handler timings from the "
                         f"passive node's metadata, e.g. {timings[:4]}")
    # without the peer's report, the active party's own breakdown cannot split the round trip
    timing = metrics["timing"]["guest"]
    assert timing["peer work + transport"] > 0
    assert "waiting on peers' work" not in timing and "transport" not in timing, timing
    # nor does the passive party's CloseJob report (in the job's result) carry its crypto time for the job
    assert not metrics["timing"].get("host"), metrics["timing"].get("host")


def test_with_the_benchmark_option_the_same_adversary_finds_the_timings(tmp_path, tapped):
    """The control. Adversary: the same active party, holding the same things, in a federation whose nodes set
    `report_handler_timing: true` (what benchmarks/train_bench.py does). It tries to learn the same per-call
    handler times and must find one for every completed Forward, WeightGradient and InputGradient call, so the
    test above can fail; the active party's timing then splits peer work from transport. Fails at b87a1c7
    too: that code had no such option, and its nodes refused the key.
    """
    metrics = run_training(tmp_path, node_options={"report_handler_timing": True})
    calls = party_calls(read_tap(tapped, "guest"))
    timings = handler_timings(calls)
    per_step = [r for r in calls if r["method"][len(PARTY):] in PER_STEP and r["code"] == "OK"]
    assert per_step and len([t for t in timings if t[0] in PER_STEP]) == len(per_step), (len(per_step), timings[:4])
    assert all(seconds >= 0 for _, _, seconds in timings)
    timing = metrics["timing"]["guest"]
    assert timing["waiting on peers' work"] > 0 and timing["transport"] > 0, timing
    assert "peer work + transport" not in timing, timing
    assert metrics["timing"]["host"].get("matrix products", 0) > 0, metrics["timing"]["host"]


def _texts_under(directory: Path) -> dict[str, str]:
    """Every file below `directory` as its party reads it (opened with its own at-rest key), decoded leniently
    (binary files included: a marker is ASCII)."""
    from vfl.data import sealed
    return {str(p): sealed.read_bytes(p).decode("utf-8", "replace") for p in sorted(directory.rglob("*"))
            if p.is_file()}


def test_active_party_reads_no_internal_error_text_of_the_passive_node(tmp_path, tapped):
    """Adversary: the active party of a real training job in which the passive party's own bottom model raises
    an internal error (RuntimeError, not an error a peer caused) whose message holds a private path. It holds
    its node process and log, its job directory, the job's events, and every status code, status detail and
    metadata entry it received from the passive node.

    It tries to learn the passive party's exception text or type. It must find neither, but must find an
    error id that also appears, next to the full exception, in the passive node's log, so the two operators
    can match the failure. Fails at b87a1c7 (the code before the fix), which sent
    `internal error: RuntimeError: <message>` to the peer.
    """
    from vfl.api import Federation, JobError
    guest, host = breast_parties()
    host.bottom = fails_on_real_batches
    events = []
    with Federation([guest, host], workdir=tmp_path / "fed") as fed:
        with pytest.raises(JobError) as failure:
            fed.fit(task="binary", job_id="leaky", progress=False, on_event=events.append, **_job())
        # the passive node keeps serving: a PSI job still runs
        assert fed.psi(job_id="after", progress=False)["intersection"] > 0
    records = read_tap(tapped, "guest")
    received = {"job failure": str(failure.value),
                "job events": "\n".join(f"{e.message} {e.metrics_json}" for e in events),
                "status details": "\n".join(f"{r['method']} {r['code']} {r['details']}" for r in records),
                "metadata": repr([r["initial_metadata"] + r["trailing_metadata"] for r in records]),
                "active node log": (tmp_path / "fed" / "guest.log").read_text(errors="replace"),
                **_texts_under(tmp_path / "fed" / "guest" / "jobs" / "leaky")}
    for secret in (SECRET_MARKER, "/data/patients.csv", "RuntimeError"):
        leaked = [where for where, text in received.items() if secret in text]
        assert not leaked, f"the active party reads {secret!r} in: {leaked}\n{received['status details']}"
    failed = [r for r in records if r["code"] == "INTERNAL"]
    assert failed, f"no INTERNAL status reached the active party:\n{received['status details']}"
    ids = {m for r in failed for m in ERROR_ID.findall(r["details"] or "")}
    assert len(ids) == 1, f"expected one error id in the status details: {[r['details'] for r in failed]}"
    error_id = ids.pop()
    assert error_id in str(failure.value), "the job's error message does not carry the passive node's error id"
    host_log = (tmp_path / "fed" / "host.log").read_text(errors="replace")
    at = host_log.find(error_id)
    assert at >= 0, "the passive node's log does not name the error id the active party received"
    entry = host_log[at:at + 20_000]
    assert "Traceback (most recent call last)" in entry and SECRET_MARKER in entry, entry[:2000]
