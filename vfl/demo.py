"""`vfl demo`: three hospitals train one model on scikit-learn's breast cancer data without sharing rows.

hospital-a holds the diagnoses and 10 measurements; lab-b and imaging-c hold 10 other measurements each.
Each organization's patient list is a different partial view of the same population, so PSI matters.
The nodes are separate processes on loopback with mutual TLS; the interactive layer is Paillier-encrypted.
"""
from __future__ import annotations

import json
import shutil
import time
from pathlib import Path

import numpy as np
import pandas as pd

PARTIES = {"hospital-a": range(0, 10), "lab-b": range(10, 20), "imaging-c": range(20, 30)}
ACTIVE = "hospital-a"


def demo_tables(seed: int = 7) -> dict[str, pd.DataFrame]:
    """Column-split tables with partially overlapping patient lists (about 85% of patients are common)."""
    from sklearn.datasets import load_breast_cancer
    data = load_breast_cancer()
    rng = np.random.default_rng(seed)
    n = len(data.target)
    ids = np.array([f"patient-{i:05d}" for i in range(n)])
    tables = {}
    for k, (party, columns) in enumerate(PARTIES.items()):
        keep = rng.random(n) > 0.05                       # each organization misses ~5% of patients
        frame = pd.DataFrame(data.data[:, list(columns)], columns=[data.feature_names[c] for c in columns])
        frame.insert(0, "patient_id", ids)
        if party == ACTIVE:
            frame.insert(1, "diagnosis", np.where(data.target == 0, "malignant", "benign"))
        frame = frame[keep]
        extra = pd.DataFrame({"patient_id": [f"other-{party}-{i}" for i in range(20)]})  # patients only here
        for col in frame.columns[1:]:
            extra[col] = frame[col].sample(20, random_state=k, replace=True).to_numpy()
        frame = pd.concat([frame, extra]).sample(frac=1.0, random_state=k)  # each party has its own row order
        tables[party] = frame.reset_index(drop=True)
    return tables


def job_options(epochs: int) -> dict:
    return {"model": {"bottom": {"hidden": [16], "out": 8}, "interactive": {"out": 8}, "top": {"hidden": [8]}},
            "train": {"epochs": epochs, "batch_size": 64, "lr": 0.01, "interactive_lr": 0.1,
                      "interactive_momentum": 0.9, "seed": 3},
            "split": {"validation": 0.1, "test": 0.25, "seed": 11},
            "crypto": {"key_bits": 2048}}


def centralized_baseline(tables: dict[str, pd.DataFrame], spec_dict: dict, initial=None) -> dict:
    """The same architecture trained on the pooled columns of the common patients, same split and batch order,
    from the encrypted run's initial weights when `initial` (vfl.baseline.initial_state) is given."""
    from vfl.baseline import train_centralized
    from vfl.job.spec import parse_job_spec
    spec = parse_job_spec(spec_dict)
    common = sorted(set.intersection(*(set(t["patient_id"]) for t in tables.values())))
    indexed = {p: t.set_index("patient_id").loc[common] for p, t in tables.items()}
    label = (indexed[ACTIVE]["diagnosis"] == "malignant").to_numpy().astype(np.int64)
    features = {p: t.drop(columns=[c for c in ("diagnosis",) if c in t.columns]).to_numpy(np.float64)
                for p, t in indexed.items()}
    return train_centralized(spec, np.array(common), features, label, initial=initial)


def run_demo(workdir: Path, epochs: int | None = None, progress: bool = True, out=None) -> dict:
    from vfl.api import Federation, Party
    epochs = epochs or 12
    workdir = Path(workdir)
    if workdir.exists():
        shutil.rmtree(workdir)
    tables = demo_tables()
    say = (lambda *a: print(*a, file=out, flush=True)) if progress else (lambda *a: None)
    say(f"vfl demo: 3 party nodes on loopback with mutual TLS, work directory {workdir}")
    for name, t in tables.items():
        say(f"  {name:<11} {len(t):>4} patients, {t.shape[1] - 1 - (name == ACTIVE)} columns"
            + ("  + diagnosis (labels)" if name == ACTIVE else ""))
    parties = [Party(name, t, id_column="patient_id", label="diagnosis" if name == ACTIVE else None)
               for name, t in tables.items()]
    t0 = time.time()
    with Federation(parties, workdir=workdir, active=ACTIVE) as fed:
        options = job_options(epochs)
        model = fed.fit(task="binary", job_id="demo-train", progress=progress, **options)
        spec_dict = {"job_id": "baseline", "active": ACTIVE, "task": "binary",
                     "parties": {p: {"dataset": "table"} for p in PARTIES}, **options}
    seconds = time.time() - t0
    from vfl.baseline import initial_state
    start = initial_state({p: workdir / p / "jobs" / "demo-train" for p in PARTIES}, ACTIVE)
    baseline = centralized_baseline(tables, spec_dict, initial=start)
    result = model.metrics
    auc, base_auc = result["test"].get("auc"), baseline["test"].get("auc")
    metrics = {"intersection": result["intersection"], "split": result["split"],
               "encrypted_test": result["test"], "centralized_test": baseline["test"],
               "auc_gap": abs(auc - base_auc), "seconds": round(seconds, 1),
               "model_parts": result.get("model_parts", {}), "privacy": result.get("privacy", {}),
               "ok": bool(auc >= 0.97)}
    say("")
    say(f"common patients found by PSI: {result['intersection']}   split: {result['split']}")
    say(f"test AUC, encrypted split-NN : {auc:.4f}   accuracy {result['test']['accuracy']:.4f}")
    say(f"test AUC, centralized        : {base_auc:.4f}   accuracy {baseline['test']['accuracy']:.4f}")
    say("model parts (each party saved only its own):")
    for party, path in metrics["model_parts"].items():
        say(f"  {party:<11} {path}")
    if metrics["privacy"]:
        say("privacy report: " + json.dumps(metrics["privacy"]))
    say(f"finished in {seconds:.0f} s")
    return metrics
