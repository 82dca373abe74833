"""The bank-credit example from Python, cell by cell (paste the cells into a notebook, or run: python notebook.py).

`Federation` starts both banks' nodes as separate processes on this machine, with a development CA and mutual TLS,
from the same tables and dataset options as bank-a/node.yaml and bank-b/node.yaml. The nodes stop when the `with`
block ends (or when this process dies). EPOCHS=1 python notebook.py runs a quick version.
"""
# %% The two banks' tables: bank-a holds the label, bank-b writes its customer numbers zero-padded
import os
from pathlib import Path

import pandas as pd

from bank_models.nets import tabular_bottom   # bank-b's own bottom model (a module file, so its node imports it)
from vfl.api import Federation, Party

HERE = Path(__file__).resolve().parent
DATA = HERE / "data"
EPOCHS = int(os.environ.get("EPOCHS", "8"))


def read(name: str) -> pd.DataFrame:
    return pd.read_csv(DATA / name, dtype={"customer_id": str})   # IDs stay text: '0000104023' keeps its zeros


customers, accounts = read("bank-a/customers.csv"), read("bank-b/accounts.csv")
holdout, applicants = read("bank-a/holdout.csv"), read("bank-a/applicants.csv")

# %% One Party per bank, with the options its node.yaml gives its dataset
bank_a = Party("bank-a", customers, id_column="customer_id", label="defaulted", categorical=("housing", "region"),
               missing={"income": "median", "housing": "unknown"})
bank_b = Party("bank-b", accounts, id_column="customer_id", categorical=("card_type", "salary_deposit"),
               id_format={"integer": True}, missing={"avg_balance": "median"}, bottom=tabular_bottom)

with Federation([bank_a, bank_b], workdir=HERE / "work" / "notebook") as fed:
    # %% How many customers the banks share (nobody learns which), then the common list itself (bank-a keeps it)
    print("common customers:", fed.cardinality(progress=False)["intersection"])
    print("aligned IDs at bank-a:", fed.psi(progress=False)["aligned_ids"])

    # %% Encrypted training: bank-a's default MLP, bank-b's own tabular_bottom
    model = fed.fit(task="binary", model={"bottom": {"hidden": [32], "out": 16}, "interactive": {"out": 16},
                                          "top": {"hidden": [16]}},
                    train={"epochs": EPOCHS, "batch_size": 64, "lr": 0.01, "interactive_lr": 0.05},
                    crypto={"key_bits": 2048})
    print("test metrics:", model.metrics["test"])
    print(model.history[["loss", "validation_auc"]])   # per epoch, a DataFrame
    print("plots:", model.plots)                        # learning curves and ROC, PNG files at bank-a

    # %% Customers the model never saw: bank-a's holdout has the label, so it can be scored
    print("holdout metrics:", model.evaluate({"bank-a": holdout, "bank-b": accounts}))

    # %% New applicants (no label): one row per applicant bank-b also knows
    scores = model.predict({"bank-a": applicants, "bank-b": accounts})
    print(scores.head())
    print(f"{len(scores)} of {len(applicants)} applicants scored ({scores.attrs['unmatched_rows']} not at bank-b)")
