"""The personal-data detectors on a labelled corpus (precision and recall per detector), and on whole columns."""
from __future__ import annotations

import datetime as dt
import glob
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from tests.governance.corpus import negatives, positives
from vfl.data.dataset import DatasetConfig
from vfl.data.readers import read_frame
from vfl.governance import detectors
from vfl.governance.audit import audit_frame

RULES = {"person_name": detectors.is_person_name, "email": detectors.is_email, "iban": detectors.is_iban,
         "card_number": detectors.is_card_number, "national_id": detectors.is_national_id,
         "phone": detectors.is_phone, "free_text": detectors.is_free_text}
#: what docs/governance.md promises per value, measured on this corpus
MIN_PRECISION, MIN_RECALL = 0.95, 0.95
TODAY = dt.date(2026, 12, 6)


def scores(name: str) -> tuple[float, float]:
    pos, rule = positives(), RULES[name]
    others = [v for other, values in pos.items() if other != name for v in values] + negatives()
    tp = sum(rule(v) for v in pos[name])
    fp = sum(rule(v) for v in others)
    return tp / max(tp + fp, 1), tp / len(pos[name])


@pytest.mark.parametrize("name", sorted(RULES))
def test_value_detector_precision_and_recall(name):
    precision, recall = scores(name)
    print(f"{name}: precision {precision:.3f} recall {recall:.3f}")
    assert precision >= MIN_PRECISION and recall >= MIN_RECALL, (name, precision, recall)


def test_the_corpus_can_fail_a_detector():
    """Control: a careless rule (anything with '@' is an e-mail) loses precision on the same corpus."""
    pos, careless = positives(), (lambda v: "@" in v)
    fp = sum(careless(v) for v in negatives())
    tp = sum(careless(v) for v in pos["email"])
    assert tp / (tp + fp) < MIN_PRECISION


def column_frame() -> pd.DataFrame:
    rng = np.random.default_rng(1)
    pos = positives()
    n = 40
    born = [(dt.date(1940, 1, 1) + dt.timedelta(days=int(d))).isoformat() for d in rng.integers(0, 25000, n)]
    visits = [(dt.date(2024, 1, 1) + dt.timedelta(days=int(d))).isoformat() for d in rng.integers(0, 600, n)]
    return pd.DataFrame({
        "id": [f"c{i}" for i in range(n)],
        "holder": [pos["person_name"][i % len(pos["person_name"])] for i in range(n)],
        "contact": [pos["email"][i % len(pos["email"])] for i in range(n)],
        "ref_b": [pos["iban"][i % len(pos["iban"])] for i in range(n)],
        "x_card": [pos["card_number"][i % len(pos["card_number"])] for i in range(n)],
        "x_nat": [pos["national_id"][i % len(pos["national_id"])] for i in range(n)],
        "x_tel": [pos["phone"][i % len(pos["phone"])] for i in range(n)],
        "born": born,
        "visit": visits,
        "customer_email_hash": [f"{rng.integers(2**62):x}" for _ in range(n)],   # hashed: found by name only
        "city": [["New York", "San Diego", "Los Angeles"][i % 3] for i in range(n)],  # capitalized, repeated
        "income": [f"{v:.2f}" for v in rng.uniform(1000, 9000, n)],
        "flag": ["1"] * n,
        "y": [str(i % 2) for i in range(n)],
    })


def test_each_detector_finds_its_column_and_nothing_else():
    frame = column_frame()
    report = audit_frame(frame, DatasetConfig("t", Path("t.csv"), "id", label="y"), TODAY)
    found = {c.name: sorted(f.detector for f in c.findings) for c in report.columns}
    assert found == {"id": [], "holder": ["person_name"], "contact": ["email"], "ref_b": ["iban"],
                     "x_card": ["card_number"], "x_nat": ["national_id"], "x_tel": ["phone"],
                     "born": ["date_of_birth"], "visit": [], "customer_email_hash": ["email"], "city": [],
                     "income": [], "flag": [], "y": []}
    by = {c.name: c.findings[0].evidence for c in report.columns if c.findings}
    assert by["customer_email_hash"] == "column name" and by["contact"] == "values"
    flag = next(c for c in report.columns if c.name == "flag")
    assert flag.constant and not flag.near_constant


@pytest.mark.parametrize("column,expected", [
    ("first_name", ["person_name"]), ("LastName", ["person_name"]), ("customer name", ["person_name"]),
    ("E-Mail", ["email"]), ("mobile_phone", ["phone"]), ("SSN", ["national_id"]),
    ("passport_no", ["national_id"]), ("credit_card_number", ["card_number"]), ("IBAN", ["iban"]),
    ("DateOfBirth", ["date_of_birth"]), ("dob", ["date_of_birth"]), ("home_address", ["street_address"]),
    ("product_name", []), ("age", []), ("zip", []), ("limit_bal", []), ("pay_amt1", []), ("x0", []),
    ("telemetry", []), ("name_length", []), ("mailing_opt_in", []),
])
def test_column_names(column, expected):
    assert detectors.by_name(column) == expected


@pytest.mark.skipif(not Path("/work/shared/data").exists() and not glob.glob("../shared/data/*.csv"),
                    reason="the shared benchmark tables are not on this machine")
def test_no_finding_on_the_shipped_and_shared_tables():
    """Column-level false positives: none on the public tables the benchmarks use and the examples ship."""
    root = Path(__file__).resolve().parents[2]
    files = sorted(glob.glob(str(root / "examples/*/data/*/*.csv")) + glob.glob(str(root.parent / "shared/data/*.csv")))
    assert len(files) >= 10
    for f in files:
        frame = read_frame(f)
        report = audit_frame(frame, DatasetConfig("t", Path(f), str(frame.columns[0])), TODAY)
        assert report.pii_features() == [], f


def test_quasi_identifiers_smallest_group():
    frame = pd.DataFrame({"id": list("abcdefg"), "age": ["30", "30", "30", "41", "41", "52", "52"],
                          "sex": ["F", "F", "F", "M", "M", "F", "M"], "score": ["1"] * 7})
    q = audit_frame(frame, DatasetConfig("t", Path("t.csv"), "id"), TODAY).quasi_identifiers
    assert q.columns == ("age", "sex") and q.smallest_group == 1 and q.rows_in_small_groups == 7
