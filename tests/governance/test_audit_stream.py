"""The data audit a job runs reads its table in chunks (vfl/governance/audit.py audit_stream): the whole table's
report up to JOB_AUDIT_MAX_ROWS rows; above, the column statistics over an even sample and k over every row."""
from __future__ import annotations

import dataclasses

import numpy as np
import pandas as pd

from vfl.data.dataset import DatasetConfig
from vfl.governance.audit import audit_frame, audit_stream, even_positions


def table(tmp_path, rows: int) -> DatasetConfig:
    rng = np.random.default_rng(rows)
    frame = pd.DataFrame({"id": [f"c-{i:06d}" for i in range(rows)], "age": rng.integers(18, 30, rows),
                          "zip": rng.choice(["10115", "10117", "80331"], rows), "email": [f"p{i}@bank.example"
                                                                                        for i in range(rows)],
                          "balance": rng.normal(size=rows).round(2), "y": rng.integers(0, 2, rows)})
    frame.loc[rows // 3, "balance"] = None
    path = tmp_path / "t.csv"
    frame.to_csv(path, index=False)
    return DatasetConfig(name="t", path=path, id_column="id", label="y")


def without_time(report) -> dict:
    return {k: v for k, v in dataclasses.asdict(report).items() if k != "audited_at"}


def test_a_table_up_to_the_bound_gets_the_whole_tables_report(tmp_path):
    from vfl.data.readers import read_frame
    ds = table(tmp_path, 700)
    streamed = audit_stream(ds, max_rows=1000, chunk_rows=64)
    assert without_time(streamed) == without_time(audit_frame(read_frame(ds.path), ds))
    assert streamed.column_sample_rows is None and streamed.pii_features()


def test_a_longer_table_is_sampled_evenly_and_k_covers_every_row(tmp_path):
    from vfl.data.readers import read_frame
    ds = table(tmp_path, 5000)
    streamed = audit_stream(ds, max_rows=400, chunk_rows=333)
    whole = read_frame(ds.path)
    sample = whole.iloc[even_positions(len(whole), 400)]
    expected = audit_frame(sample, ds)
    assert streamed.rows == 5000 and streamed.column_sample_rows == 400
    assert streamed.columns == expected.columns                      # the columns' statistics: the even sample's
    assert streamed.quasi_identifiers == audit_frame(whole, ds).quasi_identifiers   # k: every row's
    assert "email" in {f.column for f in streamed.pii_features()}
    assert "over an even sample of 400 rows" in streamed.to_text()
