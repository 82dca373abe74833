"""Label leakage against utility for every shipped defense, on paired seeds; then the default, encrypted.

1. The sweep (skipped by --quick): for each table (default_credit, 22% positive; breast) and each seed, one federation
   trains the same model with no defense and with every defense setting of SWEEP, with the attack harness on (the
   passive party scores exactly the gradients its node received). One federation per seed gives its nodes node-local
   secret seeds from a master drawn from the OS, so every job of that seed starts from the same initial weights at
   every node, with the same split and batch order: each setting's AUC drop is paired with the undefended run of its
   seed. The sweep runs in `--sweep-crypto` mode, plaintext split learning by default: the defense and the attacks
   act on the same gradients as under Paillier (the cryptography is exact up to its fixed point), at a fraction of
   the time, so it can cover every setting at 2 and 10 epochs.
2. The pairs: undefended against the default (`auto`) on default_credit, with `--crypto` (2048-bit Paillier by
   default), one federation per seed. --quick runs only these, for 3 seeds.

Judged per setting: the median AUC drop over the seeds and the worst leak AUC of either attack in any seed. The target
for the default: median drop <= 0.01, both leak AUCs <= 0.60 in every pair. Writes the trade-off plot (leak AUC
against AUC drop, with epsilon where it exists) and prints one JSON object on its last line.
"""
from __future__ import annotations

import argparse
import secrets
import shutil
import statistics
import tempfile
import time
from pathlib import Path

from common import parties, print_json, require_data

#: (defense, its parameters) of the sweep; the first is the undefended baseline every drop is paired with
SWEEP = [("none", {}), ("dp", {"noise_multiplier": 0.5}), ("dp", {"noise_multiplier": 1.0}),
         ("dp", {"noise_multiplier": 2.0}), ("dp", {"noise_multiplier": 4.0}), ("max_norm", {}),
         ("marvell", {"strength": 1.0}), ("marvell", {"strength": 2.0}), ("marvell", {"strength": 4.0}),
         ("marvell", {"strength": 8.0}), ("marvell", {"strength": 16.0}),
         ("marvell", {"strength": 10.0}), ("marvell", {"strength": 12.0})]
TARGET_DROP, TARGET_LEAK = 0.01, 0.60


def pairing_seed() -> int:
    """A fresh master for one federation's node-local secret seeds (vfl.api.Federation): every job of that
    federation starts from the same initial weights at each node, so its runs are paired. Drawn from the OS:
    it never comes from a job spec or from this file."""
    return secrets.randbits(63)


def label(defense: str, params: dict) -> str:
    return defense + "".join(f" {k}={v:g}" for k, v in params.items())


def job(defense: str, params: dict, epochs: int, crypto: str, key_bits: int, seed: int) -> dict:
    return {"model": {"bottom": {"hidden": [32], "out": 16}, "interactive": {"out": 16}, "top": {"hidden": [16]}},
            "train": {"epochs": epochs, "batch_size": 256, "lr": 0.01, "interactive_lr": 0.05, "seed": seed},
            "split": {"validation": 0.0, "test": 0.2, "seed": 5},
            "crypto": {"mode": crypto, "key_bits": key_bits},
            "privacy": {"defense": defense, "attacks": True, **params}}


def run_seed(name: str, seed: int, settings: list[tuple[str, dict]], epochs: int, crypto: str, key_bits: int,
             workdir: Path) -> list[dict]:
    """Every setting for one seed, in one federation (the same initial weights for all of them)."""
    from vfl.api import Federation
    rows = []
    with Federation(parties(name), workdir=workdir / f"{name}-{seed}-{crypto}", workers=2,
                    secret_seed=pairing_seed()) as fed:
        for i, (defense, params) in enumerate(settings):
            t0 = time.time()
            model = fed.fit(task="binary", job_id=f"{name}-{seed}-{i}", progress=False,
                            **job(defense, params, epochs, crypto, key_bits, seed))
            privacy = model.metrics["privacy"]
            rows.append({"table": name, "seed": seed, "setting": label(defense, params), "defense": defense,
                         "params": params, "test_auc": model.metrics["test"]["auc"],
                         "norm_leak_auc": privacy.get("host.norm_leak_auc"),
                         "direction_leak_auc": privacy.get("host.direction_leak_auc"),
                         "membership_auc": privacy.get("membership_auc"), "epsilon": privacy.get("epsilon"),
                         "seconds": round(time.time() - t0, 1)})
            print(rows[-1], flush=True)
    base = rows[0]["test_auc"]
    for row in rows:
        row["drop"] = base - row["test_auc"]
    return rows


def summarize(rows: list[dict]) -> list[dict]:
    """Per table and setting: the median drop over the seeds and the worst leak in any of them."""
    out = []
    keys = list(dict.fromkeys((r["table"], r["setting"]) for r in rows))
    for table, setting in keys:
        mine = [r for r in rows if (r["table"], r["setting"]) == (table, setting)]
        leaks = [max(r["norm_leak_auc"], r["direction_leak_auc"]) for r in mine]
        out.append({"table": table, "setting": setting, "defense": mine[0]["defense"], "params": mine[0]["params"],
                    "seeds": len(mine),
                    "median_drop": round(statistics.median(r["drop"] for r in mine), 4),
                    "max_drop": round(max(r["drop"] for r in mine), 4),
                    "median_test_auc": round(statistics.median(r["test_auc"] for r in mine), 4),
                    "median_norm_leak": round(statistics.median(r["norm_leak_auc"] for r in mine), 3),
                    "median_direction_leak": round(statistics.median(r["direction_leak_auc"] for r in mine), 3),
                    "worst_leak": round(max(leaks), 3), "epsilon": mine[0]["epsilon"]})
    return out


def plot(summary: list[dict], path: Path, title: str) -> None:
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure
    tables = list(dict.fromkeys(s["table"] for s in summary))
    figure = Figure(figsize=(6.5 * len(tables), 5))
    FigureCanvasAgg(figure)
    axes = figure.subplots(1, len(tables), squeeze=False)[0]
    colors = {"none": "black", "dp": "tab:blue", "max_norm": "tab:orange", "marvell": "tab:green"}
    for ax, table in zip(axes, tables):
        for s in (s for s in summary if s["table"] == table):
            ax.plot(s["median_drop"], s["worst_leak"], "o", color=colors.get(s["defense"], "grey"))
            text = s["setting"] + (f", ε={s['epsilon']:.1f}" if s["epsilon"] else "")
            ax.annotate(text, (s["median_drop"], s["worst_leak"]), fontsize=7, xytext=(3, 3),
                        textcoords="offset points")
        ax.axhline(TARGET_LEAK, color="grey", linestyle=":")
        ax.axvline(TARGET_DROP, color="grey", linestyle=":")
        ax.set(xlabel="test AUC drop against undefended (median over paired seeds)",
               ylabel="worst label leak AUC of either attack", title=f"{table}, {title}")
        ax.grid(alpha=0.3)
    figure.tight_layout()
    figure.savefig(path, dpi=120)


def record_sweep(path: Path, epochs: int, seeds: list[int], crypto: str, summary: list[dict]) -> None:
    """Keep this sweep's summary in `path` (one entry per number of epochs), for the privacy reports."""
    import datetime
    import json
    data = json.loads(path.read_text()) if path.exists() else {}
    sweeps = [s for s in data.get("sweeps", []) if s["epochs"] != epochs]
    keep = ("table", "setting", "defense", "params", "median_drop", "worst_leak", "epsilon")
    rows = [{k: s[k] for k in keep} for s in summary]
    sweeps.append({"epochs": epochs, "seeds": seeds, "crypto": crypto, "measured": str(datetime.date.today()),
                   "summary": rows})
    data = {"source": "benchmarks/privacy_bench.py --write-tradeoff", "sweeps": sorted(sweeps, key=lambda s: s["epochs"])}
    path.write_text(json.dumps(data, indent=1) + "\n")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--epochs", type=int, default=2)
    parser.add_argument("--crypto", default="paillier", choices=("paillier", "plaintext"), help="the default's pairs")
    parser.add_argument("--sweep-crypto", default="plaintext", choices=("paillier", "plaintext"))
    parser.add_argument("--key-bits", type=int, default=2048)
    parser.add_argument("--datasets", default="default_credit,breast", help="tables of the sweep")
    parser.add_argument("--seeds", default="1,2,3", help="paired seeds (sweep and pairs)")
    parser.add_argument("--settings", default="", help="only these sweep settings (indices into SWEEP, e.g. 0,3,8)")
    parser.add_argument("--quick", action="store_true", help="only the default's encrypted pairs (no sweep)")
    parser.add_argument("--no-pairs", action="store_true", help="only the sweep")
    parser.add_argument("--plot", default="bench-out/privacy_tradeoff.png")
    parser.add_argument("--write-tradeoff", default="", metavar="JSON",
                        help="record the sweep's summary in this file (vfl/privacy/measured_tradeoff.json is what "
                             "every job's privacy report shows), replacing an earlier sweep of the same epochs")
    args = parser.parse_args()
    require_data()
    seeds = [int(s) for s in args.seeds.split(",") if s.strip()]
    settings = [SWEEP[int(i)] for i in args.settings.split(",")] if args.settings else SWEEP
    if settings[0] != SWEEP[0]:
        settings = [SWEEP[0], *settings]   # every drop is paired with the undefended run of its seed
    workdir = Path(tempfile.mkdtemp(prefix="vfl-privacy-bench-"))
    out: dict = {"bench": "privacy", "epochs": args.epochs, "seeds": seeds, "key_bits": args.key_bits}
    t0 = time.time()
    try:
        if not args.quick:
            rows = [r for name in args.datasets.split(",") for seed in seeds
                    for r in run_seed(name, seed, settings, args.epochs, args.sweep_crypto, args.key_bits, workdir)]
            out["sweep"] = {"crypto": args.sweep_crypto, "rows": rows, "summary": summarize(rows)}
            Path(args.plot).parent.mkdir(parents=True, exist_ok=True)
            plot(out["sweep"]["summary"], Path(args.plot), f"{args.epochs} epochs, {len(seeds)} paired seeds")
            out["plot"] = args.plot
            if args.write_tradeoff:
                record_sweep(Path(args.write_tradeoff), args.epochs, seeds, args.sweep_crypto, out["sweep"]["summary"])
        if not args.no_pairs:
            pairs = [r for seed in seeds for r in run_seed("default_credit", seed, [("none", {}), ("auto", {})],
                                                            args.epochs, args.crypto, args.key_bits, workdir)]
            default = [r for r in pairs if r["defense"] == "auto"]
            worst = max(max(r["norm_leak_auc"], r["direction_leak_auc"]) for r in default)
            median_drop = statistics.median(r["drop"] for r in default)
            out["default"] = {"crypto": args.crypto, "pairs": pairs, "median_drop": round(median_drop, 4),
                              "worst_leak_auc": round(worst, 3),
                              "target_met": worst <= TARGET_LEAK and median_drop <= TARGET_DROP}
    finally:
        shutil.rmtree(workdir, ignore_errors=True)
    out["seconds"] = round(time.time() - t0, 1)
    print_json(out)


if __name__ == "__main__":
    main()
