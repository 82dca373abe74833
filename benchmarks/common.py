"""Shared helpers for the training benchmarks: the FATE tables in ../shared/data as vfl parties."""
from __future__ import annotations

import json
import os
import sys
from pathlib import Path

import numpy as np
import pandas as pd

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
from tests.procs import descendants  # noqa: E402  (shared with the tests)

DATA = Path(os.environ.get("VFL_SHARED_DATA", ROOT.parent / "shared" / "data"))

# name -> (task, id column, label, [(party, file)])  the first party holds the label
TABLES = {
    "breast": ("binary", "id", "y", [("guest", "breast_hetero_guest.csv"), ("host", "breast_hetero_host.csv")]),
    "default_credit": ("binary", "id", "y", [("guest", "default_credit_hetero_guest.csv"),
                                             ("host", "default_credit_hetero_host.csv")]),
    "vehicle_scale": ("multiclass", "id", "y", [("guest", "vehicle_scale_hetero_guest.csv"),
                                                ("host", "vehicle_scale_hetero_host.csv")]),
    "motor": ("regression", "idx", "motor_speed", [("guest", "motor_hetero_guest.csv"),
                                                   ("host-1", "motor_hetero_host_1.csv"),
                                                   ("host-2", "motor_hetero_host_2.csv")]),
}


def require_data() -> None:
    if not DATA.is_dir():
        sys.exit(f"benchmark data not found at {DATA} (set VFL_SHARED_DATA)")


def parties(name: str):
    """vfl.api.Party objects for a table (label at the first party)."""
    from vfl.api import Party
    task, id_col, label, files = TABLES[name]
    out = []
    for i, (party, file) in enumerate(files):
        frame = pd.read_csv(DATA / file, dtype={id_col: str})
        out.append(Party(party, frame, id_column=id_col, label=label if i == 0 else None))
    return out


def centralized(name: str, spec_dict: dict, initial=None) -> dict:
    """The same architecture trained on pooled columns of the common rows, same split and batch order;
    `initial` (vfl.baseline.initial_state) pairs it with an encrypted run's initial weights."""
    from vfl.baseline import train_centralized
    from vfl.data import load_party_table
    from vfl.job.spec import parse_job_spec
    task, id_col, label, files = TABLES[name]
    spec = parse_job_spec(spec_dict)
    tables = {}
    for i, (party, file) in enumerate(files):
        tables[party] = load_party_table(DATA / file, id_column=id_col, label=label if i == 0 else None, task=task)
    common = sorted(set.intersection(*(set(t.ids) for t in tables.values())))
    aligned = {p: t.take([list(t.ids).index(c) for c in common]) if len(t) < 2000 else
               t.take(pd.Series(range(len(t)), index=t.ids).loc[common].to_numpy()) for p, t in tables.items()}
    guest = aligned[files[0][0]]
    classes = len(guest.schema.label_classes) if task == "multiclass" else None
    return train_centralized(spec, np.array(common), {p: t.features for p, t in aligned.items()}, guest.label,
                             num_classes=classes, initial=initial)


def print_json(obj: dict) -> None:
    print(json.dumps(obj, sort_keys=True, default=str))


def _proc_cpu_seconds(pid: int) -> float:
    """utime + stime of one live process plus cutime + cstime (its children that exited and were reaped, e.g. a
    worker pool already shut down), from /proc (Linux). Live children are not in cutime, so nothing counts twice."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return sum(int(f) for f in fields[11:15]) / os.sysconf("SC_CLK_TCK")


def tree_cpu_seconds(pid: int) -> float:
    """CPU seconds used so far by a process and its live descendants (e.g. a node and its Paillier worker pool).

    Unlike wall time, this hardly moves when other work loads the machine, so two runs of the same job on a
    shared machine can be compared by it (a difference of more than a few percent is a real one).
    """
    total = 0.0
    for p in [pid, *descendants(pid)]:
        try:
            total += _proc_cpu_seconds(p)
        except (OSError, IndexError, ValueError):
            pass  # a process that just exited
    return total
