"""The exported model-part format: a trained job's parts export, load without pickle with plain safetensors,
carry each party's own share of W only, and refuse a changed byte or an unknown version."""
from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

from tests.job.conftest import job_spec, local_configs
from tests.job.local import run_local_job
from vfl.job import checkpoint
from vfl.job.export import export_part
from vfl.models.format import METADATA, WEIGHTS, ModelFormatError, load_part, share_from_json

REPO = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    configs = local_configs(tmp_path_factory.mktemp("export"))
    run_local_job(job_spec("exp-1", train__epochs=1), configs)
    return configs


def test_both_parts_round_trip_exactly_without_pickle(trained, tmp_path):
    from safetensors.torch import load_file
    for party, prefix in (("guest", "model"), ("host", "bottom")):
        job_dir = trained[party].job_dir("exp-1")
        original = torch.load(checkpoint.model_part_path(job_dir), weights_only=False)
        out = export_part(job_dir, tmp_path / party)
        plain = load_file(str(out / WEIGHTS))                    # any safetensors reader, no vfl, no pickle
        tensors, meta = load_part(out)
        assert meta["role"] == ("active" if party == "guest" else "passive") and meta["job_id"] == "exp-1"
        for name, value in original[prefix].items():
            assert torch.equal(tensors[f"{prefix}.{name}"], value) and torch.equal(plain[f"{prefix}.{name}"], value)
        assert np.allclose(tensors["standardizer.mean"].numpy(), original["standardizer"].mean)
        assert meta["schema"] is not None and meta["layout"]
        assert meta["training_inputs"]["input"]["sha256"]   # from the job's signed lineage


def test_each_export_holds_its_own_share_of_w_and_never_w(trained, tmp_path):
    guest_dir, host_dir = (trained[p].job_dir("exp-1") for p in ("guest", "host"))
    _, guest = load_part(export_part(guest_dir, tmp_path / "g"))
    _, host = load_part(export_part(host_dir, tmp_path / "h"))
    u = torch.load(checkpoint.model_part_path(guest_dir), weights_only=False)["links"]["host"]["share"].weights
    v = torch.load(checkpoint.model_part_path(host_dir), weights_only=False)["share"].weights
    assert (share_from_json(guest["shares"]["host"]) == u).all() and (share_from_json(host["shares"]["guest"]) == v).all()
    everything = json.dumps(guest) + json.dumps(host)
    w = u + v                                           # what neither export may hold: the reconstructed weight
    assert not any(str(int(x)) in everything for x in w.ravel() if abs(int(x)) > 10**6)
    assert not any(name.startswith("plain_interactive") for name in load_part(tmp_path / "g")[0])


def test_a_changed_byte_or_an_unknown_version_is_refused(trained, tmp_path):
    out = export_part(trained["host"].job_dir("exp-1"), tmp_path / "h")
    data = bytearray((out / WEIGHTS).read_bytes())
    data[-3] ^= 1
    (out / WEIGHTS).write_bytes(bytes(data))
    with pytest.raises(ModelFormatError, match="changed since export"):
        load_part(out)
    out = export_part(trained["host"].job_dir("exp-1"), tmp_path / "h2")
    meta = json.loads((out / METADATA).read_text())
    (out / METADATA).write_text(json.dumps({**meta, "version": 99}))
    with pytest.raises(ModelFormatError, match="format version 99"):
        load_part(out)
    with pytest.raises(ModelFormatError, match="not an exported model part"):
        load_part(tmp_path)


def test_vfl_export_cli(trained, tmp_path):
    config = trained["guest"]
    node_yaml = tmp_path / "node.yaml"
    node_yaml.write_text(json.dumps({"party": "guest", "role": "active", "insecure": True,
                                     "jobs_dir": str(config.jobs_dir)}))
    run = subprocess.run([sys.executable, "-m", "vfl.cli.main", "export", "exp-1", "--config", str(node_yaml),
                          "--out", str(tmp_path / "out"), "--json"], capture_output=True, text=True, timeout=120,
                         env={**os.environ, "PYTHONPATH": str(REPO)})
    assert run.returncode == 0, run.stderr
    assert json.loads(run.stdout)["role"] == "active" and (tmp_path / "out" / WEIGHTS).exists()
    missing = subprocess.run([sys.executable, "-m", "vfl.cli.main", "export", "nope", "--config", str(node_yaml),
                              "--out", str(tmp_path / "x")], capture_output=True, text=True, timeout=120,
                             env={**os.environ, "PYTHONPATH": str(REPO)})
    assert missing.returncode == 1 and "no model part" in missing.stderr
