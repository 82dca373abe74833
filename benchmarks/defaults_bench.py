"""The default batch size against the old fixed one, on small tables (vfl.job.split.effective_batch_size).

The old default trained every table in batches of 512: a table of 786 training rows took 2 steps an epoch, 10 steps in
the default 5 epochs. The default now sizes the batch to the table (ceil(training rows / 16), within [32, 512]). Both
run here side by side with the spec's other defaults (5 epochs, lr 0.01 / 0.05), on the same split and the same
initial weights per seed (paired: torch is seeded the same for both), with centralized plaintext training of the
architecture the nodes train (vfl.baseline; only the cryptography is missing, and the rule is the same function the
active party calls). Tables: a 3-party, 10-class table like the issue's (scikit-learn's digits, 1123 rows drawn
with a fixed seed, its 64 pixels split 22/21/21 between three parties), breast (binary) and vehicle_scale (4 classes).
Candidate rules (steps per epoch, floor) are reported too, which is how the rule was picked. Last stdout line: one
JSON object with the medians over the seeds.
"""
from __future__ import annotations

import argparse
import math
import time

import numpy as np

from common import DATA, TABLES, print_json, require_data

SEEDS = (1, 2, 3, 4, 5)
CANDIDATES = {"steps8_min32": (8, 32), "steps16_min32": (16, 32), "steps32_min32": (32, 32), "steps16_min16": (16, 16)}


def digits_three_parties():
    from sklearn.datasets import load_digits
    d = load_digits()
    rows = np.random.default_rng(0).choice(len(d.target), 1123, replace=False)
    x, y = d.data[rows], d.target[rows]
    ids = np.array([f"d{i:05d}" for i in range(len(rows))], dtype=object)
    return "multiclass", ids, {"a": x[:, :22], "b": x[:, 22:43], "c": x[:, 43:]}, y, 10


def shared_table(name: str):
    from vfl.data import load_party_table
    task, id_col, label, files = TABLES[name]
    tables = {party: load_party_table(DATA / file, id_column=id_col, label=label if i == 0 else None, task=task)
              for i, (party, file) in enumerate(files)}
    guest = tables[files[0][0]]
    assert all(list(t.ids) == list(guest.ids) for t in tables.values())   # these files share their row order
    classes = len(guest.schema.label_classes) if task == "multiclass" else None
    return task, guest.ids, {p: t.features for p, t in tables.items()}, guest.label, classes


def train(table, batch_size: int | None, seed: int, epochs: int = 5) -> tuple[float, int, int]:
    """(test metric, batch size used, training rows) of one centralized run."""
    import torch

    from vfl.baseline import train_centralized
    from vfl.job.spec import parse_job_spec
    from vfl.job.split import effective_batch_size
    task, ids, features, label, classes = table
    names = list(features)
    train_section = {"epochs": epochs, "seed": seed, **({"batch_size": batch_size} if batch_size else {})}
    spec = parse_job_spec({"job_id": "defaults", "task": task, "active": names[0],
                           "parties": {p: {"dataset": "t"} for p in names}, "train": train_section,
                           "split": {"validation": 0.1, "test": 0.2, "seed": 5}})
    torch.manual_seed(seed)
    result = train_centralized(spec, ids, features, label, num_classes=classes)
    rows = result["split"]["train"]
    return result["test"]["auc" if task == "binary" else "accuracy"], effective_batch_size(batch_size, rows), rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seeds", type=int, default=len(SEEDS))
    parser.add_argument("--candidates", action="store_true", help="also the candidate rules the default was picked from")
    args = parser.parse_args()
    require_data()
    seeds = SEEDS[:args.seeds]
    tables = {"digits_3party": digits_three_parties(), "breast": shared_table("breast"),
              "vehicle_scale": shared_table("vehicle_scale")}
    out: dict = {"seeds": list(seeds), "epochs": 5, "tables": {}}
    t0 = time.time()
    for name, table in tables.items():
        runs = {"old_512": [train(table, 512, s) for s in seeds], "default": [train(table, None, s) for s in seeds]}
        rows = runs["default"][0][2]
        if args.candidates:
            for rule, (steps, floor) in CANDIDATES.items():
                batch = max(floor, min(512, math.ceil(rows / steps)))
                runs[rule] = [train(table, batch, s) for s in seeds]
        metric = "auc" if table[0] == "binary" else "accuracy"
        entry = {"train_rows": rows, "metric": metric}
        for rule, results in runs.items():
            values = [r[0] for r in results]
            entry[rule] = {"batch_size": results[0][1], "steps_per_epoch": math.ceil(rows / results[0][1]),
                           "median": round(float(np.median(values)), 4), "min": round(float(np.min(values)), 4),
                           "max": round(float(np.max(values)), 4)}
            print(f"{name:14s} {rule:14s} batch {results[0][1]:4d}: {metric} median {entry[rule]['median']:.4f} "
                  f"(min {entry[rule]['min']:.4f}, max {entry[rule]['max']:.4f})", flush=True)
        entry["default_minus_old"] = round(entry["default"]["median"] - entry["old_512"]["median"], 4)
        out["tables"][name] = entry
    out["seconds"] = round(time.time() - t0, 1)
    print_json(out)


if __name__ == "__main__":
    main()
