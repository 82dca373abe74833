"""One real three-party job (active + two passives), recorded, for every training adversary.

Each node is a separate `vfl serve` process with mutual TLS, started by `vfl.api.Federation` through the
test-only key spy (tests/node/keyspy_launcher.py: records each party's Paillier private key and its inputs to
each homomorphic step) with the opt-in wire recorder on. The job is a default-spec training job except for
sizes that keep it quick: 1024-bit keys, d = m = 8, one epoch, the default privacy defense (marvell).

Three runs of the same spec: `seeded` gives every node its own node-local secret seed (as the paired
benchmarks and reproducible tests do), `os` and `os-replay` give none (production). The adversaries face the
first two; the replay test compares the last two.
"""
from __future__ import annotations

import copy
from pathlib import Path

import pandas as pd
import pytest

from tests.adversary.roles import RecordedRun
from tests.node.conftest import SHARED
from tests.node.test_wire import LAUNCHER as KEYSPY
from tests.procs import NodesThrough

JOB_ID = "adversary"
ACTIVE = "guest"
PASSIVES = ("clinic", "lab")
JOB = {"model": {"bottom": {"hidden": [16], "out": 8}, "interactive": {"out": 8}, "top": {"hidden": [8]}},
       "train": {"epochs": 1, "batch_size": 64, "lr": 0.01, "interactive_lr": 0.1, "seed": 2},
       "split": {"validation": 0.1, "test": 0.25, "seed": 4},
       "crypto": {"key_bits": 1024}}


def three_parties():
    """breast: the guest keeps its 10 columns and the label; the host's 20 columns go to two passive parties,
    each missing some patients, so PSI matters."""
    from vfl.api import Party
    if not SHARED.is_dir():
        pytest.skip("../shared/data is not available")
    guest = pd.read_csv(SHARED / "breast_hetero_guest.csv", dtype={"id": str})
    host = pd.read_csv(SHARED / "breast_hetero_host.csv", dtype={"id": str})
    for table in (guest, host):  # long distinctive IDs, so a search of what a party holds for them means something
        table["id"] = "patient-record-" + table["id"].str.zfill(6)
    clinic = host[["id"] + [f"x{i}" for i in range(12)]].sample(frac=0.92, random_state=1)
    lab = host[["id"] + [f"x{i}" for i in range(12, 20)]].sample(frac=0.9, random_state=2)
    return [Party(ACTIVE, guest, label="y"), Party("clinic", clinic), Party("lab", lab)]


def record_run(workdir: Path, secret_seed: int | None) -> RecordedRun:
    import vfl.api
    from vfl.api import Federation
    record_dir, spy_dir = workdir / "wire", workdir / "keyspy"
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("VFL_WIRE_RECORD_DIR", str(record_dir))
        mp.setenv("VFL_KEYSPY_DIR", str(spy_dir))
        mp.setenv("VFL_KEYSPY_MUTATION", "")
        mp.setattr(vfl.api, "subprocess", NodesThrough(KEYSPY))
        with Federation(three_parties(), workdir=workdir / "fed", secret_seed=secret_seed) as fed:
            fed.fit(task="binary", job_id=JOB_ID, progress=False, **copy.deepcopy(JOB))
    return RecordedRun(workdir=workdir / "fed", record_dir=record_dir, spy_dir=spy_dir, job_id=JOB_ID,
                       active=ACTIVE, passives=PASSIVES)


@pytest.fixture(scope="session")
def runs(tmp_path_factory) -> dict[str, RecordedRun]:
    base = tmp_path_factory.mktemp("adversary")
    return {"seeded": record_run(base / "seeded", secret_seed=20261206),
            "os": record_run(base / "os", secret_seed=None),
            "os-replay": record_run(base / "os-replay", secret_seed=None)}


@pytest.fixture(scope="session", params=["seeded", "os"])
def run(request, runs) -> RecordedRun:
    return runs[request.param]
