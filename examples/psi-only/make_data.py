"""Writes the two organizations' customer lists under data/ (the committed copies come from this script).

    python make_data.py

shop-a, a retailer, lists 5000 loyalty-card customers as 'C-00012345'. bank-b lists 8000 clients and writes the
same kind of number its own way: lower case with trailing spaces ('c-00012345  '), as a fixed-width export does.
1800 people are customers of both. bank-b's node config turns its IDs into shop-a's form (`id_format`), so PSI
matches them; no ID leaves either organization.
"""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd

SEED = 4242
HERE = Path(__file__).resolve().parent
SHOP, BANK, COMMON = 5000, 8000, 1800


def lists(seed: int = SEED) -> dict[str, pd.DataFrame]:
    rng = np.random.default_rng(seed)
    numbers = rng.choice(np.arange(1, 99_999_999), SHOP + BANK - COMMON, replace=False)
    shop = numbers[:SHOP]
    bank = np.concatenate([numbers[:COMMON], numbers[SHOP:]])
    shop_ids = [f"C-{n:08d}" for n in shop]
    bank_ids = [f"c-{n:08d}" + " " * int(rng.integers(0, 3)) for n in rng.permutation(bank)]
    since = rng.integers(2005, 2027, len(shop_ids))
    return {"shop-a/customers.csv": pd.DataFrame({"customer_id": shop_ids, "member_since": since}),
            "bank-b/clients.csv": pd.DataFrame({"client_ref": bank_ids})}


def write(directory: Path = HERE / "data") -> list[Path]:
    written = []
    for name, table in lists().items():
        path = directory / name
        path.parent.mkdir(parents=True, exist_ok=True)
        table.to_csv(path, index=False)
        written.append(path)
    return written


if __name__ == "__main__":
    for path in write():
        print(path)
