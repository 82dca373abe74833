"""iter_id_chunks: IDs of large files in chunks, with the same empty-ID checks and file-wide row numbers."""
from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from vfl.data import iter_id_chunks
from vfl.errors import DataError

from .conftest import assert_names

IDS = [f"{k:03d}" for k in range(10)] + ["Zoë"]


def csv_text(ids):
    return "x,id\n" + "".join(f"{k},{i}\n" for k, i in enumerate(ids))


@pytest.mark.parametrize("name", ["big.csv", "big.csv.gz"])
def test_csv_chunks(write_text, name):
    chunks = list(iter_id_chunks(write_text(name, csv_text(IDS)), "id", chunk_rows=4))
    assert [len(c) for c in chunks] == [4, 4, 3]
    assert all(c.dtype == object for c in chunks)
    assert np.concatenate(chunks).tolist() == IDS


def test_parquet_chunks(write_parquet):
    path = write_parquet("big.parquet", pd.DataFrame({"x": range(len(IDS)), "id": IDS}))
    chunks = list(iter_id_chunks(path, "id", chunk_rows=4))
    assert [len(c) for c in chunks] == [4, 4, 3]
    assert np.concatenate(chunks).tolist() == IDS and isinstance(chunks[0][0], str)


def test_parquet_integer_ids(write_parquet):
    path = write_parquet("big.parquet", pd.DataFrame({"id": [7, 8, 9]}))
    assert np.concatenate(list(iter_id_chunks(path, "id", chunk_rows=2))).tolist() == ["7", "8", "9"]


def test_empty_id_row_counts_across_chunks(write_text, write_parquet):
    ids = IDS[:6] + [" "] + IDS[6:]
    with pytest.raises(DataError) as info:
        list(iter_id_chunks(write_text("big.csv", csv_text(ids)), "id", chunk_rows=4))
    assert_names(str(info.value), "big.csv", "column 'id'", "row 7", "empty id")
    frame = pd.DataFrame({"id": IDS[:5] + [None] + IDS[5:]})
    with pytest.raises(DataError) as info:
        list(iter_id_chunks(write_parquet("big.parquet", frame), "id", chunk_rows=4))
    assert_names(str(info.value), "big.parquet", "column 'id'", "row 6", "empty id")


def test_duplicates_are_left_to_the_caller(write_text):
    assert len(np.concatenate(list(iter_id_chunks(write_text("d.csv", "id\na\na\n"), "id")))) == 2


@pytest.mark.parametrize("name, content, fragment", [
    ("m.csv", "x,ident\n1,a\n", "no id column 'id' (columns: ['x', 'ident'])"),
    ("e.csv", "", "empty"),
    ("h.csv", "x,id\n", "no data rows"),
    ("q.csv", 'x,id\n1,"a\n', "not a valid CSV"),
    ("t.txt", "id\n1\n", "unsupported file type"),
])
def test_chunk_reader_errors(write_text, name, content, fragment):
    with pytest.raises(DataError) as info:
        list(iter_id_chunks(write_text(name, content), "id", chunk_rows=1))
    assert_names(str(info.value), name, fragment)


def test_chunk_reader_parquet_errors(write_parquet, tmp_path):
    with pytest.raises(DataError, match=r"p.parquet: no id column 'id' \(columns: \['x'\]\)"):
        list(iter_id_chunks(write_parquet("p.parquet", pd.DataFrame({"x": [1]})), "id"))
    (tmp_path / "bad.pq").write_bytes(b"garbage")
    with pytest.raises(DataError, match="bad.pq: cannot read parquet"):
        list(iter_id_chunks(tmp_path / "bad.pq", "id"))


def test_chunk_rows_must_be_positive(write_text):
    with pytest.raises(ValueError):
        list(iter_id_chunks(write_text("a.csv", "id\n1\n"), "id", chunk_rows=0))
