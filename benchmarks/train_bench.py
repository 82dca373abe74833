"""One training epoch on default_credit: encrypted split-NN against plaintext split learning, same run.

Two party nodes, each its own process, over gRPC with mutual TLS on loopback; 2048-bit Paillier keys;
bottom output d = 16, interactive output m = 16, batch 512. Prints a JSON object on its last line:
epoch seconds for both, rows/s, the ratio, test AUC for both, where the time went at each party, and the CPU
seconds each node (with its worker pool) spent on the whole job -- the figure to compare two runs by on a loaded
machine. The nodes run with `report_handler_timing: true`, so the active party's figures separate transport
from the passive party's work.
"""
from __future__ import annotations

import argparse
import shutil
import tempfile
import time
from pathlib import Path

from common import centralized, parties, print_json, require_data, tree_cpu_seconds


def job(mode: str, epochs: int, precision: dict | None = None) -> dict:
    return {"model": {"bottom": {"hidden": [32], "out": 16}, "interactive": {"out": 16}, "top": {"hidden": [16]}},
            "train": {"epochs": epochs, "batch_size": 512, "lr": 0.01, "interactive_lr": 0.05, "seed": 1},
            "split": {"validation": 0.0, "test": 0.2, "seed": 5},
            "crypto": {"mode": mode, "key_bits": 2048, **(precision or {})}, "privacy": {"defense": "none"}}


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--epochs", type=int, default=1)
    parser.add_argument("--workers", type=int, default=2, help="Paillier worker processes per node")
    parser.add_argument("--precision-bits", type=int, help="crypto.precision_bits (default: the job spec's)")
    parser.add_argument("--gradient-bits", type=int, help="crypto.gradient_bits (default: the job spec's)")
    args = parser.parse_args()
    precision = {k: v for k, v in (("precision_bits", args.precision_bits), ("gradient_bits", args.gradient_bits))
                 if v is not None}
    require_data()
    from vfl.api import Federation
    workdir = Path(tempfile.mkdtemp(prefix="vfl-train-bench-"))
    from vfl.he import ifma
    out: dict = {"bench": "train", "dataset": "default_credit", "key_bits": 2048, "batch": 512, "d": 16, "m": 16,
                 "epochs": args.epochs, "workers_per_node": args.workers, **precision,
                 # which exponentiation the nodes decrypt with (same environment): "ifma" or "gmpy2 (why not)"
                 "modexp": ifma.backend()}
    try:
        # The passive node reports each handler's time (off by default: it depends on the party's data), so
        # the active party's timing can split "waiting on peers' work" from "transport". Federation writes
        # node_options into every node's config; only the passive node answers timed calls.
        with Federation(parties("default_credit"), workdir=workdir, workers=args.workers,
                        node_options={"report_handler_timing": True}) as fed:
            for mode in ("plaintext", "paillier"):
                t0 = time.time()
                cpu0 = {name: tree_cpu_seconds(proc.pid) for name, proc in fed.processes.items()}
                model = fed.fit(task="binary", job_id=f"bench-{mode}", progress=False, **job(mode, args.epochs, precision))
                cpu = {name: round(tree_cpu_seconds(proc.pid) - cpu0[name], 1) for name, proc in fed.processes.items()}
                history = model.metrics["history"]
                epoch_s = sorted(h["seconds"] for h in history)[len(history) // 2]
                rows = model.metrics["split"]["train"]
                out[mode] = {"epoch_seconds": epoch_s, "rows_per_second": round(rows / epoch_s, 1),
                             "train_rows": rows, "test": model.metrics["test"], "job_seconds": round(time.time() - t0, 1),
                             "timing": model.metrics.get("timing", {}),
                             # the whole job (PSI, set-up, epochs, evaluation) per node, its worker pool included:
                             # comparable across runs on a loaded machine, unlike the wall-clock figures
                             "job_cpu_seconds": {**cpu, "total": round(sum(cpu.values()), 1)}}
        spec = {"job_id": "c", "active": "guest", "task": "binary",
                "parties": {"guest": {"dataset": "t"}, "host": {"dataset": "t"}}, **job("plaintext", args.epochs)}
        out["centralized_test"] = centralized("default_credit", spec)["test"]
        out["encrypted_over_plaintext_epoch_ratio"] = round(out["paillier"]["epoch_seconds"] /
                                                            out["plaintext"]["epoch_seconds"], 2)
        out["target_epoch_seconds"] = 90
        out["meets_target"] = out["paillier"]["epoch_seconds"] <= 90
    finally:
        shutil.rmtree(workdir, ignore_errors=True)
    print_json(out)


if __name__ == "__main__":
    main()
