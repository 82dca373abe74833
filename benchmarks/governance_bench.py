"""What governance costs an encrypted training job: the data audit, the audit log and the signed lineage, against
the job's epoch time, in the same run.

One encrypted job on default_credit (two nodes, mutual TLS, 2048-bit keys, one epoch, the train bench's model),
then, on the job's own directories and datasets, each governance step the job ran is timed again in this process
(median of 5): the data audit of each party's table, the lineage (hashing every artifact and signing with the
node's key), and the audit-log entries a job writes. Encryption at rest is not built yet and is not counted.
Prints one JSON object on its last line; the goal is an overhead of at most 3 % of the epoch.
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
    from vfl.governance.audit import audit_dataset
    from vfl.governance.audit_log import AuditLog, load_or_create_key
    from vfl.governance.lineage import write_lineage
    from vfl.node.config import load_node_config
    workdir = Path(tempfile.mkdtemp(prefix="vfl-governance-bench-"))
    out: dict = {"bench": "governance", "dataset": "default_credit", "key_bits": 2048, "epochs": 1}
    try:
        with Federation(parties("default_credit"), workdir=workdir, workers=2) as fed:
            model = fed.fit(task="binary", job_id="gov-1", progress=False, **job("paillier", 1))
            epoch = model.metrics["history"][0]["seconds"]
            configs = {name: load_node_config(path) for name, path in fed.configs.items()}
        steps: dict[str, float] = {}
        for name, config in configs.items():
            dataset = config.dataset("table")
            job_dir = config.job_dir("gov-1")
            steps[f"{name}.data_audit"] = median_seconds(lambda: audit_dataset(dataset))
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
        out.update(epoch_seconds=epoch, step_seconds={k: round(v, 4) for k, v in steps.items()},
                   overhead_seconds=round(overhead, 3), overhead_share_of_epoch=round(overhead / epoch, 4),
                   goal_share=0.03, meets_goal=overhead / epoch <= 0.03)
    finally:
        shutil.rmtree(workdir, ignore_errors=True)
    print_json(out)


if __name__ == "__main__":
    main()
