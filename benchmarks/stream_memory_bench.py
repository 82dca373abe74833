"""Peak memory of a party node's process for a PSI job and a prediction job, at growing table sizes.

Two party nodes (`vfl serve` processes, one worker each) on generated tables: the active party holds `id`, 8 numeric
features and a binary label, the passive party `id` and 8 numeric features; 90 % of the IDs are at both parties
(16 hex digits). A model is trained once on a small table (4,000 rows); then, for each row count, the same nodes run
a PSI job and a prediction job on tables of that many rows per party. Before each job every node process's peak
resident memory is reset (/proc/<pid>/clear_refs, 5); during the job it is polled twice a second (VmHWM). The figure
per job and party is the node process's peak; its worker processes (PSI hashing and blinding, Paillier) are
reported apart. If the node's memory is bounded, the peaks stay flat as the rows grow.

    .venv/bin/python benchmarks/stream_memory_bench.py --rows 250000,1000000,2000000
    .venv/bin/python benchmarks/stream_memory_bench.py --rows 250000 --jobs psi --crypto paillier

`--crypto plaintext` (the default here) runs the prediction's interactive layer unencrypted: what is measured is
the table's path through the node (reading, PSI, alignment, batches, the predictions file), which is the same in
both modes, and an encrypted prediction of 2M rows takes hours on this 2-core machine. Prints a JSON object on its
last line.
"""
from __future__ import annotations

import argparse
import tempfile
import threading
import time
from pathlib import Path

import numpy as np
import pandas as pd
import yaml

from common import print_json
from tests.procs import descendants, reset_peak, status_kb

FEATURES = 8
OVERLAP = 0.9
TRAIN_ROWS = 4000


def make_tables(rows: int, directory: Path, seed: int) -> dict[str, Path]:
    """Tables of `rows` rows per party, OVERLAP of the IDs common, in different row orders."""
    rng = np.random.default_rng(seed)
    common = int(rows * OVERLAP)
    universe = rng.choice(np.iinfo(np.int64).max, size=2 * rows - common, replace=False)
    ids = np.char.mod("%016x", universe)
    active_ids = ids[:rows][rng.permutation(rows)]
    passive_ids = np.concatenate([ids[:common], ids[rows:]])[rng.permutation(rows)]
    directory.mkdir(parents=True, exist_ok=True)
    paths = {}
    for party, party_ids in (("active", active_ids), ("passive", passive_ids)):
        x = rng.normal(size=(rows, FEATURES)).round(4)
        frame = pd.DataFrame(x, columns=[f"{party[0]}{k}" for k in range(FEATURES)])
        frame.insert(0, "id", party_ids)
        if party == "active":
            frame["y"] = (x[:, 0] + 0.5 * x[:, 1] > 0).astype(int)
        paths[party] = directory / f"{party}-{rows}.csv"
        frame.to_csv(paths[party], index=False)
    return paths


class PeakWatch:
    """Polls VmHWM of every node process and its workers while a job runs."""

    def __init__(self, processes: dict):
        self.processes = processes
        self.node: dict[str, int] = {}
        self.workers: dict[str, dict[int, int]] = {}
        self._done = threading.Event()
        self._thread = threading.Thread(target=self._poll, daemon=True)

    def _poll(self) -> None:
        while not self._done.is_set():
            for name, proc in self.processes.items():
                try:
                    self.node[name] = max(self.node.get(name, 0), status_kb(proc.pid, "VmHWM"))
                except OSError:
                    pass
                for pid in descendants(proc.pid):
                    try:
                        peak = status_kb(pid, "VmHWM")
                    except OSError:
                        continue
                    own = self.workers.setdefault(name, {})
                    own[pid] = max(own.get(pid, 0), peak)
            time.sleep(0.5)

    def __enter__(self) -> "PeakWatch":
        for proc in self.processes.values():
            for pid in [proc.pid, *descendants(proc.pid)]:
                try:
                    reset_peak(pid)
                except OSError:
                    pass
        self._thread.start()
        return self

    def __exit__(self, *exc) -> None:
        time.sleep(1.0)
        self._done.set()
        self._thread.join()


def add_dataset(fed, name: str, paths: dict[str, Path], labelled: bool) -> None:
    """Register a table at each node (nodes read their dataset list at every job)."""
    for party in ("active", "passive"):
        config = yaml.safe_load(fed.configs[party].read_text())
        entry = {"path": str(paths[party]), "id": "id"}
        if party == "active" and labelled:
            entry["label"] = "y"
        config["datasets"][name] = entry
        fed.configs[party].write_text(yaml.safe_dump(config, sort_keys=False))


def run_job(fed, spec: dict) -> dict:
    before = {name: round(status_kb(proc.pid, "VmRSS") / 1024) for name, proc in fed.processes.items()}
    cpu_before = {name: cpu_seconds(proc.pid) for name, proc in fed.processes.items()}
    start = time.time()
    with PeakWatch(fed.processes) as watch:
        result = fed.run(spec, progress=False)
    out = {"seconds": round(time.time() - start, 1)}
    for name, proc in fed.processes.items():
        out[name] = {"rss_before_mb": before[name], "node_peak_mb": round(watch.node.get(name, 0) / 1024),
                     "worker_peaks_mb": sorted(round(v / 1024) for v in watch.workers.get(name, {}).values()),
                     "node_cpu_seconds": round(cpu_seconds(proc.pid) - cpu_before[name], 1)}
    out["intersection"] = result.get("intersection", result.get("rows"))
    return out


def cpu_seconds(pid: int) -> float:
    import os
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def main() -> None:
    from vfl.api import Federation, Party, job_spec
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rows", default="250000,1000000,2000000", help="comma-separated rows per party")
    parser.add_argument("--jobs", default="psi,predict", help="which of psi, predict")
    parser.add_argument("--crypto", default="plaintext", choices=("plaintext", "paillier"))
    parser.add_argument("--workdir", default=None, help="where the tables and nodes live (default: a temp dir)")
    args = parser.parse_args()
    row_counts = [int(r) for r in args.rows.split(",")]
    jobs = args.jobs.split(",")
    result: dict = {"bench": "stream_memory", "features_per_party": FEATURES, "overlap": OVERLAP,
                    "crypto": args.crypto, "workers": 1, "jobs": {}}
    with tempfile.TemporaryDirectory(prefix="vfl-stream-bench-", dir=args.workdir) as tmp:
        workdir = Path(tmp)
        train = make_tables(TRAIN_ROWS, workdir / "data", seed=1)
        parties = [Party("active", str(train["active"]), label="y"), Party("passive", str(train["passive"]))]
        crypto = {"mode": args.crypto, **({"key_bits": 1024} if args.crypto == "paillier" else {})}
        with Federation(parties, workdir=workdir / "fed", workers=1) as fed:
            time.sleep(2.0)
            model = fed.fit(job_id="model", progress=False, crypto=crypto, train={"epochs": 1, "batch_size": 256},
                            model={"bottom": {"hidden": [16], "out": 8}, "interactive": {"out": 8},
                                   "top": {"hidden": [8]}})
            for rows in row_counts:
                paths = make_tables(rows, workdir / "data", seed=rows)
                add_dataset(fed, f"t{rows}", paths, labelled=False)
                parties_of = {"active": f"t{rows}", "passive": f"t{rows}"}
                for kind in jobs:
                    job_id = f"{kind}-{rows}"
                    if kind == "psi":
                        spec = job_spec("psi", parties_of, "active", job_id)
                    else:
                        spec = job_spec("predict", parties_of, "active", job_id, model_job=model.job_id)
                    measured = run_job(fed, spec)
                    result["jobs"].setdefault(kind, {})[rows] = measured
                    print(kind, rows, measured, flush=True)
                for path in paths.values():
                    path.unlink()
    print_json(result)


if __name__ == "__main__":
    main()
