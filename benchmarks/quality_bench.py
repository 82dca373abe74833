"""Encrypted training against centralized plaintext training of the same architecture, same split and seed.

breast (binary, 2 parties), default_credit (binary, 2 parties), vehicle_scale (4 classes, 2 parties) and
motor (regression, 3 parties: guest and two hosts). Targets: within 0.01 AUC / accuracy, within 2% RMSE.
Last stdout line: one JSON object.
"""
from __future__ import annotations

import argparse
import shutil
import tempfile
import time
from pathlib import Path

from common import TABLES, centralized, parties, print_json, require_data

CONFIGS = {
    "breast": {"epochs": 10, "batch_size": 64, "interactive_lr": 0.1},
    "default_credit": {"epochs": 3, "batch_size": 512, "interactive_lr": 0.05},
    "vehicle_scale": {"epochs": 30, "batch_size": 64, "interactive_lr": 0.1},
    "motor": {"epochs": 30, "batch_size": 64, "interactive_lr": 0.05},
}


def job(name: str, key_bits: int) -> dict:
    c = CONFIGS[name]
    return {"model": {"bottom": {"hidden": [32], "out": 16}, "interactive": {"out": 16}, "top": {"hidden": [16]}},
            "train": {"epochs": c["epochs"], "batch_size": c["batch_size"], "lr": 0.01,
                      "interactive_lr": c["interactive_lr"], "seed": 1},
            "split": {"validation": 0.0, "test": 0.2, "seed": 5},
            "crypto": {"key_bits": key_bits}, "privacy": {"defense": "none"}}


def run(name: str, key_bits: int, workdir: Path) -> dict:
    from vfl.api import Federation
    task = TABLES[name][0]
    members = parties(name)
    t0 = time.time()
    from vfl.baseline import initial_interactive_weights
    job_id = f"quality-{name}"
    with Federation(members, workdir=workdir / name, workers=2) as fed:
        model = fed.fit(task=task, job_id=job_id, progress=False, **job(name, key_bits))
    spec = {"job_id": "c", "active": members[0].name, "task": task,
            "parties": {p.name: {"dataset": "t"} for p in members}, **job(name, key_bits)}
    # same initial interactive weights as the encrypted run (rebuilt from both parties' epoch-0 shares)
    w0 = initial_interactive_weights({p.name: workdir / name / p.name / "jobs" / job_id for p in members},
                                     members[0].name)
    base = centralized(name, spec, initial_weights=w0)["test"]
    enc = model.metrics["test"]
    metric = {"binary": "auc", "multiclass": "accuracy", "regression": "rmse"}[task]
    if task == "regression":
        gap = abs(enc[metric] - base[metric]) / base[metric]
        ok = gap <= 0.02
    else:
        gap = abs(enc[metric] - base[metric])
        ok = gap <= 0.01
    return {"task": task, "parties": len(members), "metric": metric, "encrypted": enc[metric],
            "centralized": base[metric], "gap": round(gap, 4), "within_target": ok,
            "epochs": CONFIGS[name]["epochs"], "seconds": round(time.time() - t0, 1)}


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--datasets", default="breast,default_credit,vehicle_scale,motor")
    parser.add_argument("--key-bits", type=int, default=2048)
    args = parser.parse_args()
    require_data()
    workdir = Path(tempfile.mkdtemp(prefix="vfl-quality-bench-"))
    results = {}
    try:
        for name in args.datasets.split(","):
            results[name] = run(name, args.key_bits, workdir)
            print(name, results[name], flush=True)
    finally:
        shutil.rmtree(workdir, ignore_errors=True)
    print_json({"bench": "quality", "key_bits": args.key_bits, "results": results,
                "all_within_target": all(r["within_target"] for r in results.values())})


if __name__ == "__main__":
    main()
