"""Real nodes (mutual TLS) keep their audit logs and sign each job's lineage: each log records who connected and the
job at its own stage (submitted, opened, the PSI session, closed, finished); `vfl audit-log verify` passes on the log
and fails on an edited copy; `vfl lineage verify` passes at both parties and names a model part changed by one
byte."""
from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pandas as pd

from tests.node.conftest import breast_parties

REPO = Path(__file__).resolve().parents[2]
SMALL = {"model": {"bottom": {"hidden": [8], "out": 4}, "interactive": {"out": 4}, "top": {"hidden": [4]}},
         "train": {"epochs": 1, "batch_size": 256}, "crypto": {"mode": "plaintext"}}


def vfl_json(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "vfl.cli.main", *args, "--json"], capture_output=True, text=True,
                          timeout=120, env={**os.environ, "PYTHONPATH": str(REPO)})


def verify_cli(config: Path) -> subprocess.CompletedProcess:
    return vfl_json("audit-log", "verify", "--config", str(config))


def actions(path: Path) -> list[tuple[str, str]]:
    return [(e["actor"], e["action"]) for e in map(json.loads, path.read_text().splitlines())]


def test_both_nodes_log_the_job_and_the_log_verifies(tmp_path):
    from vfl.api import Federation
    with Federation(breast_parties(), workdir=tmp_path / "fed") as fed:
        model = fed.fit(job_id="audited-1", progress=False, **SMALL)
    guest, host = tmp_path / "fed" / "guest", tmp_path / "fed" / "host"
    guest_log, host_log = guest / "audit" / "audit.jsonl", host / "audit" / "audit.jsonl"
    assert ("self", "job submitted") in actions(guest_log) and ("self", "job finished") in actions(guest_log)
    assert {("guest", "connection"), ("guest", "job opened"), ("guest", "psi session"),
            ("guest", "job closed")} <= set(actions(host_log)), actions(host_log)
    assert not any(a == "job opened" for _, a in actions(guest_log))   # the guest opened nothing as a passive
    for home in (guest, host):
        ok = verify_cli(home / "node.yaml")
        assert ok.returncode == 0 and json.loads(ok.stdout)["ok"], ok.stderr
    entries = host_log.read_text().splitlines()
    edited = json.loads(entries[1])
    edited["actor"] = "someone-else"
    host_log.write_text("\n".join([entries[0], json.dumps(edited), *entries[2:]]) + "\n")
    bad = verify_cli(host / "node.yaml")
    assert bad.returncode == 1 and "line 2: edited" in json.loads(bad.stdout)["error"]

    for home in (guest, host):   # lineage: signed by each party with its own key, intact
        ok = vfl_json("lineage", "verify", "audited-1", "--config", str(home / "node.yaml"))
        assert ok.returncode == 0, ok.stderr
        record = json.loads(ok.stdout)
        assert record["input"]["rows_after_psi"] == model.metrics["intersection"]
        assert record["input"]["rows"] == len(pd.read_csv(home / "data" / record["input"]["file"]))
        assert record["spec_sha256"] and record["artifacts"]
    host_record = json.loads(vfl_json("lineage", "verify", "audited-1", "--config", str(host / "node.yaml")).stdout)
    assert host_record["peers"]["guest"]["certificate_sha256"]   # the certificate the guest called with
    part = next(name for name in host_record["artifacts"] if name.startswith("model"))
    data = bytearray((host / "jobs" / "audited-1" / part).read_bytes())
    data[len(data) // 2] ^= 1
    (host / "jobs" / "audited-1" / part).write_bytes(bytes(data))
    bad = vfl_json("lineage", "verify", "audited-1", "--config", str(host / "node.yaml"))
    assert bad.returncode == 1 and f"artifact {part} changed" in bad.stderr
