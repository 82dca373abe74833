"""Every file a job writes goes through the one atomic writer, and a write that fails says who, what and why
(issue 15, "Atomic, checked writes").

Before: result.json was atomic, but the privacy reports, the PSI alignment, the PSI claim, the predictions and the
recorded gradients were written in place (a full disk left 0-byte privacy reports), a full disk under torch.save
read "basic_ios::clear: iostream error", and a passive's storage failure reached the active party as an error id.
"""
from __future__ import annotations

import dataclasses
import errno
import json
import os
import sys
import threading
import time
from pathlib import Path

import pytest
import torch

from tests.disks import small_disk
from tests.job.conftest import job_spec
from tests.job.local import LocalNode, run_local_job
from vfl.data.atomic import atomic_create, atomic_write_bytes, remove_stray_temps
from vfl.errors import PeerCallError, StorageError
from vfl.job import checkpoint
from vfl.job.registry import JobRegistry
from vfl.protocol.messages import CloseJobRequest, SetupRequest

_WRITES: list[str] = []
_WATCHING = threading.Event()


def _audit(event: str, args) -> None:
    if event != "open" or not _WATCHING.is_set():
        return
    path, mode, flags = (list(args) + [None, None, None])[:3]
    writes = (isinstance(mode, str) and any(c in mode for c in "wax+")) or \
        (isinstance(flags, int) and flags & (os.O_WRONLY | os.O_RDWR | os.O_CREAT))
    if writes and isinstance(path, (str, bytes, os.PathLike)):
        _WRITES.append(os.fsdecode(path))


sys.addaudithook(_audit)  # audit hooks cannot be removed; it only records while _WATCHING is set


def test_every_file_a_job_writes_goes_through_the_atomic_writer(configs):
    """Each file a job opens for writing, at either party, is the writer's temp file: a final path is only ever
    renamed into place. Before the fix, the privacy reports, the alignment, the PSI claim and the predictions were
    opened for writing in place, and this test listed them."""
    roots = [str(configs[p].jobs_dir) for p in configs]
    _WRITES.clear()
    _WATCHING.set()
    try:
        run_local_job(job_spec("atomic-train", train__epochs=1, privacy={"record_gradients": True}), configs)
        run_local_job(job_spec("atomic-predict", kind="predict", model_job="atomic-train"), configs)
        run_local_job(job_spec("atomic-psi", kind="psi"), configs)
    finally:
        _WATCHING.clear()
    written = [p for p in _WRITES if any(p.startswith(root) for root in roots)]
    # the one exception, by design: the wire ledger's append-only journal (vfl/job/ledger.py), one whole line per
    # os.write, so that a resumed job's privacy report counts what crossed before the resume
    in_place = sorted({p for p in written if not (Path(p).name.startswith(".") and p.endswith(".tmp"))
                       and Path(p).name != "wire-ledger.jsonl"})
    assert written and not in_place, in_place
    for party in configs:  # and the temps are gone
        assert not list(configs[party].jobs_dir.rglob("*.tmp"))
    kinds = {Path(p).name.split(".")[1] for p in written}
    assert {"privacy_report", "aligned_ids", "aligned_rows", "psi-session", "predictions", "party",
            "result", "recorded_gradients", "status"} <= kinds, kinds


def test_a_failed_write_leaves_the_old_file_and_no_temp(tmp_path):
    target = tmp_path / "report.json"
    target.write_text("old")

    def fail(tmp: str) -> None:
        Path(tmp).write_text("half")
        raise OSError(errno.EIO, "Input/output error")
    from vfl.data.atomic import atomic_write
    with pytest.raises(StorageError, match=r"party 'bank-b' cannot write its privacy report: Input/output error"):
        atomic_write(target, fail, "privacy report", "bank-b")
    assert target.read_text() == "old" and sorted(p.name for p in tmp_path.iterdir()) == ["report.json"]


def test_a_full_disk_is_named_with_the_party_the_kind_and_the_cause(tmp_path):
    """ENOSPC is RESOURCE_EXHAUSTED and names no path; torch on a full disk too (it said 'basic_ios::clear')."""
    with small_disk(tmp_path / "disk", size_kib=256) as disk:
        with pytest.raises(StorageError) as info:
            atomic_write_bytes(disk.path / "job" / "big.bin", b"x" * 1_000_000, "model part", "bank-b")
        assert str(info.value) == "party 'bank-b' cannot write its model part: No space left on device"
        assert info.value.status == "RESOURCE_EXHAUSTED" and str(disk.path) not in str(info.value)
        with pytest.raises(StorageError, match="cannot write its checkpoint: No space left on device"):
            checkpoint.save_checkpoint(disk.path / "job", 1, {"w": torch.zeros(200_000)}, "bank-b")
        assert not [p for p in disk.path.rglob("*") if p.is_file()]  # no partial file, no temp
        atomic_write_bytes(disk.path / "job" / "small.bin", b"fits", "result", "bank-b")
        disk.read_only()
        with pytest.raises(StorageError) as info:
            atomic_write_bytes(disk.path / "job" / "small.bin", b"new", "job result", "bank-a")
        assert str(info.value) == "party 'bank-a' cannot write its job result: Read-only file system"
        assert info.value.status == "FAILED_PRECONDITION"
        assert (disk.path / "job" / "small.bin").read_bytes() == b"fits"
        with pytest.raises(StorageError, match="cannot write its PSI session claim: Read-only file system"):
            atomic_create(disk.path / "job" / "claim.json", b"{}", "PSI session claim", "bank-b")


def test_stray_temps_are_removed_and_nothing_else(tmp_path):
    (tmp_path / "job-1" / "checkpoints").mkdir(parents=True)
    stray = [tmp_path / "job-1" / ".result.json.abc123.tmp", tmp_path / "job-1" / "checkpoints" / ".epoch-0001.pt.x.tmp"]
    keep = [tmp_path / "job-1" / "result.json", tmp_path / "job-1" / "notes.tmp", tmp_path / "job-1" / ".hidden"]
    for path in stray + keep:
        path.write_text("x")
    assert sorted(remove_stray_temps(tmp_path)) == sorted(stray)
    assert all(p.exists() for p in keep) and not any(p.exists() for p in stray)


def test_a_node_removes_stray_temps_when_it_starts(tmp_path):
    from vfl.api import free_port
    from vfl.node.config import parse_node_config
    from vfl.node.server import Node
    config = parse_node_config({"party": "a", "role": "passive", "insecure": True,
                                "listen": f"127.0.0.1:{free_port()}"}, tmp_path)
    stray = config.jobs_dir / "job-9" / "model" / ".party.pt.k2j3.tmp"
    stray.parent.mkdir(parents=True)
    stray.write_bytes(b"half a model")
    node = Node(config)
    node.start()
    try:
        assert not stray.exists() and stray.parent.exists()
    finally:
        node.stop(0)


def _fill_host_disk_at_setup(disk):
    def tamper(peer, message):
        if isinstance(message, SetupRequest) and peer == "host":
            disk.fill()
        return message
    return tamper


def test_a_full_passive_disk_fails_the_job_at_once_naming_party_kind_and_cause(configs, tmp_path):
    """The host's disk fills after PSI: its first checkpoint fails, and the active party hears which party, which
    file and why, at once. Before: torch's 'basic_ios::clear' became an INTERNAL error id."""
    with small_disk(tmp_path / "host-disk", size_kib=4096) as disk:
        host = dataclasses.replace(configs["host"], jobs_dir=disk.path)
        t0 = time.monotonic()
        with pytest.raises(PeerCallError) as info:
            run_local_job(job_spec("full-host"), {**configs, "host": host}, tamper=_fill_host_disk_at_setup(disk))
        assert time.monotonic() - t0 < 30
        assert info.value.code == "RESOURCE_EXHAUSTED"
        assert "party 'host' cannot write its checkpoint: No space left on device" in str(info.value)
        assert str(disk.path) not in str(info.value)
        job_dir = disk.path / "full-host"
        assert not list(job_dir.rglob("*.tmp")) and not checkpoint.model_part_path(job_dir).exists()


def test_a_read_only_passive_disk_at_psi_fails_at_once(configs, tmp_path):
    """The host's disk turns read-only after it opened the job: the PSI claim cannot be written, and the active
    party hears it at once (before: set-up waited 60 s and said 'run PSI first')."""
    from vfl.protocol.messages import OpenJobReply
    with small_disk(tmp_path / "host-disk") as disk:
        host = dataclasses.replace(configs["host"], jobs_dir=disk.path)

        def tamper(peer, message):
            if isinstance(message, OpenJobReply):
                disk.read_only()
            return message
        t0 = time.monotonic()
        with pytest.raises(StorageError, match=r"party 'host' cannot write its PSI session claim: Read-only file "
                                               r"system"):
            run_local_job(job_spec("ro-host"), {**configs, "host": host}, tamper=tamper)
        assert time.monotonic() - t0 < 30


def test_a_passive_never_keeps_a_model_of_a_job_the_active_failed_to_save(configs):
    """The active party cannot write its result after every party prepared: no party shows a model or
    'succeeded'. Before (one-phase close), the passive had saved its model part and closed the job as succeeded."""
    job_dir = configs["guest"].job_dir("unsaved")
    (job_dir / "result.json").mkdir(parents=True)  # a directory where the result goes: its rename fails
    with pytest.raises(StorageError, match="party 'guest' cannot write its job result"):
        run_local_job(job_spec("unsaved", train__epochs=1), configs)
    host_dir = configs["host"].job_dir("unsaved")
    for party_dir in (job_dir, host_dir):
        assert not checkpoint.model_part_path(party_dir).exists(), party_dir
        assert not (party_dir / checkpoint.STAGED).exists()
        assert json.loads((party_dir / "status.json").read_text())["state"] == "failed"
    assert "cannot write its job result" in json.loads((job_dir / "status.json").read_text())["reason"]
    # the host hears the stage and a category, not the active party's own error text (its paths, its data)
    host_reason = json.loads((host_dir / "status.json").read_text())["reason"]
    assert host_reason == "failed at the active party's stage close: an error at the active party (StorageError)"


def test_a_commit_reaches_a_passive_that_lost_the_job_from_memory(configs):
    """The host restarts between prepare and commit (its memory of the job is gone): the commit is repeated until it
    answers, and it commits from its disk."""
    from vfl.errors import VflError

    class Unavailable(VflError):
        status = "UNAVAILABLE"
    host = JobRegistry(LocalNode(configs["host"]))
    dropped = []

    def tamper(peer, message):
        if isinstance(message, CloseJobRequest) and message.phase == "commit" and not dropped:
            dropped.append(message)
            host.passive_jobs.clear()  # the restart
            raise Unavailable("host is restarting")
        return message
    result = run_local_job(job_spec("commit-late", train__epochs=1), configs, tamper=tamper,
                           registries={"host": host})
    assert dropped
    host_dir = configs["host"].job_dir("commit-late")
    assert (configs["host"].jobs_dir / result["model_parts"]["host"]).exists()
    assert json.loads((host_dir / "status.json").read_text())["state"] == "succeeded"
    assert not (host_dir / checkpoint.STAGED).exists()
