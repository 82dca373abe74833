"""The compute backends side by side: the same encrypted training job with `local` and with `ray`, one party on a
two-node Ray cluster on loopback, one vs two worker CPUs per backend, and PSI on Ray. Prints a JSON object on its
last line (docs/scale.md reads its figures).

Every run is a real `vfl serve` node per party (vfl.api.Federation, mutual TLS on loopback) on default_credit with
2048-bit keys, d = m = 16, batch 512 (train_bench's job). The Ray runs use a Ray cluster started here with
`ray start` (tests/ray_support.LoopbackCluster), which the nodes join as drivers; `--rows` subsamples the table to
keep a run short on a loaded machine (the ratio is per epoch, so it does not depend much on the size).

  epoch_ratio_ray_over_local    median epoch seconds with ray / with local (both parties; on ray each party has a
                                one-node cluster of its own with 2 CPUs, on local 2 worker processes), goal <= 1.15
  two_node                      the active party on a 2-node cluster (1 CPU each), the passive local: epoch time
                                and how the tasks and key-holder calls spread over the nodes
  speedup_1_to_2_cpus           per backend: epoch seconds with 1 worker CPU / with 2 (both parties on the machine)
  psi                           a PSI job of --psi-size IDs per party with both parties on Ray: seconds, and the peak
                                RSS of each node process and of each Ray worker process
"""
from __future__ import annotations

import argparse
import os
import shutil
import statistics
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import pandas as pd

from common import DATA, ROOT, print_json, require_data, tree_cpu_seconds

sys.path.insert(0, str(ROOT))
from tests.procs import descendants  # noqa: E402
from tests.ray_support import LoopbackCluster  # noqa: E402


def job(epochs: int) -> dict:
    return {"model": {"bottom": {"hidden": [32], "out": 16}, "interactive": {"out": 16}, "top": {"hidden": [16]}},
            "train": {"epochs": epochs, "batch_size": 512, "lr": 0.01, "interactive_lr": 0.05, "seed": 1},
            "split": {"validation": 0.0, "test": 0.2, "seed": 5},
            "crypto": {"mode": "paillier", "key_bits": 2048}, "privacy": {"defense": "none"}}


def credit_parties(rows: int | None):
    from vfl.api import Party
    guest = pd.read_csv(DATA / "default_credit_hetero_guest.csv", dtype={"id": str})
    host = pd.read_csv(DATA / "default_credit_hetero_host.csv", dtype={"id": str})
    if rows:
        keep = set(guest["id"].sample(n=min(rows, len(guest)), random_state=7))
        guest, host = guest[guest["id"].isin(keep)], host[host["id"].isin(keep)]
    return [Party("guest", guest, label="y"), Party("host", host)]


def peak_rss_mb(pid: int) -> float:
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                return round(int(line.split()[1]) / 1024, 1)
    except OSError:
        pass
    return 0.0


def train_run(label: str, parties, workdir: Path, epochs: int, workers: int, party_options: dict,
              env: dict | None = None) -> dict:
    """One training job on fresh nodes; the epoch time is the median epoch of the job."""
    from vfl.api import Federation
    saved = {k: os.environ.get(k) for k in (env or {})}
    os.environ.update(env or {})
    try:
        with Federation(parties, workdir=workdir / label, workers=workers, party_options=party_options) as fed:
            cpu0 = {name: tree_cpu_seconds(proc.pid) for name, proc in fed.processes.items()}
            t0 = time.time()
            model = fed.fit(task="binary", job_id=f"scale-{label}", progress=False, **job(epochs))
            cpu = {name: round(tree_cpu_seconds(proc.pid) - cpu0[name], 1) for name, proc in fed.processes.items()}
    finally:
        for k, v in saved.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v
    seconds = sorted(h["seconds"] for h in model.metrics["history"])
    out = {"epoch_seconds": seconds[len(seconds) // 2], "job_seconds": round(time.time() - t0, 1),
           "train_rows": model.metrics["split"]["train"], "test_auc": round(model.metrics["test"]["auc"], 4),
           "node_cpu_seconds": cpu, "compute": model.metrics.get("compute")}
    print(f"  {label}: epoch {out['epoch_seconds']:.1f} s, AUC {out['test_auc']}", file=sys.stderr, flush=True)
    return out


def ray_options(clusters: dict) -> dict:
    """party -> its own cluster: each party's Ray cluster is its own, as in production. (Two parties' nodes on one
    small cluster measured 2.2x slower than local: each node is a Ray job with its own workers, and Ray keeps only
    as many idle workers per node as it has CPUs, so the two jobs' workers were ended and restarted in turn.)"""
    return {p: {"compute": {"backend": "ray", "address": c.address}} for p, c in clusters.items()}


class PartyClusters:
    """One LoopbackCluster per party (same token for all, so one environment serves every node)."""

    def __init__(self, parties=("guest", "host"), cpus_per_node=(2,), object_store_bytes=None):
        kw = {} if object_store_bytes is None else {"object_store_bytes": object_store_bytes}
        self.clusters = {p: LoopbackCluster(cpus_per_node=cpus_per_node, **kw) for p in parties}
        first = next(iter(self.clusters.values()))
        for c in self.clusters.values():   # one token: the node processes get one environment
            c.env = first.env
            c._proc_env.update(first.env)
        self.env = first.env

    def __enter__(self) -> dict:
        started = []
        try:
            for c in self.clusters.values():
                started.append(c.start())
        except BaseException:
            for c in started:
                c.stop()
            raise
        return self.clusters

    def __exit__(self, *exc) -> None:
        for c in self.clusters.values():
            c.stop()


def psi_parties(size: int):
    from vfl.api import Party
    rng = np.random.default_rng(11)
    common = size // 2
    ids = [f"customer-{i:012d}" for i in rng.permutation(size + (size - common))]
    a, b = ids[:size], ids[size - common:]
    return [Party("guest", pd.DataFrame({"id": a, "x": 0.0, "y": 0}), label="y"),
            Party("host", pd.DataFrame({"id": b, "x": 0.0}))]


def psi_local(size: int, workdir: Path) -> dict:
    """The same PSI job on the local backend (2 workers per node), for the comparison in the same run."""
    from vfl.api import Federation
    with Federation(psi_parties(size), workdir=workdir / "psi-local", workers=2) as fed:
        t0 = time.time()
        fed.psi(job_id="scale-psi-local", progress=False)
        seconds = round(time.time() - t0, 1)
        nodes = {name: peak_rss_mb(proc.pid) for name, proc in fed.processes.items()}
    print(f"  psi local {size:,}: {seconds} s", file=sys.stderr, flush=True)
    return {"seconds": seconds, "node_peak_rss_mb": nodes}


def psi_run(size: int, workdir: Path) -> dict:
    """A PSI job of `size` IDs per party (half shared), each party on its own 2-CPU Ray cluster."""
    from vfl.api import Federation
    parties = psi_parties(size)
    pc = PartyClusters(object_store_bytes=512 * 2**20)
    with pc as clusters:
        os.environ.update(pc.env)
        with Federation(parties, workdir=workdir / "psi", workers=2, party_options=ray_options(clusters)) as fed:
            t0 = time.time()
            result = fed.psi(job_id="scale-psi", progress=False)
            seconds = round(time.time() - t0, 1)
            nodes = {name: peak_rss_mb(proc.pid) for name, proc in fed.processes.items()}
        workers = {party: sorted((peak_rss_mb(pid) for p in c.procs for pid in descendants(p.pid)), reverse=True)
                   for party, c in clusters.items()}
    print(f"  psi {size:,}: {seconds} s", file=sys.stderr, flush=True)
    return {"size": size, "intersection": result["intersection"], "seconds": seconds,
            "ids_per_second": round(2 * size / seconds), "node_peak_rss_mb": nodes,
            "ray_process_peak_rss_mb_top5": {p: w[:5] for p, w in workers.items()},
            "ray_processes": {p: len(w) for p, w in workers.items()}}


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--rows", type=int, default=None, help="subsample default_credit to this many rows")
    parser.add_argument("--epochs", type=int, default=1)
    parser.add_argument("--rounds", type=int, default=1, help="interleaved local/ray rounds for the ratio")
    parser.add_argument("--psi-size", type=int, default=1_000_000)
    parser.add_argument("--skip", default="", help="comma list of: ratio,two_node,speedup,psi")
    parser.add_argument("--psi-ray-only", action="store_true",
                        help="PSI on the Ray backend only, without the local run beside it (for sizes like 10M, "
                             "where each run takes most of an hour on 2 cores)")
    args = parser.parse_args()
    skip = set(filter(None, args.skip.split(",")))
    require_data()
    parties = credit_parties(args.rows)
    workdir = Path(tempfile.mkdtemp(prefix="vfl-scale-bench-"))
    out: dict = {"bench": "scale", "dataset": "default_credit", "rows": args.rows or "all", "key_bits": 2048,
                 "batch": 512, "epochs": args.epochs, "cpus": os.cpu_count(), "load_avg_start": os.getloadavg()}
    try:
        if "ratio" not in skip:
            local, ray_ = [], []
            pc = PartyClusters(cpus_per_node=(2,))
            with pc as clusters:
                for r in range(args.rounds):
                    local.append(train_run(f"local-{r}", parties, workdir, args.epochs, 2, {}))
                    ray_.append(train_run(f"ray-{r}", parties, workdir, args.epochs, 2, ray_options(clusters),
                                          pc.env))
            lm = statistics.median(x["epoch_seconds"] for x in local)
            rm = statistics.median(x["epoch_seconds"] for x in ray_)
            out["local"], out["ray"] = local, ray_
            out["epoch_ratio_ray_over_local"] = round(rm / lm, 3)
            out["epoch_ratio_goal"] = 1.15
        if "two_node" not in skip:
            with LoopbackCluster(cpus_per_node=(1, 1)) as cluster:
                run = train_run("two-node", parties, workdir, args.epochs, 1, ray_options({"guest": cluster}),
                                cluster.env)
            spread = run["compute"] or {}
            out["two_node"] = {**run, "tasks_per_node": spread.get("tasks_per_node"),
                               "key_calls_per_node": spread.get("key_calls_per_node")}
        if "speedup" not in skip:
            speed: dict = {}
            one = train_run("local-1cpu", parties, workdir, args.epochs, 1, {})
            two = train_run("local-2cpu", parties, workdir, args.epochs, 2, {})
            speed["local"] = {"epoch_seconds_1": one["epoch_seconds"], "epoch_seconds_2": two["epoch_seconds"],
                              "speedup": round(one["epoch_seconds"] / two["epoch_seconds"], 3)}
            runs = {}
            for cpus in (1, 2):
                pc = PartyClusters(cpus_per_node=(cpus,))
                with pc as clusters:
                    runs[cpus] = train_run(f"ray-{cpus}cpu", parties, workdir, args.epochs, 1, ray_options(clusters),
                                           pc.env)
            speed["ray"] = {"epoch_seconds_1": runs[1]["epoch_seconds"], "epoch_seconds_2": runs[2]["epoch_seconds"],
                            "speedup": round(runs[1]["epoch_seconds"] / runs[2]["epoch_seconds"], 3)}
            out["speedup_1_to_2_cpus"] = speed
        if "psi" not in skip:
            out["psi"] = psi_run(args.psi_size, workdir)
        if "psi" not in skip and not args.psi_ray_only:
            out["psi"]["local"] = psi_local(args.psi_size, workdir)
            out["psi"]["ray_over_local"] = round(out["psi"]["seconds"] / out["psi"]["local"]["seconds"], 3)
    finally:
        out["load_avg_end"] = os.getloadavg()
        shutil.rmtree(workdir, ignore_errors=True)
    print_json(out)


if __name__ == "__main__":
    main()
