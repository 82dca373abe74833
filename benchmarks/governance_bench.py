"""What governance costs an encrypted training job: encryption at rest, the data audit, the audit log and the
signed lineage, against the job's epoch time, in the same run.

One encrypted job on default_credit (two nodes, mutual TLS, 2048-bit keys, one epoch, the train bench's model,
encryption at rest on as by default), then, on the job's own directories and datasets, each governance step the job
ran is timed again in this process (median of 5):
- encryption at rest: sealing every file the job sealed (checkpoints, model part and schema, aligned IDs and rows)
  from its plaintext, and opening each once (an upper bound: the job itself reopens only its alignment);
- the data audit of the table the job already read (vfl/job/party_data.py: one read, an even sample above
  JOB_AUDIT_MAX_ROWS rows);
- the lineage (hashing every artifact's content, sealed ones opened, and signing with the node's key);
- the audit-log entries a job writes.
The parties run their steps at the same time on their own machines, so the job waits for the slower party's sum.
Prints one JSON object on its last line: each step's median, the overhead as a share of the epoch (goal <= 3 %), and
encryption at rest's own share.
"""
from __future__ import annotations

import shutil
import statistics
import tempfile
import time
from pathlib import Path

from common import parties, print_json, require_data

from train_bench import job

ENTRIES_PER_JOB = 8   # the entries one job writes across both nodes (connection, submitted, opened, PSI, ...)


def median_seconds(fn, repeat: int = 5) -> float:
    times = []
    for _ in range(repeat):
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
    return statistics.median(times)


def main() -> None:
    require_data()
    from vfl.api import Federation
    from vfl.data import read_frame, sealed
    from vfl.governance.audit import JOB_AUDIT_MAX_ROWS, audit_frame
    from vfl.governance.audit_log import AuditLog, load_or_create_key
    from vfl.governance.lineage import write_lineage
    from vfl.node.at_rest import load_keys
    from vfl.node.config import load_node_config
    workdir = Path(tempfile.mkdtemp(prefix="vfl-governance-bench-"))
    out: dict = {"bench": "governance", "dataset": "default_credit", "key_bits": 2048, "epochs": 1}
    try:
        with Federation(parties("default_credit"), workdir=workdir, workers=2) as fed:
            model = fed.fit(task="binary", job_id="gov-1", progress=False, **job("paillier", 1))
            epoch = model.metrics["history"][0]["seconds"]
            configs = {name: load_node_config(path) for name, path in fed.configs.items()}
        steps: dict[str, float] = {}
        sealed_bytes: dict[str, int] = {}
        for name, config in configs.items():
            dataset = config.dataset("table")
            job_dir = config.job_dir("gov-1")
            keys = load_keys(config)
            stored = {p: p.read_bytes() for p in job_dir.rglob("*") if p.is_file() and sealed.file_is_sealed(p)}
            assert stored and keys is not None, f"{name}: the job sealed nothing (is encryption at rest on?)"
            plain = {p: keys.open(data, p.name) for p, data in stored.items()}
            sealed_bytes[name] = sum(len(v) for v in plain.values())
            steps[f"{name}.at_rest_seal"] = median_seconds(lambda: [keys.seal(v) for v in plain.values()])
            steps[f"{name}.at_rest_open"] = median_seconds(lambda: [keys.open(v, "f") for v in stored.values()])
            frame = read_frame(dataset.path)
            steps[f"{name}.data_audit"] = median_seconds(lambda: audit_frame(frame, dataset,
                                                                             max_rows=JOB_AUDIT_MAX_ROWS))
            record = {"job_id": "gov-1", "party": name}
            tls = config.tls
            scratch = workdir / f"lineage-{name}"
            shutil.copytree(job_dir, scratch)
            steps[f"{name}.lineage"] = median_seconds(lambda: write_lineage(scratch, record, tls.key, tls.cert))
        log = AuditLog(workdir / "bench-audit.jsonl", load_or_create_key(workdir / "bench-audit.key"))
        steps["audit_log"] = median_seconds(lambda: [log.append("bench", "job opened", job_id="gov-1")
                                                     for _ in range(ENTRIES_PER_JOB)])
        # The parties run their own steps at the same time on their own machines: the job waits for the slower one.
        per_party = {name: sum(v for k, v in steps.items() if k.startswith(name + ".")) for name in configs}
        overhead = max(per_party.values()) + steps["audit_log"]
        at_rest = max(steps[f"{name}.at_rest_seal"] + steps[f"{name}.at_rest_open"] for name in configs)
        out.update(epoch_seconds=epoch, step_seconds={k: float(f"{v:.3g}") for k, v in steps.items()},
                   sealed_plaintext_bytes=sealed_bytes,
                   at_rest_seconds=float(f"{at_rest:.3g}"), at_rest_share_of_epoch=float(f"{at_rest / epoch:.3g}"),
                   overhead_seconds=round(overhead, 3), overhead_share_of_epoch=round(overhead / epoch, 4),
                   goal_share=0.03, meets_goal=overhead / epoch <= 0.03)
    finally:
        shutil.rmtree(workdir, ignore_errors=True)
    print_json(out)


if __name__ == "__main__":
    main()
