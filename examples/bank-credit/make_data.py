"""Writes the two banks' tables under data/ (the committed copies come from this script; rerun it to regenerate).

    python make_data.py            # writes data/bank-a/*.csv and data/bank-b/accounts.csv

The people are synthetic, drawn from one seeded generator, so the tables are the same on every machine. Whether a
customer defaults depends on columns that *both* banks hold (how much of their credit line they use and their
income at bank-a; late payments, overdrafts and balances at bank-b), which is why training on the two together
beats either bank alone.

bank-a (the lender, active party, holds the label `defaulted`):
  customers.csv   1400 customers it trains on
  holdout.csv      250 other customers, labelled: `vfl run jobs/evaluate.yaml` scores the model on them
  applicants.csv   200 new applicants, no label: `vfl run jobs/predict.yaml` scores them
bank-b (a second bank, passive party): accounts.csv, about 85 % of bank-a's people plus 300 of its own.

What a real extract looks like, on purpose:
  * bank-b writes customer numbers zero-padded to ten digits ('0000104023'); its node config's
    `id_format: {integer: true}` turns them into bank-a's '104023' before PSI;
  * some incomes, housing answers and balances are missing; the node configs say how to fill them (`missing:`);
  * region, housing, card type and salary deposit are categories (one-hot encoded by each bank's own node).
"""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd

SEED = 20261206
PEOPLE = 2400
TRAIN, HOLDOUT, APPLICANTS = 1400, 250, 200
HERE = Path(__file__).resolve().parent


def people(rng: np.random.Generator) -> pd.DataFrame:
    """Every column of every person, and whether they default (a logistic model over both banks' columns)."""
    n = PEOPLE
    age = rng.integers(21, 76, n)
    income = np.round(rng.lognormal(np.log(48), 0.45, n), 1)                       # thousands a year
    housing = rng.choice(["own", "mortgage", "rent"], n, p=[0.3, 0.35, 0.35])
    region = rng.choice(["north", "south", "east", "west", "central"], n)
    limit = np.round(income * rng.uniform(0.1, 0.4, n), 1)                          # thousands
    utilization = np.clip(rng.beta(2, 3, n) * 1.2, 0, 1.2).round(3)
    months = rng.integers(3, 240, n)
    late = rng.poisson(0.4 + 1.6 * utilization, n)
    overdrafts = rng.poisson(0.3 + 0.02 * np.maximum(0, 60 - income), n)
    balance = np.round(rng.lognormal(np.log(6 + income / 8), 0.8, n), 2)             # thousands
    accounts = 1 + rng.poisson(1.2, n)
    card = rng.choice(["no-card", "classic", "gold", "platinum"], n, p=[0.2, 0.5, 0.22, 0.08])
    salary = rng.choice(["yes", "no"], n, p=[0.55, 0.45])
    logit = (-2.2 + 2.4 * (utilization - 0.48) - 0.035 * (income - 50) + 0.55 * late + 0.35 * overdrafts
             - 0.09 * np.log1p(balance) * 3 - 0.012 * (age - 45) + 0.35 * (housing == "rent")
             - 0.3 * (salary == "yes") - 0.002 * months)
    defaulted = (rng.random(n) < 1 / (1 + np.exp(-logit))).astype(int)
    ids = rng.choice(np.arange(100_000, 999_999), n, replace=False)
    return pd.DataFrame({"customer_id": ids, "age": age, "income": income, "housing": housing, "region": region,
                         "credit_limit": limit, "utilization": utilization, "months_on_book": months,
                         "defaulted": defaulted, "n_accounts": accounts, "avg_balance": balance,
                         "overdrafts_12m": overdrafts, "late_payments_12m": late, "card_type": card,
                         "salary_deposit": salary})


def blank(frame: pd.DataFrame, column: str, share: float, rng: np.random.Generator) -> None:
    """Empty a share of a column's cells, as an export of a half-filled form would."""
    rows = rng.random(len(frame)) < share
    frame[column] = frame[column].astype(object)
    frame.loc[rows, column] = ""


def bank_tables(seed: int = SEED) -> dict[str, pd.DataFrame]:
    """{file name under data/: table}."""
    rng = np.random.default_rng(seed)
    everyone = people(rng)
    a_cols = ["customer_id", "age", "income", "housing", "region", "credit_limit", "utilization", "months_on_book"]
    b_cols = ["customer_id", "n_accounts", "avg_balance", "overdrafts_12m", "late_payments_12m", "card_type",
              "salary_deposit"]
    a = everyone[a_cols + ["defaulted"]].copy()
    blank(a, "income", 0.08, rng)
    blank(a, "housing", 0.05, rng)
    train = a.iloc[:TRAIN]
    holdout = a.iloc[TRAIN:TRAIN + HOLDOUT]
    applicants = a.iloc[TRAIN + HOLDOUT:TRAIN + HOLDOUT + APPLICANTS].drop(columns=["defaulted"])
    at_a = TRAIN + HOLDOUT + APPLICANTS
    keep = np.concatenate([rng.random(at_a) < 0.85, np.ones(300, dtype=bool), np.zeros(PEOPLE - at_a - 300, bool)])
    b = everyone.loc[keep, b_cols].copy()
    blank(b, "avg_balance", 0.06, rng)
    b["customer_id"] = b["customer_id"].map(lambda v: f"{v:010d}")
    b = b.sample(frac=1.0, random_state=seed % 1000)                         # bank-b keeps its own row order
    return {"bank-a/customers.csv": train, "bank-a/holdout.csv": holdout, "bank-a/applicants.csv": applicants,
            "bank-b/accounts.csv": b}


def write(directory: Path = HERE / "data") -> list[Path]:
    written = []
    for name, table in bank_tables().items():
        path = directory / name
        path.parent.mkdir(parents=True, exist_ok=True)
        table.to_csv(path, index=False)
        written.append(path)
    return written


if __name__ == "__main__":
    for path in write():
        print(path)
