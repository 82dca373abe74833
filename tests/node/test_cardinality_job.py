"""Cardinality-only jobs (kind: cardinality) end to end, and PSI jobs, with three real nodes over mutual TLS.

Three parties make the hello's party list matter (the passive nodes compare it with the job spec). Through the
Python API (Federation.cardinality, Client.cardinality) and the `vfl run` command, a cardinality job returns the
size of the common set and nothing else: no party writes aligned IDs, and each passive node's one PSI session
for the job was in cardinality mode.
"""
from __future__ import annotations

import json
import subprocess
import sys

import pandas as pd
import pytest
import yaml

from tests.node.conftest import SHARED
from vfl.api import Client, read_job_file


@pytest.fixture(scope="module")
def fed3(tmp_path_factory):
    from vfl.api import Federation, Party
    if not SHARED.is_dir():
        pytest.skip("../shared/data is not available")
    guest = pd.read_csv(SHARED / "breast_hetero_guest.csv", dtype={"id": str})
    host = pd.read_csv(SHARED / "breast_hetero_host.csv", dtype={"id": str})
    lab = host[["id"] + [f"x{i}" for i in range(10)]].sample(frac=0.85, random_state=1)
    clinic = host[["id"] + [f"x{i}" for i in range(10, 20)]].sample(frac=0.8, random_state=2)
    common = set(guest["id"]) & set(lab["id"]) & set(clinic["id"])
    parties = [Party("guest", guest, label="y"), Party("lab", lab), Party("clinic", clinic)]
    with Federation(parties, workdir=tmp_path_factory.mktemp("cardinality")) as fed:
        yield fed, len(common)


def passive_claim(fed, party: str, job_id: str) -> dict:
    return json.loads((fed.workdir / party / "jobs" / job_id / "psi-session.json").read_text())


def assert_no_alignment(fed, job_id: str) -> None:
    for party in fed.parties:
        job_dir = fed.workdir / party / "jobs" / job_id
        assert not (job_dir / "aligned_ids.json").exists() and not (job_dir / "aligned_rows.npy").exists(), party


def test_federation_cardinality_returns_only_the_size(fed3):
    fed, common = fed3
    result = fed.cardinality(job_id="card-fed", progress=False)
    assert result["job_id"] == "card-fed" and result["intersection"] == common
    assert "aligned_ids" not in result
    assert_no_alignment(fed, "card-fed")
    for party in ("lab", "clinic"):
        claim = passive_claim(fed, party, "card-fed")
        assert claim["mode"] == "cardinality" and claim["parties"][0] == "guest"
        assert sorted(claim["parties"]) == ["clinic", "guest", "lab"]


def test_psi_job_with_three_parties_still_aligns(fed3):
    fed, common = fed3
    result = fed.psi(job_id="psi-fed", progress=False)
    assert result["intersection"] == common
    assert len(json.loads(read_job_file(result["aligned_ids"]))) == common   # sealed at rest
    assert passive_claim(fed, "lab", "psi-fed")["mode"] == "intersection"


def test_client_cardinality_helper(fed3):
    fed, common = fed3
    client = Client.from_node_config(fed.configs["guest"])
    try:
        result = client.cardinality({"guest": "table", "lab": "table", "clinic": "table"}, job_id="card-client",
                                    progress=False)
    finally:
        client.close()
    assert result["intersection"] == common
    assert_no_alignment(fed, "card-client")


def test_vfl_run_with_a_cardinality_spec(fed3, tmp_path):
    fed, common = fed3
    spec = {"job_id": "card-cli", "kind": "cardinality", "active": "guest",
            "parties": {"guest": {"dataset": "table"}, "lab": {"dataset": "table"}, "clinic": {"dataset": "table"}}}
    path = tmp_path / "job.yaml"
    path.write_text(yaml.safe_dump(spec))
    out = subprocess.run([sys.executable, "-m", "vfl.cli.main", "run", str(path), "--config", str(fed.configs["guest"]),
                          "--quiet"], capture_output=True, text=True, timeout=300)
    assert out.returncode == 0, out.stderr
    result = json.loads(out.stdout)
    assert result["job_id"] == "card-cli" and result["intersection"] == common
    assert_no_alignment(fed, "card-cli")
