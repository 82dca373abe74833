"""Keeping the cluster busy (issue 12, item 4): what the pipeline and larger batches do to epoch time and quality.

The same encrypted training job (default_credit subsampled to --rows rows, 2048-bit keys, d = m = 16, --epochs
epochs) at each batch size of --batches, on nodes with `compute.pipeline` on and on nodes with it off. Both
federations stay up for the whole run and their jobs alternate (on, off, off, on, ...) for --rounds rounds, so that a
change in the machine's load hits both alike; the figures are medians over the rounds. Per run: the median epoch's
wall seconds, the CPU seconds of each node with its worker pool over the whole job (which hardly move with the
machine's load), and the test AUC; beside it the centralized plaintext baseline of the same architecture, batch
size, split and batch order, started from the encrypted run's own initial weights (vfl.baseline.initial_state), so
the AUC gap is the cost of the protocol alone.

--pin puts each party's node (and its worker pool) on a core of its own (core 0 the active party, core 1 the
passive), the way two organizations' machines are separate; without it both parties share every core, and the
pipeline has no idle core to use. Other sessions share this machine: read ratios, not absolute times. Prints a JSON
object on its last line.

    .venv/bin/python benchmarks/pipeline_bench.py --rows 6000 --batches 512,2048 --epochs 2 --rounds 2 --pin
"""
from __future__ import annotations

import argparse
import os
import shutil
import statistics
import tempfile
import time
from pathlib import Path

import numpy as np
import pandas as pd

from common import DATA, print_json, require_data, tree_cpu_seconds
from tests.procs import descendants


def job(batch: int, epochs: int) -> dict:
    return {"model": {"bottom": {"hidden": [32], "out": 16}, "interactive": {"out": 16}, "top": {"hidden": [16]}},
            "train": {"epochs": epochs, "batch_size": batch, "lr": 0.01, "interactive_lr": 0.05, "seed": 1},
            "split": {"validation": 0.0, "test": 0.2, "seed": 5},
            "crypto": {"mode": "paillier", "key_bits": 2048}, "privacy": {"defense": "none"}}


def credit_tables(rows: int, directory: Path) -> dict[str, Path]:
    guest = pd.read_csv(DATA / "default_credit_hetero_guest.csv", dtype={"id": str})
    host = pd.read_csv(DATA / "default_credit_hetero_host.csv", dtype={"id": str})
    keep = set(guest["id"].sample(n=min(rows, len(guest)), random_state=7))
    directory.mkdir(parents=True, exist_ok=True)
    paths = {"guest": directory / "guest.csv", "host": directory / "host.csv"}
    guest[guest["id"].isin(keep)].to_csv(paths["guest"], index=False)
    host[host["id"].isin(keep)].to_csv(paths["host"], index=False)
    return paths


def pin(fed, cores: dict[str, int]) -> None:
    """Each party's node on one core (its worker pools, started later, inherit it)."""
    for name, proc in fed.processes.items():
        for pid in [proc.pid, *descendants(proc.pid)]:
            try:
                os.sched_setaffinity(pid, {cores[name]})
            except OSError:
                pass


def centralized_auc(paths: dict[str, Path], spec: dict, initial) -> float:
    from vfl.baseline import train_centralized
    from vfl.data import load_party_table
    from vfl.job.spec import parse_job_spec
    tables = {"guest": load_party_table(paths["guest"], "id", label="y"), "host": load_party_table(paths["host"], "id")}
    common = sorted(set(tables["guest"].ids) & set(tables["host"].ids))
    aligned = {p: t.take(pd.Series(range(len(t)), index=t.ids).loc[common].to_numpy()) for p, t in tables.items()}
    result = train_centralized(parse_job_spec(spec), np.array(common), {p: t.features for p, t in aligned.items()},
                               aligned["guest"].label, initial=initial)
    return float(result["test"]["auc"])


def run_one(fed, label: str, batch: int, epochs: int, paths: dict[str, Path]) -> dict:
    from vfl.baseline import initial_state
    cpu0 = {name: tree_cpu_seconds(proc.pid) for name, proc in fed.processes.items()}
    t0 = time.time()
    model = fed.fit(task="binary", job_id=label, progress=False, **job(batch, epochs))
    wall = time.time() - t0
    cpu = {name: round(tree_cpu_seconds(proc.pid) - cpu0[name], 1) for name, proc in fed.processes.items()}
    history = model.metrics["history"]
    start = initial_state({p: fed.workdir / p / "jobs" / label for p in ("guest", "host")}, "guest")
    spec = {"job_id": "c", "active": "guest", "task": "binary",
            "parties": {"guest": {"dataset": "t"}, "host": {"dataset": "t"}}, **job(batch, epochs)}
    return {"epoch_seconds": statistics.median(h["seconds"] for h in history), "job_seconds": round(wall, 1),
            "cpu_seconds": {**cpu, "total": round(sum(cpu.values()), 1)}, "auc": model.metrics["test"]["auc"],
            "centralized_auc": centralized_auc(paths, spec, start), "steps_per_epoch": -(-model.metrics["split"]["train"]
                                                                                     // batch)}


def main() -> None:
    from vfl.api import Federation, Party
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rows", type=int, default=6000)
    parser.add_argument("--batches", default="512,2048")
    parser.add_argument("--epochs", type=int, default=2)
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--workers", type=int, default=1, help="worker processes per node")
    parser.add_argument("--pin", action="store_true", help="each party's node on a core of its own")
    args = parser.parse_args()
    require_data()
    batches = [int(b) for b in args.batches.split(",")]
    workdir = Path(tempfile.mkdtemp(prefix="vfl-pipeline-bench-"))
    out: dict = {"bench": "pipeline", "dataset": "default_credit", "rows": args.rows, "epochs": args.epochs,
                 "rounds": args.rounds, "workers_per_node": args.workers, "pinned": args.pin, "key_bits": 2048,
                 "load_average_start": os.getloadavg()[0], "runs": {}}
    try:
        paths = credit_tables(args.rows, workdir / "data")
        parties = [Party("guest", str(paths["guest"]), label="y"), Party("host", str(paths["host"]))]
        feds = {}
        for pipeline in (True, False):
            feds[pipeline] = Federation(parties, workdir=workdir / f"pipeline-{pipeline}", workers=args.workers,
                                        node_options={"compute": {"pipeline": pipeline},
                                                      "policy": {"max_batch_size": max(8192, max(batches))}})
            if args.pin:
                pin(feds[pipeline], {"guest": 0, "host": 1})
        try:
            for rnd in range(args.rounds):
                for batch in batches:
                    order = (True, False) if (rnd + batches.index(batch)) % 2 == 0 else (False, True)
                    for pipeline in order:
                        label = f"b{batch}-{'on' if pipeline else 'off'}-r{rnd}"
                        result = run_one(feds[pipeline], label, batch, args.epochs, paths)
                        out["runs"].setdefault(f"{batch}", {}).setdefault("on" if pipeline else "off", []).append(result)
                        print(label, result, flush=True)
        finally:
            for fed in feds.values():
                fed.close()
    finally:
        shutil.rmtree(workdir, ignore_errors=True)
    summary = {}
    for batch, runs in out["runs"].items():
        row = {}
        for key in ("on", "off"):
            rs = runs[key]
            row[key] = {"epoch_seconds": statistics.median(r["epoch_seconds"] for r in rs),
                        "cpu_seconds": statistics.median(r["cpu_seconds"]["total"] for r in rs),
                        "auc": statistics.median(r["auc"] for r in rs),
                        "auc_gap_to_centralized": statistics.median(r["centralized_auc"] - r["auc"] for r in rs)}
        row["epoch_ratio_on_over_off"] = round(row["on"]["epoch_seconds"] / row["off"]["epoch_seconds"], 3)
        row["cpu_ratio_on_over_off"] = round(row["on"]["cpu_seconds"] / row["off"]["cpu_seconds"], 3)
        summary[batch] = row
    first = str(batches[0])
    for batch in summary:
        summary[batch]["epoch_ratio_to_batch_" + first] = round(
            summary[batch]["on"]["epoch_seconds"] / summary[first]["on"]["epoch_seconds"], 3)
    out["summary"] = summary
    out["load_average_end"] = os.getloadavg()[0]
    print_json(out)


if __name__ == "__main__":
    main()
