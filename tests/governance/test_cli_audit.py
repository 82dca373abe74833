"""`vfl audit` as a user runs it: the report in text or JSON, exit 1 when a job would refuse the dataset."""
from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pandas as pd

from tests.governance.corpus import positives

REPO = Path(__file__).resolve().parents[2]


def vfl(*args: str) -> subprocess.CompletedProcess:
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    return subprocess.run([sys.executable, "-m", "vfl.cli.main", *args], capture_output=True, text=True, env=env,
                          timeout=120)


def node_yaml(tmp_path: Path, allowed: list[str]) -> Path:
    frame = pd.read_csv(REPO / "examples/bank-credit/data/bank-a/customers.csv", dtype=str)
    frame["contact"] = [positives()["email"][i % 20] for i in range(len(frame))]
    (tmp_path / "data").mkdir(exist_ok=True)
    frame.to_csv(tmp_path / "data" / "customers.csv", index=False)
    path = tmp_path / f"node-{len(allowed)}.yaml"
    path.write_text(json.dumps({"party": "bank-a", "role": "active", "insecure": True,
                                "datasets": {"customers": {"path": "customers.csv", "id": "customer_id",
                                                           "label": "defaulted"}},
                                "policy": {"allow_pii_columns": allowed}}))
    return path


def test_vfl_audit_reports_and_exits_1_on_a_refused_column(tmp_path):
    text = vfl("audit", "customers", "--config", str(node_yaml(tmp_path, [])))
    assert text.returncode == 1, text.stderr
    assert "contact" in text.stdout and "PII? email (by values)" in text.stdout
    assert "quasi-identifiers age, region: smallest group k = " in text.stdout
    assert "a job would refuse this dataset" in text.stdout

    allowed = vfl("audit", "customers", "--config", str(node_yaml(tmp_path, ["contact"])), "--json")
    assert allowed.returncode == 0, allowed.stderr
    report = json.loads(allowed.stdout)
    assert report["rows"] == len(pd.read_csv(tmp_path / "data" / "customers.csv"))
    assert {c["name"]: c["role"] for c in report["columns"]}["customer_id"] == "id"

    missing = vfl("audit", "nope", "--config", str(node_yaml(tmp_path, [])))
    assert missing.returncode == 1 and "has no dataset named 'nope'" in missing.stderr
