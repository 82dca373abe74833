"""What a label-leakage defense can cost at most on default_credit, and how much of a paired drop is the noise's draw.

privacy_bench.py judges the default on paired seeds. This bench asks what those drops are made of, with every party in
one process (tests/job/local.py, plaintext split learning: the defense and the gradients are those of an encrypted
run, up to Paillier's fixed point), one pairing per seed (node-local secret seeds from a master drawn from the OS, so
every run of a seed starts from the same initial weights, split and batch order):

* `none`: the undefended run every drop is paired with;
* `frozen`: the passive party receives zero input gradients, so its bottom model never moves from its initial weights
  (the interactive weight and the active side still learn, exactly). Its drop is what the passive party's own bottom
  model contributes after that many epochs: a defense whose noise stopped the passive party from learning anything
  would lose about that much;
* `marvell:S`: marvell at strength S; a setting named twice is run twice, with fresh noise from the OS each time, so
  the spread of one seed's drops is the part of a paired drop that is the noise's draw.

For every marvell run it also records, per two-class batch, the Gaussian model marvell works in (vfl.privacy.defenses
.MarvellBatch): the bound of Li et al.'s Theorem 1 on any attack's AUC that strength S reaches, and the least noise
power (in squared class-mean distances) that would bring that bound to --bound: the budget a "least noise for a leak
bound" variant of marvell would spend on that batch. Prints one JSON object on its last line.
"""
from __future__ import annotations

import argparse
import secrets
import shutil
import statistics
import tempfile
import time
from pathlib import Path

import numpy as np

from common import DATA, TABLES, print_json, require_data


def node_configs(root: Path, table: str, master: int) -> dict:
    """The two parties' node configs over the shared table, with node-local secret seeds from `master`."""
    from vfl.node.config import parse_node_config
    task, id_col, label, files = TABLES[table]
    out = {}
    for i, (party, file) in enumerate(files):
        home = root / party
        (home / "data").mkdir(parents=True, exist_ok=True)
        (home / "data" / "table.csv").symlink_to(DATA / file)
        dataset = {"path": "table.csv", "id": id_col, **({"label": label} if i == 0 else {})}
        out[party] = parse_node_config({"party": party, "role": "active" if i == 0 else "passive", "insecure": True,
                                        "datasets": {"table": dataset}, "workers": 1, "secret_seed": master + i,
                                        "policy": {"allow_plaintext": True, "min_key_bits": 1024}}, home)
    return out


def make(run: str, bound: float, batches: list):
    """The defense object of one run name (None: undefended)."""
    from vfl.privacy.defenses import Defense, MarvellBatch, MarvellDefense, auc_bound, kl_for_auc_bound

    class Frozen(Defense):
        name = "frozen"

        def apply(self, per_example, labels=None, step=None):
            return np.zeros_like(per_example)

    class Measured(MarvellDefense):
        def apply(self, per_example, labels=None, step=None):
            y = np.asarray(labels).astype(bool)
            if y.any() and (~y).any():
                batch = MarvellBatch(per_example, y)
                at_strength = auc_bound(batch.kl2(batch.least_kl(self.strength)) / 2)
                power, _ = batch.least_power(kl_for_auc_bound(bound))
                batches.append({"bound_at_strength": at_strength, "power_for_bound": power,
                                "u": batch.u.tolist(), "v": batch.v.tolist()})
            return super().apply(per_example, labels, step)

    if run == "none":
        return None
    if run == "frozen":
        return Frozen()
    kind, _, strength = run.partition(":")
    if kind != "marvell":
        raise SystemExit(f"unknown run {run!r}: none, frozen or marvell:STRENGTH")
    return Measured(strength=float(strength))


def spec_for(job_id: str, table: str, epochs: int, seed: int):
    from vfl.job.spec import parse_job_spec
    task, id_col, label, files = TABLES[table]
    return parse_job_spec({
        "job_id": job_id, "active": files[0][0], "task": task,
        "parties": {party: {"dataset": "table"} for party, _ in files},
        "model": {"bottom": {"hidden": [32], "out": 16}, "interactive": {"out": 16}, "top": {"hidden": [16]}},
        "train": {"epochs": epochs, "batch_size": 256, "lr": 0.01, "interactive_lr": 0.05, "seed": seed},
        "split": {"validation": 0.0, "test": 0.2, "seed": 5},
        "crypto": {"mode": "plaintext", "key_bits": 1024}, "privacy": {"defense": "none"}})


def summarize(values: list[float]) -> dict:
    return {"median": round(statistics.median(values), 4), "min": round(min(values), 4), "max": round(max(values), 4)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--table", default="default_credit", choices=("default_credit", "breast"))
    parser.add_argument("--epochs", type=int, default=2)
    parser.add_argument("--seeds", default="1,2,3")
    parser.add_argument("--runs", default="none,frozen,marvell:16,marvell:16",
                        help="the first must be none: every drop is paired with it")
    parser.add_argument("--bound", type=float, default=0.60, help="the Theorem 1 AUC bound to price per batch")
    args = parser.parse_args()
    require_data()
    from tests.job.local import run_local_job
    runs = args.runs.split(",")
    if runs[0] != "none":
        raise SystemExit("--runs: the first run must be none")
    workdir = Path(tempfile.mkdtemp(prefix="vfl-privacy-floor-"))
    rows, batches = [], []
    t0 = time.time()
    try:
        for seed in (int(s) for s in args.seeds.split(",")):
            master = secrets.randbits(62)   # the pairing: drawn from the OS, never from a spec or this file
            base = None
            for i, run in enumerate(runs):
                mine: list = []
                defense = make(run, args.bound, mine)
                result = run_local_job(spec_for(f"floor-{seed}-{i}", args.table, args.epochs, seed),
                                       node_configs(workdir / f"{seed}-{i}", args.table, master), defense=defense)
                auc = result["test"]["auc"]
                base = auc if base is None else base
                rows.append({"seed": seed, "run": run, "test_auc": round(auc, 4), "drop": round(base - auc, 4)})
                batches.extend(dict(b, run=run) for b in mine)
                print(rows[-1], flush=True)
    finally:
        shutil.rmtree(workdir, ignore_errors=True)
    summary = {run: summarize([r["drop"] for r in rows if r["run"] == run]) for run in dict.fromkeys(runs[1:])}
    batch_summary = {run: {"batches": sum(b["run"] == run for b in batches),
                           "bound_at_strength": summarize([b["bound_at_strength"] for b in batches if b["run"] == run]),
                           f"power_for_bound_{args.bound:g}": summarize([b["power_for_bound"] for b in batches
                                                                          if b["run"] == run]),
                           "max_u": round(max(max(b["u"]) for b in batches if b["run"] == run), 4),
                           "max_v": round(max(max(b["v"]) for b in batches if b["run"] == run), 4)}
                     for run in dict.fromkeys(r for r in runs if r.startswith("marvell"))}
    print_json({"bench": "privacy_floor", "table": args.table, "epochs": args.epochs, "crypto": "plaintext",
                "rows": rows, "drops": summary, "batches": batch_summary, "seconds": round(time.time() - t0, 1)})


if __name__ == "__main__":
    main()
