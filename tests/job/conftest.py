"""Whole jobs in one process (tests/job/local.py): the real runtimes and messages, no nodes or sockets."""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import yaml

from vfl.job.spec import parse_job_spec
from vfl.node.config import parse_node_config

JOB = {"active": "guest", "task": "binary",
       "parties": {"guest": {"dataset": "table"}, "host": {"dataset": "table"}},
       "model": {"bottom": {"hidden": [8], "out": 4}, "interactive": {"out": 4}, "top": {"hidden": [8]}},
       "train": {"epochs": 3, "batch_size": 64, "lr": 0.05, "interactive_lr": 0.1, "seed": 1},
       "split": {"validation": 0.1, "test": 0.25, "seed": 2},
       "crypto": {"key_bits": 1024}}


def breast_tables() -> tuple[pd.DataFrame, pd.DataFrame]:
    """scikit-learn's breast cancer table split by columns; the host lacks 30 of the guest's patients."""
    from sklearn.datasets import load_breast_cancer
    data = load_breast_cancer()
    ids = [f"patient-{i:04d}" for i in range(len(data.target))]
    x = pd.DataFrame(data.data, columns=[f"f{i}" for i in range(data.data.shape[1])])
    guest = pd.concat([pd.DataFrame({"id": ids, "y": data.target}), x.iloc[:, :10]], axis=1)
    host = pd.concat([pd.DataFrame({"id": ids}), x.iloc[:, 10:]], axis=1)
    host = host.drop(index=np.random.default_rng(5).choice(len(host), 30, replace=False)).sample(frac=1, random_state=6)
    return guest, host


@pytest.fixture
def configs(tmp_path: Path) -> dict:
    """Node configs of the two parties, each with its own data and jobs directory (plaintext allowed for tests)."""
    return local_configs(tmp_path)


def local_configs(tmp_path: Path) -> dict:
    """The `configs` fixture as a function, for tests that need the configs outside a fixture."""
    guest, host = breast_tables()
    out = {}
    for name, table, label in (("guest", guest, "y"), ("host", host, None)):
        home = tmp_path / name
        (home / "data").mkdir(parents=True)
        table.to_csv(home / "data" / "table.csv", index=False)
        dataset = {"path": "table.csv", "id": "id", **({"label": label} if label else {})}
        out[name] = parse_node_config({"party": name, "role": "active" if label else "passive", "insecure": True,
                                       "datasets": {"table": dataset}, "policy": {"allow_plaintext": True,
                                                                                  "min_key_bits": 1024},
                                       "workers": 1}, home)
    return out


def job_spec(job_id: str, **changes) -> object:
    spec = yaml.safe_load(yaml.safe_dump(JOB))
    for key, value in changes.items():
        section, _, field = key.partition("__")
        if field:
            spec.setdefault(section, {})[field] = value
        else:
            spec[section] = value
    spec["job_id"] = job_id
    return parse_job_spec(spec)
