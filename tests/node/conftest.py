from __future__ import annotations

from pathlib import Path

import pandas as pd
import pytest

SHARED = Path(__file__).resolve().parents[3] / "shared" / "data"


def breast_parties(drop_host: float = 0.1, id_prefix: str = ""):
    """breast from ../shared/data with the host missing some rows, so PSI matters.

    With `id_prefix`, IDs become long distinctive strings, so a search of the wire for raw IDs means something.
    """
    from vfl.api import Party
    if not SHARED.is_dir():
        pytest.skip("../shared/data is not available")
    guest = pd.read_csv(SHARED / "breast_hetero_guest.csv", dtype={"id": str})
    host = pd.read_csv(SHARED / "breast_hetero_host.csv", dtype={"id": str})
    host = host.sample(frac=1 - drop_host, random_state=3)
    if id_prefix:
        guest["id"] = id_prefix + guest["id"].str.zfill(6)
        host["id"] = id_prefix + host["id"].str.zfill(6)
    return [Party("guest", guest, label="y"), Party("host", host)]


SMALL_JOB = {"model": {"bottom": {"hidden": [16], "out": 8}, "interactive": {"out": 8}, "top": {"hidden": [8]}},
             "train": {"epochs": 3, "batch_size": 64, "lr": 0.01, "interactive_lr": 0.1, "seed": 2},
             "split": {"validation": 0.1, "test": 0.25, "seed": 4},
             "crypto": {"key_bits": 1024}}
