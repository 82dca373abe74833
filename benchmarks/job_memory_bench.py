"""Peak memory of one job at each node: the README's small spec, and a spec at the default policy caps.

Two party nodes (`vfl serve` processes) on default_credit's first --rows rows, one epoch, 2048-bit keys. Before
each job: every node's resident memory (VmRSS of the node and its worker processes). During it, polled twice a
second: every process's peak resident memory (VmHWM). A job's figure is the sum of its node's peaks minus the
resident memory before the job, an upper bound (the peaks of a node and its workers need not coincide). Each spec
runs on fresh nodes, so start-up costs of the first job (lazy imports, torch's allocator) are included.
Prints a JSON object on its last line, with the largest job figure against the bound docs/operations.md ("Memory
per job") documents (`within_documented_bound`); that section quotes a run. `make bench` runs it.

    .venv/bin/python benchmarks/job_memory_bench.py --rows 12000            # about 6 minutes on 2 cores
"""
from __future__ import annotations

import argparse
import tempfile
import threading
import time
from pathlib import Path

import pandas as pd

from common import DATA, print_json, require_data
from tests.procs import descendants

#: docs/operations.md ("Memory per job"): plan for about 1 GB per job at the default policy caps
DOCUMENTED_BOUND_MB = 1024

SPECS = {
    "readme": {"model": {"bottom": {"hidden": [32], "out": 16}, "interactive": {"out": 16}, "top": {"hidden": [16]}},
               "train": {"epochs": 1, "batch_size": 512}},
    # the default caps: 1024-wide layers (3 stay under max_parameters with the top model), the widest bottom and
    # interactive outputs that fit a 2048-bit key at the default precision (34), the largest batch
    "caps": {"model": {"bottom": {"hidden": [1024, 1024, 1024], "out": 34}, "interactive": {"out": 34},
                       "top": {"hidden": [1024]}},
             "train": {"epochs": 1, "batch_size": 8192}},
}


def process_tree(pid: int) -> list[int]:
    return [pid, *descendants(pid)]


def status_mb(pid: int, key: str) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith(key + ":"):
            return int(line.split()[1]) / 1024
    return 0.0


class PeakWatch:
    """Polls the peak resident memory of every process of every node until stopped."""

    def __init__(self, processes: dict):
        self.processes = processes
        self.peaks: dict[tuple[str, int], float] = {}
        self._done = threading.Event()
        self._thread = threading.Thread(target=self._poll, daemon=True)

    def _poll(self) -> None:
        while not self._done.is_set():
            for name, proc in self.processes.items():
                for pid in process_tree(proc.pid):
                    try:
                        self.peaks[(name, pid)] = max(self.peaks.get((name, pid), 0.0), status_mb(pid, "VmHWM"))
                    except OSError:  # a worker that just ended
                        pass
            time.sleep(0.5)

    def __enter__(self) -> "PeakWatch":
        self._thread.start()
        return self

    def __exit__(self, *exc) -> None:
        time.sleep(1.0)
        self._done.set()
        self._thread.join()


def measure(spec: dict, rows: int) -> dict:
    from vfl.api import Federation, Party
    guest = pd.read_csv(DATA / "default_credit_hetero_guest.csv", dtype={"id": str}).head(rows)
    host = pd.read_csv(DATA / "default_credit_hetero_host.csv", dtype={"id": str})
    host = host[host["id"].isin(set(guest["id"]))]
    with tempfile.TemporaryDirectory(prefix="vfl-memory-bench-") as workdir, \
            Federation([Party("guest", guest, label="y"), Party("host", host)], workdir=workdir, workers=1) as fed:
        time.sleep(2.0)
        before = {n: sum(status_mb(p, "VmRSS") for p in process_tree(proc.pid)) for n, proc in fed.processes.items()}
        start = time.time()
        with PeakWatch(fed.processes) as watch:
            model = fed.fit(job_id="memory-1", progress=False, **spec)
        out = {"seconds": round(time.time() - start, 1), "test": model.metrics.get("test")}
        for name, proc in fed.processes.items():
            own = [v for (n, p), v in watch.peaks.items() if n == name]
            node = watch.peaks.get((name, proc.pid), 0.0)
            out[name] = {"before_mb": round(before[name]), "job_mb": round(sum(own) - before[name]),
                         "node_process_peak_mb": round(node), "worker_peaks_mb": sorted(round(v) for (n, p), v in
                                                                                        watch.peaks.items()
                                                                                        if n == name and p != proc.pid)}
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rows", type=int, default=12000, help="default_credit rows (>= 12000 for a full batch)")
    parser.add_argument("--specs", default=",".join(SPECS), help=f"which of {sorted(SPECS)}")
    args = parser.parse_args()
    require_data()
    result = {"bench": "job_memory", "rows": args.rows, "key_bits": 2048}
    for name in args.specs.split(","):
        result[name] = {"spec": SPECS[name], **measure(SPECS[name], args.rows)}
    # the documented bound, checked against every job's figure at every node
    result["documented_bound_mb"] = DOCUMENTED_BOUND_MB
    result["largest_job_mb"] = max(result[name][party]["job_mb"] for name in args.specs.split(",")
                                   for party in ("guest", "host"))
    result["within_documented_bound"] = result["largest_job_mb"] <= DOCUMENTED_BOUND_MB
    print_json(result)


if __name__ == "__main__":
    main()
