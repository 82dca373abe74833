"""Happy paths: CSV, gzip CSV, Parquet, IDs kept as text, default and explicit feature columns."""
from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from vfl.data import load_party_table, read_frame

CSV = "id,y,a,b\n007,1,1.5,2\n010,0,-3,4e2\nc-3,1, 5 ,0\n"


@pytest.mark.parametrize("name", ["t.csv", "t.csv.gz", "T.CSV"])
def test_csv_happy_path(write_text, name):
    table = load_party_table(write_text(name, CSV), label="y")
    assert table.ids.dtype == object and table.ids.tolist() == ["007", "010", "c-3"]
    assert table.feature_names == ["a", "b"]
    np.testing.assert_array_equal(table.features, [[1.5, 2], [-3, 400], [5, 0]])
    assert table.features.dtype == np.float64
    assert table.label.tolist() == [1, 0, 1] and table.label_name == "y"
    assert table.schema.label_classes == ["0", "1"]
    assert len(table) == 3 and table.source.name == name


def test_tsv(write_text):
    table = load_party_table(write_text("t.tsv", CSV.replace(",", "\t")), label="y")
    assert table.ids.tolist() == ["007", "010", "c-3"] and table.feature_names == ["a", "b"]


@pytest.mark.parametrize("name", ["t.parquet", "t.pq"])
def test_parquet_happy_path(write_parquet, name):
    frame = pd.DataFrame({"id": ["007", "010", "x"], "y": [1, 0, 1], "a": [1.5, -3.0, 5.0],
                          "b": np.array([2, 400, 0], dtype=np.int32), "flag": [True, False, True]})
    table = load_party_table(write_parquet(name, frame), label="y")
    assert table.ids.tolist() == ["007", "010", "x"]
    assert table.feature_names == ["a", "b", "flag"]
    np.testing.assert_array_equal(table.features, [[1.5, 2, 1], [-3, 400, 0], [5, 0, 1]])
    assert table.label.tolist() == [1, 0, 1]


def test_parquet_integer_ids_become_text(write_parquet):
    table = load_party_table(write_parquet("t.parquet", pd.DataFrame({"id": [7, 10], "a": [1.0, 2.0]})), label=None)
    assert table.ids.tolist() == ["7", "10"] and all(isinstance(i, str) for i in table.ids)


def test_ids_stay_text_even_when_numeric_looking(write_text):
    table = load_party_table(write_text("t.csv", "id,a\n007,1\n1e3,2\n0x1,3\n 42,4\nNA,5\n"), task=None)
    assert table.ids.tolist() == ["007", "1e3", "0x1", " 42", "NA"]


def test_unicode_ids_csv_and_parquet(write_text, write_parquet):
    ids = ["Zoë-001", "日本-2", "🙂", "ß", "e\u0301"]
    text = "id,a\n" + "".join(f"{i},{k}\n" for k, i in enumerate(ids))
    assert load_party_table(write_text("u.csv", text), task=None).ids.tolist() == ids
    frame = pd.DataFrame({"id": ids, "a": range(5)})
    assert load_party_table(write_parquet("u.parquet", frame), task=None).ids.tolist() == ids


def test_utf8_bom_and_windows_line_ends(tmp_path):
    path = tmp_path / "bom.csv"
    path.write_bytes("\ufeffid,a\r\nx,1\r\ny,2\r\n".encode("utf-8"))
    table = load_party_table(path, task=None)
    assert table.ids.tolist() == ["x", "y"] and table.features.tolist() == [[1.0], [2.0]]


def test_explicit_features_and_custom_id(write_text):
    path = write_text("m.csv", "idx,speed,p,q,r\n1,0.5,1,2,3\n2,0.7,4,5,6\n")
    table = load_party_table(path, id_column="idx", features=["r", "p"], label="speed", task="regression")
    assert table.feature_names == ["p", "r"]  # table order, whatever the declaration order
    np.testing.assert_array_equal(table.features, [[1, 3], [4, 6]])
    assert table.label.dtype == np.float64 and table.label.tolist() == [0.5, 0.7]
    assert table.schema.label_classes is None


def test_no_label_passive_party(write_text):
    table = load_party_table(write_text("h.csv", "id,a\n1,2\n"))
    assert table.label is None and table.label_name is None and table.schema.label is None


def test_take_reorders_rows(write_text):
    table = load_party_table(write_text("t.csv", CSV), label="y")
    part = table.take([2, 0])
    assert part.ids.tolist() == ["c-3", "007"] and part.label.tolist() == [1, 1]
    np.testing.assert_array_equal(part.features, [[5, 0], [1.5, 2]])
    assert len(part) == 2 and len(table.take([])) == 0


@pytest.mark.parametrize("bad, error", [([3], IndexError), ([-1], IndexError), ([0, 0], ValueError),
                                        ([0.5], IndexError)])
def test_take_refuses_bad_positions(write_text, bad, error):
    table = load_party_table(write_text("t.csv", CSV), label="y")
    with pytest.raises(error):
        table.take(bad)


def test_read_frame_keeps_every_cell_as_text(write_text):
    frame = read_frame(write_text("t.csv", CSV))
    assert frame["id"].tolist() == ["007", "010", "c-3"] and frame["b"].tolist() == ["2", "4e2", "0"]
