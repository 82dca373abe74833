"""Encryption at rest (issue 13, part 4), in one process: the sealed format, the atomic writer sealing under a
protected jobs_dir, key files, a lost or wrong key, a changed byte, rotation, and lineage across a rotation.
tests/governance/test_at_rest_node.py runs real nodes and scans their jobs_dir."""
from __future__ import annotations

import json
import os
import stat
from pathlib import Path

import pytest
import yaml

from vfl.data import sealed
from vfl.data.atomic import atomic_create, atomic_write, atomic_write_bytes, atomic_write_text
from vfl.errors import ConfigError, SealedFileChanged, SealedFileError, StorageError


@pytest.fixture
def keys():
    return sealed.AtRestKeys(os.urandom(32))


@pytest.fixture
def jobs(tmp_path, keys):
    root = tmp_path / "jobs"
    root.mkdir()
    sealed.protect(root, keys)
    yield root
    sealed.unprotect(root)


# ------------------------------------------------------------------------------------------ the format

@pytest.mark.parametrize("size", [0, 1, 1000, 3 * 64 + 5, 4 * 64])
def test_seal_and_open_round_trip_across_segments(monkeypatch, keys, size):
    monkeypatch.setattr(sealed, "SEGMENT", 64)   # several segments, and a last one of any length
    plaintext = os.urandom(size)
    data = keys.seal(plaintext)
    assert sealed.is_sealed(data) and (size < 16 or plaintext[:16] not in data)
    assert sealed.parse_header(data, "f")[0] == keys.current_id
    assert keys.open(data, "f") == plaintext
    assert keys.seal(plaintext) != data      # a fresh nonce prefix every time


def test_a_changed_byte_a_cut_file_and_a_wrong_key_are_clear_errors(monkeypatch, keys):
    monkeypatch.setattr(sealed, "SEGMENT", 64)
    data = keys.seal(b"w" * 200)             # 4 segments
    for where in (sealed.HEADER.size - 1, sealed.HEADER.size + 5, len(data) - 1):
        changed = bytearray(data)
        changed[where] ^= 1
        with pytest.raises(SealedFileChanged, match="does not authenticate under at-rest key .*changed or cut"):
            keys.open(bytes(changed), "job-1/model/party.pt")
    segment = 64 + sealed.TAG_BYTES
    with pytest.raises(SealedFileChanged):   # the last segment dropped: the one before is not flagged last
        keys.open(data[:sealed.HEADER.size + 3 * segment], "f")
    with pytest.raises(SealedFileChanged, match="cut short"):
        keys.open(data[:10], "f")
    other = sealed.AtRestKeys(os.urandom(32))
    with pytest.raises(SealedFileError, match=f"job-1/model/party.pt is encrypted at rest under key "
                                              f"{keys.current_id}, which this node does not have .*has "
                                              f"{other.current_id}"):
        other.open(data, "job-1/model/party.pt")
    # a rotation in progress opens both
    both = sealed.AtRestKeys(other.current, (keys.current,))
    assert both.open(data, "f") == b"w" * 200


def test_the_key_id_names_the_key_without_revealing_it(keys):
    kid = keys.current_id
    assert len(kid) == 16 and kid == sealed.key_id(keys.current)
    assert kid not in keys.current.hex() and sealed.key_id(os.urandom(32)) != kid


# ------------------------------------------------------------------------------------------ the writer

def test_the_atomic_writer_seals_under_a_protected_jobs_dir_except_metadata(jobs, keys, tmp_path):
    job = jobs / "job-1"
    weights = b"\x00\x01weights" * 50
    atomic_write_bytes(job / "model" / "party.pt", weights, "model part")
    atomic_write_text(job / "aligned_ids.json", json.dumps(["id-0001", "id-0002"]), "PSI alignment")
    atomic_create(job / "staged" / "predictions.csv", b"id,score\nid-0001,0.3\n", "predictions")
    atomic_write_text(job / "status.json", '{"state": "running"}', "job status")
    atomic_write_text(job / "privacy_report.json", "{}", "privacy report")
    for name in ("model/party.pt", "aligned_ids.json", "staged/predictions.csv"):
        raw = (job / name).read_bytes()
        assert sealed.is_sealed(raw) and b"id-0001" not in raw and b"weights" not in raw, name
        assert sealed.parse_header(raw, name)[0] == keys.current_id
    assert sealed.read_bytes(job / "model" / "party.pt") == weights
    assert json.loads(sealed.read_text(job / "aligned_ids.json")) == ["id-0001", "id-0002"]
    assert (job / "status.json").read_text() == '{"state": "running"}'     # metadata stays readable
    assert sealed.read_text(job / "status.json") == '{"state": "running"}'  # and the reader passes it through
    outside = tmp_path / "elsewhere.bin"
    atomic_write_bytes(outside, weights)
    assert outside.read_bytes() == weights                                # outside jobs_dir: as written
    with pytest.raises(StorageError, match="job-1/model/export.bin is encrypted at rest"):
        atomic_write(job / "model" / "export.bin", lambda tmp: Path(tmp).write_bytes(weights), "export")


def test_encryption_off_keeps_sealed_files_readable_and_writes_new_ones_in_the_clear(tmp_path, keys):
    root = tmp_path / "jobs"
    sealed.protect(root, keys)
    atomic_write_bytes(root / "j" / "aligned_rows.npy", b"rows")
    sealed.protect(root, keys, seal=False)
    try:
        atomic_write_bytes(root / "j" / "aligned_ids.json", b"[]")
        assert (root / "j" / "aligned_ids.json").read_bytes() == b"[]"
        assert sealed.read_bytes(root / "j" / "aligned_rows.npy") == b"rows"
    finally:
        sealed.unprotect(root)


# ------------------------------------------------------------------------------------------ keys from the config

def _config(tmp_path: Path, **at_rest):
    from vfl.node.config import load_node_config
    path = tmp_path / "node.yaml"
    path.write_text(yaml.safe_dump({"party": "host", "role": "passive", "insecure": True, "jobs_dir": "jobs",
                                    **({"at_rest": at_rest} if at_rest else {})}))
    return load_node_config(path)


def test_key_files(tmp_path):
    path = tmp_path / "k" / "new.key"
    kid = sealed.new_key_file(path)
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert sealed.key_id(sealed.load_key_file(path, "at_rest.key")) == kid
    with pytest.raises(FileExistsError):
        sealed.new_key_file(path)                     # never over a key
    with pytest.raises(ConfigError, match="at_rest.key: the at-rest key file .*missing.key does not exist"):
        sealed.load_key_file(tmp_path / "missing.key", "at_rest.key")
    (tmp_path / "bad.key").write_text("abc\n")
    with pytest.raises(ConfigError, match="at_rest.previous_keys\\[0\\]: .*bad.key is not an at-rest key"):
        sealed.load_key_file(tmp_path / "bad.key", "at_rest.previous_keys[0]")


def test_the_node_makes_its_default_key_once_and_refuses_a_new_one_over_sealed_files(tmp_path):
    from vfl.node.at_rest import open_at_rest
    config = _config(tmp_path)
    assert config.at_rest.encrypt and config.at_rest.key == tmp_path / "keys" / "at-rest.key"
    try:
        assert open_at_rest(config) is None and not config.at_rest.key.exists()   # commands never make a key
        keys = open_at_rest(config, create=True)
        assert stat.S_IMODE(config.at_rest.key.stat().st_mode) == 0o600
        atomic_write_bytes(config.jobs_dir / "j" / "model" / "party.pt", b"weights")
        assert open_at_rest(config, create=True).current_id == keys.current_id    # the same key at the next start
        config.at_rest.key.unlink()                                               # lost
        with pytest.raises(ConfigError, match=f"at_rest.key: the key file .* does not exist, but jobs_dir holds "
                                              f"files sealed under key {keys.current_id} \\(e.g. j/model/party.pt\\)"):
            open_at_rest(config, create=True)
    finally:
        sealed.unprotect(config.jobs_dir)
    named = _config(tmp_path, key="secret/key")
    with pytest.raises(ConfigError, match="at_rest.key: the at-rest key file .*secret/key does not exist"):
        open_at_rest(named, create=True)            # a named key (a Secret) is never made up
    with pytest.raises(ConfigError, match="at_rest.frobnicate: unknown key"):
        _config(tmp_path, frobnicate=True)


def test_rotation_reseals_under_the_new_key_and_lineage_still_verifies(tmp_path):
    from vfl.governance.lineage import verify_lineage, write_lineage
    from vfl.node.at_rest import open_at_rest, reseal_jobs
    old, new = tmp_path / "old.key", tmp_path / "new.key"
    old_id, new_id = sealed.new_key_file(old), sealed.new_key_file(new)
    config = _config(tmp_path, key=str(old))
    try:
        open_at_rest(config)
        job = config.jobs_dir / "j"
        atomic_write_bytes(job / "model" / "party.pt", b"weights" * 10)
        atomic_write_text(job / "result.json", "{}")
        (job / "aligned_ids.json").write_text('["written before encryption"]')   # a file from before
        write_lineage(job, {"job_id": "j"}, None, None)
        record = json.loads((job / "lineage.json").read_text())["record"]
        assert record["encrypted_at_rest"] == ["model/party.pt"]

        rotated = _config(tmp_path, key=str(new), previous_keys=[str(old)])
        keys = open_at_rest(rotated)
        dry = reseal_jobs(rotated, keys, dry_run=True)
        assert (dry.resealed, dry.sealed) == (["j/model/party.pt"], ["j/aligned_ids.json"])
        assert sealed.parse_header((job / "model" / "party.pt").read_bytes(), "f")[0] == old_id   # untouched
        report = reseal_jobs(rotated, keys)
        assert (report.resealed, report.sealed, report.unknown) == (["j/model/party.pt"], ["j/aligned_ids.json"], [])
        for name in ("model/party.pt", "aligned_ids.json"):
            assert sealed.parse_header((job / name).read_bytes(), name)[0] == new_id
        verify_lineage(job, None)                     # content hashes: a rotation changes none

        only_new = _config(tmp_path, key=str(new))    # the old key dropped: everything still opens
        open_at_rest(only_new)
        assert sealed.read_bytes(job / "model" / "party.pt") == b"weights" * 10
        verify_lineage(job, None)
        other = tmp_path / "other.key"
        sealed.new_key_file(other)
        keys = open_at_rest(_config(tmp_path, key=str(other)))
        assert reseal_jobs(_config(tmp_path, key=str(other)), keys).unknown == ["j/aligned_ids.json",
                                                                                "j/model/party.pt"]
    finally:
        sealed.unprotect(config.jobs_dir)


def test_lineage_names_a_changed_sealed_artifact_and_one_now_stored_in_the_clear(jobs, keys):
    from vfl.governance.lineage import LineageError, verify_lineage, write_lineage
    job = jobs / "j"
    atomic_write_bytes(job / "model" / "party.pt", b"weights" * 10)
    write_lineage(job, {"job_id": "j"}, None, None)
    part = job / "model" / "party.pt"
    good = part.read_bytes()
    changed = bytearray(good)
    changed[-3] ^= 1
    part.write_bytes(bytes(changed))
    with pytest.raises(LineageError, match="artifact model/party.pt changed since the job wrote its lineage: "
                                           "j/model/party.pt does not authenticate"):
        verify_lineage(job, None)
    part.write_bytes(b"weights" * 10)   # decrypted in place: same content, no longer encrypted
    with pytest.raises(LineageError, match="artifact model/party.pt was encrypted at rest .* now stored in the clear"):
        verify_lineage(job, None)
    part.write_bytes(good)
    verify_lineage(job, None)
