"""Encryption at rest of what a job writes as streams (issues 12 and 13 together): the job's copy of its table
(`table/`), the aligned columns (`aligned/`), `aligned_rows.npy`, `aligned_ids.json` and the streamed
`predictions.csv` are sealed under the node's at-rest key as they are written, so no ID or feature value is on disk
in the clear while a job runs, nor after a crash; a reader detects a changed or cut file; a rotation re-seals them;
a restarted node (a new process, the same key) resumes a job from them.

Before this, the scale2 merge wrote all of them in the clear under a protected jobs_dir: the scans below found the
IDs in table/ids and aligned/ids, feature rows in table/features and aligned/features, and the IDs in the
prediction's temp file. Each scan has its planted control: the same run with encryption off finds them."""
from __future__ import annotations

import io
import os
import shutil
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from tests.job.conftest import job_spec, local_configs
from tests.job.local import LocalNetwork, LocalNode, run_local_job
from vfl.data import sealed
from vfl.data.atomic import atomic_write_stored
from vfl.data.rowfiles import ArrayFile, ArrayWriter, NpyFile, TextFile, TextWriter, _Writer
from vfl.errors import SealedFileChanged, SealedFileError
from vfl.job.registry import JobRegistry
from vfl.protocol.messages import ForwardRequest

FAST = {"crypto": {"mode": "plaintext"}, "privacy": {"defense": "none"}, "train__epochs": 1}


@pytest.fixture
def keys():
    return sealed.AtRestKeys(os.urandom(32))


@pytest.fixture
def configs(tmp_path):
    return local_configs(tmp_path)


@pytest.fixture
def root(tmp_path, keys):
    root = tmp_path / "jobs"
    root.mkdir()
    sealed.protect(root, keys)
    yield root
    sealed.unprotect(root)


# ------------------------------------------------------------------------------------------ the files themselves

def _columns(directory: Path, ids: list[str], x: np.ndarray) -> None:
    text = TextWriter(directory / "ids")
    text.append(ids[:1000])
    text.append(ids[1000:])
    text.close()
    features = ArrayWriter(directory / "features", np.float64, x.shape[1])
    for start in range(0, len(x), 777):
        features.append(x[start:start + 777])
    features.close()


def test_row_files_are_sealed_as_written_and_read_back_by_row(root, keys):
    ids = [f"secret-{i:05d}" for i in range(3000)]
    x = np.random.default_rng(1).normal(size=(3000, 9))
    _columns(root / "j" / "table", ids, x)
    for name in ("ids", "ids.offsets", "features"):
        raw = (root / "j" / "table" / name).read_bytes()
        assert sealed.is_sealed(raw) and sealed.parse_header(raw, name)[0] == keys.current_id, name
        assert sealed.parse_header(raw, name)[2] == sealed.STREAM_SEGMENT
    raw = (root / "j" / "table" / "ids").read_bytes() + (root / "j" / "table" / "features").read_bytes()
    assert b"secret-0" not in raw and x[1234].tobytes()[:16] not in raw
    features, text = ArrayFile(root / "j" / "table" / "features"), TextFile(root / "j" / "table" / "ids")
    assert np.array_equal(features.take([2999, 5, 5, 1500]), x[[2999, 5, 5, 1500]])
    assert np.array_equal(np.concatenate([c for _, c in features.chunks(500)]), x)
    assert list(text) == ids and text.gather([2999, 0, 77]) == [ids[2999], ids[0], ids[77]]
    # the whole-file opener and `vfl at-rest cat` read them as any sealed file
    assert sealed.read_bytes(root / "j" / "table" / "features")[-8:] == x[-1, -1:].tobytes()
    assert b"".join(sealed.iter_plaintext(root / "j" / "table" / "ids")).decode() == "".join(ids)


@pytest.mark.parametrize("sizes", [[0], [64], [64, 0, 64], [1] * 130, [63, 1, 64, 65, 200, 0, 7], [128, 128, 1]])
def test_a_stream_sealed_in_any_pieces_is_the_sealed_format_and_reads_by_range(monkeypatch, root, keys, sizes):
    """Whatever the pieces (a piece ending on a segment boundary, empty pieces, an empty file), the stream is the
    format `AtRestKeys.open` reads, the last segment alone flagged last; and every byte range reads back."""
    from vfl.data.rowfiles import _Reader
    monkeypatch.setattr(sealed, "STREAM_SEGMENT", 64)
    plaintext = os.urandom(sum(sizes))
    path = root / "j" / "stream"
    out = _Writer(path, "test", None)
    at = 0
    for size in sizes:
        out.write(plaintext[at:at + size])
        at += size
    out.close()
    stored = path.read_bytes()
    assert keys.open(stored, "stream") == plaintext
    assert sealed.parse_header(stored, "stream")[2] == 64 and len(stored) == sealed.HEADER.size + len(plaintext) \
        + sealed.TAG_BYTES * max(1, -(-len(plaintext) // 64))
    reader = _Reader(path)   # the byte-range reader under the row files
    assert reader.size == len(plaintext)
    rng = np.random.default_rng(len(sizes))
    for _ in range(50):
        start = int(rng.integers(0, len(plaintext) + 1))
        length = int(rng.integers(0, len(plaintext) - start + 1))
        assert reader.read(start, length) == plaintext[start:start + length]
    reader.close()


def test_a_changed_or_cut_row_file_is_refused(root):
    x = np.arange(40000, dtype=np.float64).reshape(-1, 4)    # 320 KB: several segments
    _columns(root / "j", [str(i) for i in range(len(x))], x)
    path = root / "j" / "features"
    good = path.read_bytes()
    step = sealed.STREAM_SEGMENT + sealed.TAG_BYTES
    body = len(good) - sealed.HEADER.size
    whole_segments = sealed.HEADER.size + (body // step) * step if body % step else len(good) - step
    for cut in (len(good) - 1, whole_segments, sealed.HEADER.size + 3):
        path.write_bytes(good[:cut])
        with pytest.raises(SealedFileChanged):
            ArrayFile(path)
    changed = bytearray(good)
    changed[sealed.HEADER.size + step + 100] ^= 1       # in the second segment: found when it is read
    path.write_bytes(bytes(changed))
    features = ArrayFile(path)
    assert np.array_equal(features.read(0, 10), x[:10])
    with pytest.raises(SealedFileChanged, match="changed or cut"):
        features.read(0, len(x))
    path.write_bytes(good)
    assert np.array_equal(ArrayFile(path).read(0, len(x)), x)
    # another key cannot open it, and says which key it needs
    sealed.protect(root, sealed.AtRestKeys(os.urandom(32)))
    with pytest.raises(SealedFileError, match="which this node does not have"):
        ArrayFile(path)


def test_a_streamed_npy_is_read_through_its_opener(root):
    out = _Writer(root / "j" / "aligned_rows.npy", "PSI alignment", None)
    rows = np.random.default_rng(2).permutation(100_000).astype(np.int64)
    buffer = io.BytesIO()
    np.save(buffer, rows)
    out.write(buffer.getvalue())
    out.close()
    assert sealed.file_is_sealed(root / "j" / "aligned_rows.npy")
    with pytest.raises(ValueError):   # a sealed file cannot be memory-mapped: the opener reads it
        np.load(root / "j" / "aligned_rows.npy", mmap_mode="r")
    npy = NpyFile(root / "j" / "aligned_rows.npy")
    assert len(npy) == len(rows) and np.array_equal(np.concatenate([c for _, c in npy.chunks(9999)]), rows)
    assert np.array_equal(np.load(io.BytesIO(sealed.read_bytes(root / "j" / "aligned_rows.npy"))), rows)


def test_encryption_off_writes_row_files_in_the_clear_and_still_reads_sealed_ones(root, keys):
    x = np.ones((10, 3))
    _columns(root / "sealed", [str(i) for i in range(10)], x)
    sealed.protect(root, keys, seal=False)
    _columns(root / "plain", [f"clear-{i}" for i in range(10)], x)
    assert b"clear-3" in (root / "plain" / "ids").read_bytes()
    assert not sealed.file_is_sealed(root / "plain" / "features")
    assert np.array_equal(ArrayFile(root / "sealed" / "features").read(0, 10), x)
    assert np.array_equal(ArrayFile(root / "plain" / "features").read(0, 10), x)


def test_rotation_reseals_row_files_in_a_stream_keeping_their_segment_size(root, keys):
    x = np.random.default_rng(3).normal(size=(20000, 5))
    ids = [f"id-{i}" for i in range(len(x))]
    _columns(root / "j" / "aligned", ids, x)
    sealed.protect(root, keys, seal=False)
    _columns(root / "j" / "table", ids, x)                  # written while encryption was off
    new = sealed.AtRestKeys(os.urandom(32), (keys.current,))
    report = sealed.reseal_tree(root, new, lambda path, stored: atomic_write_stored(path, stored))
    assert sorted(report.resealed) == ["j/aligned/features", "j/aligned/ids", "j/aligned/ids.offsets"]
    assert sorted(report.sealed) == ["j/table/features", "j/table/ids", "j/table/ids.offsets"]
    sealed.protect(root, sealed.AtRestKeys(new.current))     # the old key gone
    for folder in ("aligned", "table"):
        raw = (root / "j" / folder / "features").read_bytes()
        assert sealed.parse_header(raw, "f")[0] == new.current_id
        assert sealed.parse_header(raw, "f")[2] == sealed.STREAM_SEGMENT
        assert np.array_equal(ArrayFile(root / "j" / folder / "features").read(0, len(x)), x)
        assert list(TextFile(root / "j" / folder / "ids")) == ids


# ------------------------------------------------------------------------------------------ a job's folders

def _protect(configs: dict, keys: dict) -> None:
    for name, config in configs.items():
        sealed.protect(config.jobs_dir, keys[name])


def _unprotect(configs: dict) -> None:
    for config in configs.values():
        sealed.unprotect(config.jobs_dir)


def _snapshot(configs: dict) -> dict[str, bytes]:
    """Every file under the parties' jobs dirs as it is on disk now: {party/relative path: bytes}."""
    files = {}
    for name, config in configs.items():
        for path in sorted(p for p in config.jobs_dir.rglob("*") if p.is_file()):
            files[f"{name}/{path.relative_to(config.jobs_dir).as_posix()}"] = path.read_bytes()
    return files


def _secrets(configs: dict) -> tuple[list[bytes], list[bytes]]:
    """The raw IDs of both tables, and 16-byte runs of their feature rows as float64 (as the table files hold them)."""
    ids, rows = [], []
    for config in configs.values():
        table = pd.read_csv(config.dataset("table").path)
        ids += [str(i).encode() for i in table["id"].iloc[::37]]
        x = table[[c for c in table.columns if c.startswith("f")]].to_numpy(np.float64)
        rows += [x[i].tobytes()[:16] for i in range(0, len(x), 41)]
    return ids, rows


def _found(files: dict[str, bytes], ids: list[bytes], rows: list[bytes]) -> set[tuple[str, str]]:
    found = set()
    for name, data in files.items():
        if any(i in data for i in ids):
            found.add((name, "ID"))
        if any(r in data for r in rows):
            found.add((name, "features"))
    return found


def _train_snapshot(configs: dict, job_id: str) -> dict[str, bytes]:
    """The files of both parties at the first training step of a job (PSI done, the aligned columns in use)."""
    taken = {}

    def tamper(peer, message):
        if not taken and isinstance(message, ForwardRequest) and message.phase == "train":
            taken.update(_snapshot(configs))
        return message
    result = run_local_job(job_spec(job_id, **FAST), configs, tamper=tamper)
    assert result["history"] and taken
    return taken


def test_a_running_job_keeps_its_table_and_alignment_sealed(configs):
    keys = {name: sealed.AtRestKeys(os.urandom(32)) for name in configs}
    ids, rows = _secrets(configs)
    _protect(configs, keys)
    try:
        files = _train_snapshot(configs, "sealed-run")
    finally:
        _unprotect(configs)
    for party in configs:
        for name in ("table/ids", "table/features", "aligned/ids", "aligned/written_ids", "aligned/features",
                     "aligned/rows", "aligned/meta.json", "table/meta.json", "aligned_rows.npy", "aligned_ids.json"):
            assert f"{party}/sealed-run/{name}" in files, (party, name, sorted(files))
    for name, data in files.items():
        if not sealed.plain_name(Path(name)):
            assert sealed.is_sealed(data), name
            assert sealed.parse_header(data, name)[0] == keys[name.split("/")[0]].current_id, name
    assert _found(files, ids, rows) == set()
    # the planted control: the same job with encryption off holds them in the clear, in these very files
    plain = _found(_train_snapshot(configs, "plain-run"), ids, rows)
    for party in configs:
        for name, what in (("table/ids", "ID"), ("aligned/ids", "ID"), ("aligned_ids.json", "ID"),
                           ("table/features", "features"), ("aligned/features", "features")):
            assert (f"{party}/plain-run/{name}", what) in plain, (party, name, sorted(plain))


def _predict_snapshot(configs: dict, job_id: str, model_job: str) -> dict[str, bytes]:
    """The active party's files when the 15th batch of a prediction is asked for: predictions.csv mostly written (what
    passed the file object's 8 KiB buffer is on disk)."""
    taken, seen = {}, []

    def tamper(peer, message):
        if isinstance(message, ForwardRequest) and message.phase == "predict":
            seen.append(message.step)
            if len(seen) == 15:
                taken.update(_snapshot({"guest": configs["guest"]}))
        return message
    result = run_local_job(job_spec(job_id, kind="predict", model_job=model_job, **FAST), configs, tamper=tamper)
    assert result["rows"] == 569 - 30 and taken
    return taken


def test_a_prediction_in_progress_streams_its_rows_sealed(configs, monkeypatch):
    import vfl.job.active as active
    monkeypatch.setattr(active, "EVAL_BATCH_ROWS", 32)          # 17 batches, each appended as it comes
    monkeypatch.setattr(sealed, "STREAM_SEGMENT", 1024)        # so that whole segments reach the disk mid-way
    keys = {name: sealed.AtRestKeys(os.urandom(32)) for name in configs}
    _protect(configs, keys)
    try:
        run_local_job(job_spec("model", **FAST), configs)
        files = _predict_snapshot(configs, "sealed-predict", "model")
        done = configs["guest"].job_dir("sealed-predict") / "predictions.csv"
        frame = pd.read_csv(io.BytesIO(sealed.read_bytes(done)))
        assert len(frame) == 569 - 30 and frame["id"].str.startswith("patient-").all()
    finally:
        _unprotect(configs)
    partial = {name: data for name, data in files.items() if "predictions.csv" in name}
    assert len(partial) == 1, sorted(files)
    (name, data), = partial.items()
    assert name.endswith(".tmp") and sealed.is_sealed(data), name
    assert len(data) > sealed.HEADER.size + 2 * (1024 + sealed.TAG_BYTES), len(data)   # rows already written
    assert b"patient-" not in data
    assert sealed.file_is_sealed(done) and b"patient-" not in done.read_bytes()
    # the planted control: with encryption off the same moment shows the rows written so far
    run_local_job(job_spec("plain-model", **FAST), configs)
    plain = _predict_snapshot(configs, "plain-predict", "plain-model")
    (name, data), = ((n, d) for n, d in plain.items() if "plain-predict/" in n and "predictions.csv" in n)
    assert name.endswith(".tmp") and b"patient-" in data


def test_a_restarted_node_resumes_a_job_from_its_sealed_alignment(configs):
    """A drain (SIGTERM) at the first training step, then a new registry with the same key files read again (the
    node restarted): the job resumes from its sealed table/ and aligned/ and ends; then both folders are gone."""
    from tests.job.test_resume_stages import _events_until
    keys = {name: sealed.AtRestKeys(os.urandom(32)) for name in configs}
    _protect(configs, keys)
    try:
        host = JobRegistry(LocalNode(configs["host"]))
        network = LocalNetwork("guest", {"host": host})
        guest = JobRegistry(LocalNode(configs["guest"], network))
        events = guest.start_active(job_spec("resumed", **{**FAST, "train__epochs": 2}))
        _events_until(events, lambda e: e.kind == "epoch")
        guest.drain(30)
        job_dir = configs["guest"].job_dir("resumed")
        for name in ("aligned/features", "aligned/ids", "table/features", "aligned_rows.npy"):
            assert sealed.file_is_sealed(job_dir / name), name
        _unprotect(configs)
        _protect(configs, {name: sealed.AtRestKeys(bytes(k.current)) for name, k in keys.items()})  # a new process
        restarted = JobRegistry(LocalNode(configs["guest"], network))
        assert restarted.recover() == ["resumed"]
        done = _events_until(restarted.active_events["resumed"], lambda e: e.done)[-1]
        assert done.kind == "result", done.message
        for config in configs.values():
            assert not (config.job_dir("resumed") / "aligned").exists()
            assert not (config.job_dir("resumed") / "table").exists()
    finally:
        _unprotect(configs)
        shutil.rmtree(configs["guest"].jobs_dir / "resumed", ignore_errors=True)


def test_at_rest_cat_streams_a_sealed_stream_to_a_file_and_to_stdout(tmp_path, capsysbinary):
    """`vfl at-rest cat` on a predictions.csv written as a stream (many segments): the plaintext, a segment at a
    time; a changed byte is an error and no --out file."""
    import argparse

    import yaml

    from vfl.cli.governance_cmd import cmd_at_rest_cat
    key = tmp_path / "at-rest.key"
    sealed.new_key_file(key)
    config = tmp_path / "node.yaml"
    config.write_text(yaml.safe_dump({"party": "host", "role": "passive", "insecure": True, "jobs_dir": "jobs",
                                      "at_rest": {"key": str(key)}}))
    path = tmp_path / "jobs" / "p" / "predictions.csv"
    sealed.protect(tmp_path / "jobs", sealed.AtRestKeys(sealed.load_key_file(key, "k")))
    try:
        text = "id,prediction\n" + "".join(f"patient-{i:06d},{i / 7:.6f}\n" for i in range(20000))
        out = _Writer(path, "predictions", None)
        out.write(text.encode())
        out.close()
        assert sealed.file_is_sealed(path) and b"patient-" not in path.read_bytes()
        assert cmd_at_rest_cat(argparse.Namespace(config=str(config), path=str(path), out=None)) == 0
        assert capsysbinary.readouterr().out == text.encode()
        copy = tmp_path / "copy.csv"
        assert cmd_at_rest_cat(argparse.Namespace(config=str(config), path=str(path), out=str(copy))) == 0
        assert copy.read_text() == text
        raw = bytearray(path.read_bytes())
        raw[len(raw) // 2] ^= 1
        path.write_bytes(bytes(raw))
        with pytest.raises(SealedFileChanged):
            cmd_at_rest_cat(argparse.Namespace(config=str(config), path=str(path), out=str(tmp_path / "bad.csv")))
        assert not (tmp_path / "bad.csv").exists() and not list(tmp_path.glob(".bad.csv*"))
    finally:
        sealed.unprotect(tmp_path / "jobs")
