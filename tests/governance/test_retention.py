"""Retention: each kind goes when its time after the job's end has passed, nothing else goes, every deletion is on
record (audit log, retention.json), and lineage tells a deleted file from a missing one."""
from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path

import pytest

from vfl.errors import ConfigError
from vfl.governance.audit_log import verify
from vfl.governance.audit_log import load_key
from vfl.governance.lineage import LineageError, verify_lineage, write_lineage
from vfl.governance.retention import RetentionConfig, sweep
from vfl.node.config import parse_node_config

REPO = Path(__file__).resolve().parents[2]
DAY = 86_400


def make_job(jobs: Path, job_id: str, ended_days_ago: float | None) -> Path:
    job = jobs / job_id
    (job / "checkpoints").mkdir(parents=True)
    (job / "checkpoints" / "epoch-0001.pt").write_bytes(b"c" * 100)
    (job / "model").mkdir()
    (job / "model" / "party.pt").write_bytes(b"m" * 100)
    (job / "aligned_ids.json").write_text('["a", "b"]')
    (job / "aligned_rows.npy").write_bytes(b"r" * 10)
    if ended_days_ago is not None:
        (job / "privacy_report.json").write_text("{}")
        when = time.time() - ended_days_ago * DAY
        os.utime(job / "privacy_report.json", (when, when))
    return job


def remaining(job: Path) -> set[str]:
    return {p.relative_to(job).as_posix() for p in job.rglob("*") if p.is_file()} - {"retention.json"}


def test_each_kind_goes_after_its_time_and_nothing_else(tmp_path):
    jobs = tmp_path / "jobs"
    old, new, running = make_job(jobs, "old", 10), make_job(jobs, "new", 0), make_job(jobs, "running", None)
    config = RetentionConfig(days={"aligned_ids": 0, "checkpoints": 7, "results": 30})
    before = remaining(old)
    assert sweep(jobs, config, dry_run=True) and remaining(old) == before   # dry run: nothing deleted
    done = sweep(jobs, config)
    assert {(d.job_id, d.kind) for d in done} == {("old", "aligned_ids"), ("old", "checkpoints"),
                                                  ("new", "aligned_ids")}
    assert remaining(old) == {"model/party.pt", "privacy_report.json"}
    assert remaining(new) == {"model/party.pt", "privacy_report.json", "checkpoints/epoch-0001.pt"}
    assert "aligned_ids.json" in remaining(running)   # not ended: never touched
    record = json.loads((old / "retention.json").read_text())
    assert record["checkpoints"]["kind"] == "checkpoints" and record["aligned_ids.json"]["kind"] == "aligned_ids"
    assert sweep(jobs, config) == []   # idempotent


def test_a_job_in_use_is_skipped(tmp_path):
    jobs = tmp_path / "jobs"
    make_job(jobs, "open", 10)
    assert sweep(jobs, RetentionConfig(days={"checkpoints": 0}), skip=lambda job_id: job_id == "open") == []


def test_lineage_tells_a_retention_deletion_from_a_missing_file(tmp_path):
    jobs = tmp_path / "jobs"
    job = make_job(jobs, "j", 10)
    write_lineage(job, {"job_id": "j"}, None, None)
    sweep(jobs, RetentionConfig(days={"checkpoints": 0}))
    assert verify_lineage(job, None)["deleted_by_retention"] == ["checkpoints/epoch-0001.pt"]
    (job / "model" / "party.pt").unlink()                        # gone without the policy: an error
    with pytest.raises(LineageError, match="artifact model/party.pt is missing"):
        verify_lineage(job, None)


def test_config_refuses_unknown_kinds_and_negative_days(tmp_path):
    base = {"party": "a", "role": "active", "insecure": True}
    assert parse_node_config({**base, "retention": {"checkpoints": 7}}, tmp_path).retention.days == {"checkpoints": 7}
    for bad, key in [({"checkpoint": 7}, "retention.checkpoint"), ({"results": -1}, "retention.results")]:
        with pytest.raises(ConfigError, match=key.replace(".", r"\.")):
            parse_node_config({**base, "retention": bad}, tmp_path)


def test_vfl_gc_deletes_and_writes_the_audit_log(tmp_path):
    jobs = tmp_path / "jobs"
    make_job(jobs, "old", 10)
    (tmp_path / "node.yaml").write_text(json.dumps({"party": "a", "role": "passive", "insecure": True,
                                                    "retention": {"checkpoints": 1, "model_parts": 30}}))
    run = lambda *a: subprocess.run([sys.executable, "-m", "vfl.cli.main", "gc", "--config",
                                     str(tmp_path / "node.yaml"), "--json", *a], capture_output=True, text=True,
                                    timeout=120, env={**os.environ, "PYTHONPATH": str(REPO)})
    dry = run("--dry-run")
    assert dry.returncode == 0 and json.loads(dry.stdout)["deletions"][0]["kind"] == "checkpoints"
    assert (jobs / "old" / "checkpoints").exists()
    done = run()
    assert done.returncode == 0 and not (jobs / "old" / "checkpoints").exists()
    assert (jobs / "old" / "model" / "party.pt").exists()
    log = tmp_path / "audit" / "audit.jsonl"
    assert verify(log, load_key(tmp_path / "audit" / "audit.key")).entries == 1
    entry = json.loads(log.read_text())
    assert (entry["action"], entry["details"]["kind"], entry["details"]["job_id"]) == ("deleted", "checkpoints", "old")


def test_the_node_sweeps_at_start_skips_its_open_jobs_and_audits_each_deletion(tmp_path):
    import threading
    from types import SimpleNamespace

    from vfl.node.housekeeping import RetentionSweeper
    jobs = tmp_path / "jobs"
    make_job(jobs, "done", 3)
    make_job(jobs, "resumed-here", 3)     # ended once, but open again at this node: left alone
    config = parse_node_config({"party": "a", "role": "passive", "insecure": True, "jobs_dir": str(jobs),
                                "retention": {"checkpoints": 1}}, tmp_path)
    audit = SimpleNamespace(records=[], record=lambda *a, **k: audit.records.append((a, k)))
    registry = SimpleNamespace(_lock=threading.Lock(), active_events={}, passive_jobs={"resumed-here": object()})
    node = SimpleNamespace(config=config, jobs=registry, audit=audit)
    sweeper = RetentionSweeper(node)
    sweeper.start()
    sweeper.stop()
    assert not (jobs / "done" / "checkpoints").exists() and (jobs / "resumed-here" / "checkpoints").exists()
    [(args, details)] = audit.records
    assert args == ("retention", "deleted") and details["job_id"] == "done" and details["kind"] == "checkpoints"
