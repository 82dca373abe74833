"""Encryption at rest at real nodes (issue 13, part 4): after a training job (with checkpoints and recorded
gradients), a prediction and a PSI job, a scan of every file under both parties' jobs/ finds no plaintext ID, no
plaintext weight and no plaintext numpy or torch file; the same scan over the decrypted files finds all three (the
planted control). A lost key stops the node from starting with a clear error, a wrong key fails the next job with
one, the right key restores it; `vfl at-rest rotate` re-encrypts under a new key, after which lineage still
verifies, retention still deletes, and the node runs jobs with the new key alone."""
from __future__ import annotations

import io
import json
import os
import re
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import yaml

from tests.node.conftest import breast_parties
from vfl.data import sealed

REPO = Path(__file__).resolve().parents[2]
PREFIX = "atrest-id-"
JOB = {"model": {"bottom": {"hidden": [8], "out": 4}, "interactive": {"out": 4}, "top": {"hidden": [4]}},
       "train": {"epochs": 2, "batch_size": 128}, "crypto": {"mode": "plaintext"},
       "privacy": {"defense": "none", "record_gradients": True}}
#: what a plaintext numpy array, npz or torch file carries whatever its values
MARKERS = {b"\x93NUMPY": "numpy array", b"PK\x03\x04": "zip (npz or torch)", b"data.pkl": "torch pickle"}


def vfl(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "vfl.cli.main", *args], capture_output=True, text=True, timeout=180,
                          env={**os.environ, "PYTHONPATH": str(REPO)})


def weight_windows(part: dict) -> list[bytes]:
    """16-byte runs from the middle of every weight and standardizer array of a model part."""
    arrays = []
    for key in ("model", "bottom"):
        for tensor in (part.get(key) or {}).values():
            arrays.append(tensor.detach().cpu().numpy().astype(np.float32).ravel())
    if part.get("standardizer") is not None:
        arrays += [np.asarray(part["standardizer"].mean, np.float64), np.asarray(part["standardizer"].scale)]
    windows = []
    for a in arrays:
        raw = np.ascontiguousarray(a).tobytes()
        if len(raw) >= 32 and np.count_nonzero(a) > len(a) // 2:
            middle = len(raw) // 2 - len(raw) // 2 % a.itemsize
            windows.append(raw[middle:middle + 16])
    assert windows
    return windows


def scan(root: Path, windows: list[bytes]) -> set[tuple[str, str]]:
    """(file relative to root, what) for every plaintext ID, weight run or numpy/torch structure found."""
    found = set()
    for path in sorted(p for p in root.rglob("*") if p.is_file()):
        data, rel = path.read_bytes(), path.relative_to(root).as_posix()
        if PREFIX.encode() in data:
            found.add((rel, "ID"))
        if any(w in data for w in windows):
            found.add((rel, "weights"))
        for marker, what in MARKERS.items():
            if marker in data:
                found.add((rel, what))
    return found


def test_jobs_dirs_hold_no_plaintext_weights_or_ids_and_a_lost_wrong_or_rotated_key_is_handled(tmp_path):
    from vfl.api import Federation, JobError, read_job_file
    from vfl.job.checkpoint import load_torch
    from vfl.errors import VflError
    parties = breast_parties(id_prefix=PREFIX)
    new_data = {p.name: p.data for p in parties}
    with Federation(parties, workdir=tmp_path / "fed") as fed:
        model = fed.fit(job_id="sealed-train", progress=False, **JOB)
        predicted = model.predict(new_data, job_id="sealed-predict")   # read back through the at-rest key
        assert len(predicted) == model.metrics["intersection"] and predicted["id"].str.startswith(PREFIX).all()
        psi = fed.psi(job_id="sealed-psi", progress=False)
        homes = {name: tmp_path / "fed" / name for name in ("guest", "host")}
        keys = {name: sealed.load_key_file(home / "keys" / "at-rest.key", "key") for name, home in homes.items()}
        windows = []
        for name, home in homes.items():
            part_path = home / "jobs" / "sealed-train" / "model" / "party.pt"
            windows += weight_windows(load_torch(part_path))

        # 1. nothing under jobs/ is plaintext weights or IDs; every file but the metadata is sealed, by its node
        for name, home in homes.items():
            assert scan(home / "jobs", windows) == set(), name
            for path in (p for p in (home / "jobs").rglob("*") if p.is_file()):
                if not sealed.plain_name(path):
                    head = path.read_bytes()
                    assert sealed.is_sealed(head), path
                    assert sealed.parse_header(head, path.name)[0] == sealed.key_id(keys[name]), path
        # the planted control: the same scan over the decrypted files finds what the files hold
        control = tmp_path / "decrypted"
        for name, home in homes.items():
            for path in (p for p in (home / "jobs").rglob("*") if p.is_file()):
                target = control / name / path.relative_to(home / "jobs")
                target.parent.mkdir(parents=True, exist_ok=True)
                target.write_bytes(sealed.read_bytes(path))
        found = scan(control, windows)
        assert {("guest/sealed-predict/predictions.csv", "ID"), ("host/sealed-train/aligned_ids.json", "ID"),
                ("guest/sealed-psi/aligned_ids.json", "ID"), ("host/sealed-train/aligned_rows.npy", "numpy array"),
                ("guest/sealed-train/model/party.pt", "weights"), ("host/sealed-train/model/party.pt", "weights"),
                ("host/sealed-train/checkpoints/epoch-0002.pt", "weights"),
                ("host/sealed-train/recorded_gradients.npz", "zip (npz or torch)")} <= found, sorted(found)
        assert json.loads(sealed.read_text(Path(psi["aligned_ids"])))[0].startswith(PREFIX)

        # 2. a lost key: the node does not start, and says why
        host = homes["host"]
        key_file = host / "keys" / "at-rest.key"
        fed.kill("host")
        right = key_file.read_text()
        key_file.unlink()
        with pytest.raises(VflError, match="exited"):
            fed.start_node("host")
        assert "does not exist, but jobs_dir holds files sealed under key " \
               f"{sealed.key_id(keys['host'])}" in (tmp_path / "fed" / "host.log").read_text()
        # 3. a wrong key: the node starts (it cannot tell), the next job that needs an old file fails clearly
        sealed.new_key_file(key_file)
        fed.start_node("host")
        with pytest.raises(JobError) as wrong:
            model.predict(new_data, job_id="wrong-key")
        assert re.search(f"sealed-train/model/[a-z.]+ is encrypted at rest under key {sealed.key_id(keys['host'])}, "
                         "which this node does not have", str(wrong.value)), wrong.value
        # the right key back: it works again
        fed.kill("host")
        key_file.unlink()
        key_file.write_text(right)
        fed.start_node("host")
        assert len(model.predict(new_data, job_id="right-key")) == len(predicted)

        # 4. rotation: a new key, the old one as previous; `vfl at-rest rotate` with the node stopped
        fed.kill("host")
        new_key = host / "keys" / "next.key"
        made = vfl("at-rest", "new-key", str(new_key), "--json")
        assert made.returncode == 0, made.stderr
        new_id = json.loads(made.stdout)["key_id"]
        config = yaml.safe_load(fed.configs["host"].read_text())
        config["at_rest"] = {"key": str(new_key), "previous_keys": [str(key_file)]}
        fed.configs["host"].write_text(yaml.safe_dump(config, sort_keys=False))
        rotated = vfl("at-rest", "rotate", "--config", str(fed.configs["host"]), "--json")
        assert rotated.returncode == 0, rotated.stderr
        report = json.loads(rotated.stdout)
        assert report["key_id"] == new_id and "sealed-train/model/party.pt" in report["resealed"], report
        assert report["unknown"] == [] and report["sealed"] == []
        for path in (p for p in (host / "jobs").rglob("*") if p.is_file() and not sealed.plain_name(p)):
            assert sealed.parse_header(path.read_bytes(), path.name)[0] == new_id, path
        verified = vfl("lineage", "verify", "sealed-train", "--config", str(fed.configs["host"]), "--json")
        assert verified.returncode == 0, verified.stderr
        assert "model/party.pt" in json.loads(verified.stdout)["encrypted_at_rest"]
        # retention still deletes sealed files, and lineage tells them from missing ones
        config["retention"] = {"checkpoints": 0}
        config["at_rest"] = {"key": str(new_key)}                  # the old key dropped
        fed.configs["host"].write_text(yaml.safe_dump(config, sort_keys=False))
        gc = vfl("gc", "--config", str(fed.configs["host"]), "--json")
        assert gc.returncode == 0 and not (host / "jobs" / "sealed-train" / "checkpoints").exists(), gc.stderr
        verified = vfl("lineage", "verify", "sealed-train", "--config", str(fed.configs["host"]), "--json")
        assert verified.returncode == 0, verified.stderr
        assert json.loads(verified.stdout)["deleted_by_retention"]
        shown = vfl("at-rest", "cat", str(host / "jobs" / "sealed-train" / "aligned_ids.json"),
                    "--config", str(fed.configs["host"]))
        assert shown.returncode == 0 and json.loads(shown.stdout)[0].startswith(PREFIX), shown.stderr
        fed.start_node("host")                                     # the new key alone opens everything
        assert len(model.predict(new_data, job_id="after-rotation")) == len(predicted)
        rows = read_job_file(host / "jobs" / "sealed-train" / "aligned_rows.npy", fed.configs["host"])
    assert len(np.load(io.BytesIO(rows))) == model.metrics["intersection"]
