"""The hospitals example: three organizations train one model on the patients they share, without sharing rows.

    python hospitals.py                      # what `vfl demo` runs: nodes, PSI, training, evaluation, prediction
    python hospitals.py --epochs 2 --json    # quicker; the metrics as JSON on stdout
    python hospitals.py --write-data data    # regenerate the CSV files run.sh and the node configs use

This file is `vfl.examples.hospitals` in the installed package, which is what `vfl demo` runs (so the demo works
without this repository), and examples/hospitals/hospitals.py in the repository is a link to it: copy it to start
your own. The data is scikit-learn's breast cancer table (569 patients, 30 measurements of cell nuclei, the
diagnosis), split by column the way three organizations could hold it:

  hospital-a  the diagnosis (the label) and 10 measurements   active party
  lab-b       10 other measurements (the pathology lab)       passive party
  imaging-c   10 more (the imaging center)                    passive party

Each organization misses about 5 % of the patients and has 20 of its own, so PSI matters. hospital-a keeps 10 % of
its labelled patients out of training (holdout, for evaluation) and has a few new, unlabelled ones (for prediction).
The nodes are separate processes on loopback with mutual TLS; the interactive layer is Paillier-encrypted. At the
end, the same architecture is trained centrally on the pooled columns, from the encrypted run's initial weights, to
show what the encryption costs.
"""
from __future__ import annotations

import argparse
import json
import shutil
import sys
import time
from pathlib import Path
from typing import IO, Any

import numpy as np
import pandas as pd

ACTIVE = "hospital-a"
COLUMNS = {"hospital-a": range(0, 10), "lab-b": range(10, 20), "imaging-c": range(20, 30)}
# data/<party>/<file>: the datasets the node configs name (node.yaml `datasets:`)
FILES = {"hospital-a": {"patients": "patients.csv", "holdout": "holdout.csv", "new-patients": "new-patients.csv"},
         "lab-b": {"results": "results.csv"}, "imaging-c": {"scans": "scans.csv"}}
TRAIN_DATASETS = {"hospital-a": "patients", "lab-b": "results", "imaging-c": "scans"}
LABEL, ID = "diagnosis", "patient_id"
EPOCHS = 12


# %% The three organizations' tables
def hospital_tables(seed: int = 7) -> dict[str, pd.DataFrame]:
    """{"<party>/<file>": table}: column-split tables with partially overlapping patient lists."""
    from sklearn.datasets import load_breast_cancer
    data = load_breast_cancer()
    rng = np.random.default_rng(seed)
    n = len(data.target)
    ids = np.array([f"patient-{i:05d}" for i in range(n)])
    out = {}
    for k, (party, columns) in enumerate(COLUMNS.items()):
        keep = rng.random(n) > 0.05                                     # each organization misses ~5 %
        frame = pd.DataFrame(data.data[:, list(columns)], columns=[data.feature_names[c] for c in columns])
        frame.insert(0, ID, ids)
        if party == ACTIVE:
            frame.insert(1, LABEL, np.where(data.target == 0, "malignant", "benign"))
        frame = frame[keep]
        extra = pd.DataFrame({ID: [f"other-{party}-{i}" for i in range(20)]})   # patients only this one has
        for col in frame.columns[1:]:
            extra[col] = frame[col].sample(20, random_state=k, replace=True).to_numpy()
        frame = pd.concat([frame, extra]).sample(frac=1.0, random_state=k).reset_index(drop=True)  # own row order
        if party != ACTIVE:
            out[f"{party}/{next(iter(FILES[party].values()))}"] = frame
            continue
        holdout = frame.iloc[:len(frame) // 10]                          # labelled, never trained on
        new = frame.iloc[len(frame) // 10:len(frame) // 10 + 25].drop(columns=[LABEL])
        out[f"{party}/patients.csv"] = frame.iloc[len(frame) // 10 + 25:]
        out[f"{party}/holdout.csv"] = holdout
        out[f"{party}/new-patients.csv"] = new
    return out


def write_data(directory: Path) -> list[Path]:
    written = []
    for name, table in hospital_tables().items():
        path = Path(directory) / name
        path.parent.mkdir(parents=True, exist_ok=True)
        table.to_csv(path, index=False)
        written.append(path)
    return written


def job_options(epochs: int = EPOCHS) -> dict[str, Any]:
    """The model and training settings; examples/hospitals/jobs/train.yaml holds the same ones."""
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
    train = {party: tables[f"{party}/{FILES[party][ds]}"] for party, ds in TRAIN_DATASETS.items()}
    common = sorted(set.intersection(*(set(t[ID]) for t in train.values())))
    indexed = {p: t.set_index(ID).loc[common] for p, t in train.items()}
    label = (indexed[ACTIVE][LABEL] == "malignant").to_numpy().astype(np.int64)
    features = {p: t.drop(columns=[c for c in (LABEL,) if c in t.columns]).to_numpy(np.float64)
                for p, t in indexed.items()}
    return train_centralized(parse_job_spec(spec_dict), np.array(common), features, label, initial=initial)


# %% The run: three nodes, PSI, encrypted training, evaluation, prediction, and the centralized comparison
def run_demo(workdir: Path, epochs: int | None = None, progress: bool = True, out: IO[str] | None = None) -> dict:
    from vfl.api import Federation, Party
    from vfl.baseline import initial_state
    epochs = epochs or EPOCHS
    workdir = Path(workdir)
    if workdir.exists():
        shutil.rmtree(workdir)
    tables = hospital_tables()
    say = (lambda *a: print(*a, file=out or sys.stdout, flush=True)) if progress else (lambda *a: None)
    say(f"vfl demo (examples/hospitals): 3 party nodes on loopback with mutual TLS, work directory {workdir}")
    train = {p: tables[f"{p}/{FILES[p][ds]}"] for p, ds in TRAIN_DATASETS.items()}
    for name, t in train.items():
        say(f"  {name:<11} {len(t):>4} patients, {t.shape[1] - 1 - (name == ACTIVE)} columns"
            + ("  + diagnosis (labels)" if name == ACTIVE else ""))
    parties = [Party(name, t, id_column=ID, label=LABEL if name == ACTIVE else None) for name, t in train.items()]
    others = {p: t for p, t in train.items() if p != ACTIVE}
    t0 = time.time()
    with Federation(parties, workdir=workdir, active=ACTIVE) as fed:
        options = job_options(epochs)
        model = fed.fit(task="binary", job_id="demo-train", progress=progress, **options)
        holdout = model.evaluate({ACTIVE: tables[f"{ACTIVE}/holdout.csv"], **others}, job_id="demo-evaluate")
        predicted = model.predict({ACTIVE: tables[f"{ACTIVE}/new-patients.csv"], **others}, job_id="demo-predict")
    seconds = time.time() - t0
    spec_dict = {"job_id": "baseline", "active": ACTIVE, "task": "binary",
                 "parties": {p: {"dataset": "table"} for p in COLUMNS}, **options}
    start = initial_state({p: workdir / p / "jobs" / "demo-train" for p in COLUMNS}, ACTIVE)
    baseline = centralized_baseline(tables, spec_dict, initial=start)
    result = model.metrics
    auc, base_auc = result["test"].get("auc"), baseline["test"].get("auc")
    metrics = {"intersection": result["intersection"], "split": result["split"],
               "encrypted_test": result["test"], "centralized_test": baseline["test"],
               "auc_gap": abs(auc - base_auc), "holdout": holdout, "predicted_patients": len(predicted),
               "seconds": round(seconds, 1), "model_parts": result.get("model_parts", {}),
               "privacy": result.get("privacy", {}), "governance": governance_records(workdir, "demo-train"),
               "ok": bool(auc >= 0.97)}
    _report(say, metrics, baseline)
    return metrics


def governance_records(workdir: Path, job_id: str) -> dict:
    """Each party's own records of the training job (docs/governance.md), checked here as `vfl lineage verify` and
    `vfl audit-log verify` would check them: the data audit, the signed lineage, the audit log, the at-rest key."""
    from vfl.governance.audit_log import load_key, verify
    from vfl.governance.lineage import verify_lineage
    from vfl.node.config import load_node_config
    records = {}
    for party in COLUMNS:
        config = load_node_config(workdir / party / "node.yaml")
        job_dir = config.job_dir(job_id)
        lineage = verify_lineage(job_dir, config.tls.cert if config.tls else None)
        log = verify(config.audit_log, load_key(config.audit_key))
        records[party] = {"config": str(workdir / party / "node.yaml"), "audit_report": str(job_dir / "audit.json"),
                          "lineage": str(job_dir / "lineage.json"), "lineage_artifacts": len(lineage["artifacts"]),
                          "encrypted_at_rest": len(lineage.get("encrypted_at_rest", [])),
                          "audit_log": str(config.audit_log), "audit_log_entries": log.entries,
                          "at_rest_key": str(config.at_rest.key)}
    return records


def _report(say, metrics: dict, baseline: dict) -> None:
    test = metrics["encrypted_test"]
    say("")
    say(f"common patients found by PSI: {metrics['intersection']}   split: {metrics['split']}")
    say(f"test AUC, encrypted split-NN : {test['auc']:.4f}   accuracy {test['accuracy']:.4f}")
    say(f"test AUC, centralized        : {baseline['test']['auc']:.4f}   accuracy {baseline['test']['accuracy']:.4f}")
    say(f"holdout (never trained on)   : AUC {metrics['holdout']['auc']:.4f}   accuracy "
        f"{metrics['holdout']['accuracy']:.4f}")
    say(f"new patients predicted       : {metrics['predicted_patients']}")
    say("model parts (each party saved only its own):")
    for party, path in metrics["model_parts"].items():
        say(f"  {party:<11} {path}")
    if metrics["privacy"]:
        say("privacy report: " + json.dumps(metrics["privacy"]))
    say("governance records, each party's own (docs/governance.md); lineage and audit logs verified:")
    for party, g in metrics["governance"].items():
        say(f"  {party:<11} data audit  {g['audit_report']}")
        say(f"  {'':<11} lineage     {g['lineage']} (signed; {g['lineage_artifacts']} artifacts, "
            f"{g['encrypted_at_rest']} encrypted at rest)")
        say(f"  {'':<11} audit log   {g['audit_log']} ({g['audit_log_entries']} entries, chain intact)")
    first = next(iter(metrics["governance"].values()))
    say(f"  check again: vfl lineage verify demo-train --config {first['config']}; "
        f"vfl audit-log verify --config {first['config']}")
    say(f"finished in {metrics['seconds']:.0f} s")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--workdir", default="work/demo", help="where the nodes keep everything (replaced)")
    parser.add_argument("--epochs", type=int, default=None, help=f"training epochs (default {EPOCHS})")
    parser.add_argument("--json", action="store_true", help="print only the metrics, as JSON, on stdout")
    parser.add_argument("--write-data", metavar="DIR", help="write the CSV files into DIR and exit")
    args = parser.parse_args(argv)
    if args.write_data:
        for path in write_data(Path(args.write_data)):
            print(path)
        return 0
    metrics = run_demo(Path(args.workdir), args.epochs, progress=not args.json)
    if args.json:
        print(json.dumps(metrics, indent=1, default=str))
    return 0 if metrics["ok"] else 1


if __name__ == "__main__":
    sys.exit(main())
