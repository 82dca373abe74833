"""Every refusal is a DataError naming the file, the column and the first bad row (with its id) or value."""
from __future__ import annotations

import gzip

import numpy as np
import pandas as pd
import pytest

from vfl.data import check_label_declarations, load_party_table
from vfl.errors import DataError

from .conftest import assert_names

GOOD = "id,y,a,b\nr1,0,1,2\nr2,1,3,4\nr3,0,5,6\n"


def load_error(path, **kwargs) -> str:
    kwargs.setdefault("label", "y")
    before = sorted(p.name for p in path.parent.iterdir())
    with pytest.raises(DataError) as info:
        load_party_table(path, **kwargs)
    assert sorted(p.name for p in path.parent.iterdir()) == before  # a failed load writes nothing
    assert info.value.__cause__ is None or isinstance(info.value.__cause__, DataError)
    return str(info.value)


# --- missing and mis-declared columns ---------------------------------------------------------------

def test_missing_id_column_lists_columns(write_text):
    msg = load_error(write_text("cust.csv", GOOD), id_column="customer_id")
    assert_names(msg, "cust.csv", "'customer_id'", "id column", "['id', 'y', 'a', 'b']")


@pytest.mark.parametrize("kwargs, column, role", [
    ({"features": ["a", "zz"]}, "'zz'", "feature"),
    ({"label": "target"}, "'target'", "label"),
    ({"categorical": ["color"]}, "'color'", "categorical"),
])
def test_declared_column_that_does_not_exist(write_text, kwargs, column, role):
    msg = load_error(write_text("cust.csv", GOOD), **kwargs)
    assert_names(msg, "cust.csv", column, f"no {role} column", "columns: ['id', 'y', 'a', 'b']")


@pytest.mark.parametrize("kwargs, fragment", [
    ({"features": ["a", "y"]}, "'y' is declared both as label and as feature"),
    ({"features": ["a", "id"]}, "'id' is declared both as id and as feature"),
    ({"features": ["a", "a"]}, "'a' is declared more than once"),
    ({"label": "id"}, "'id' is declared both as id and as label"),
    ({"features": ["a"], "categorical": ["b"]}, "categorical column 'b' is not among the features"),
])
def test_contradictory_declarations(write_text, kwargs, fragment):
    assert_names(load_error(write_text("cust.csv", GOOD), **kwargs), "cust.csv", fragment)


def test_repeated_header_name(write_text):
    assert_names(load_error(write_text("d.csv", "id,y,a,a\n1,0,2,3\n")), "d.csv", "'a'", "more than once")


def test_unnamed_header_column(write_text):
    assert_names(load_error(write_text("d.csv", ",id,y\n0,1,0\n")), "d.csv", "header column 1 has no name")


# --- IDs -----------------------------------------------------------------------------------------------

@pytest.mark.parametrize("cell", ["", "   ", "NaN", "nan", "<NA>"])
def test_empty_id(write_text, cell):
    msg = load_error(write_text("ids.csv", f"id,y,a\nr1,0,1\nr2,1,2\n{cell},0,3\n"))
    assert_names(msg, "ids.csv", "column 'id'", "row 3")
    assert "empty id" in msg or "missing value" in msg


def test_empty_id_in_short_row(write_text):
    assert_names(load_error(write_text("ids.csv", "id,y,a\nr1,0,1\n\"\"\n")), "ids.csv", "column 'id'", "row 2")


def test_missing_id_parquet(write_parquet):
    frame = pd.DataFrame({"id": ["a", None, "c"], "y": [0, 1, 0], "a": [1.0, 2.0, 3.0]})
    assert_names(load_error(write_parquet("ids.parquet", frame)), "ids.parquet", "column 'id'", "row 2", "empty id")


def test_float_ids_parquet_refused(write_parquet):
    frame = pd.DataFrame({"id": [1.0, 2.0], "y": [0, 1], "a": [1.0, 2.0]})
    assert_names(load_error(write_parquet("ids.parquet", frame)), "ids.parquet", "column 'id'", "floating point")


def test_duplicate_id_names_value_and_both_rows(write_text):
    msg = load_error(write_text("dup.csv", "id,y,a\nr1,0,1\n007,1,2\nr3,0,3\n7,1,4\n007,0,5\n"))
    assert_names(msg, "dup.csv", "column 'id'", "duplicate id '007'", "rows 2 and 5")


# --- features --------------------------------------------------------------------------------------------

def test_not_numeric_exact_message(write_text):
    rows = "".join(f"c-{k:04d},0,{k}\n" for k in range(1, 17)) + "c-0042,1,abc\nc-0043,0,1\n"
    msg = load_error(write_text("customers.csv", "id,y,income\n" + rows))
    assert msg == ("customers.csv: column 'income': row 17 (id 'c-0042'): value 'abc' is not numeric "
                   "(declare the column categorical to one-hot encode it)")


@pytest.mark.parametrize("cell, problem", [
    ("", "empty value"), ("NaN", "'NaN' is a missing value"), ("NA", "'NA' is a missing value"),
    ("inf", "'inf' is infinite"), ("-Infinity", "'-Infinity' is infinite"), ("1e400", "'1e400' is too large"),
    ("1,5", "'1,5' is not numeric"),
])
def test_bad_feature_values(write_text, cell, problem):
    cell = f'"{cell}"' if "," in cell else cell
    msg = load_error(write_text("f.csv", f"id,y,a,b\nr1,0,1,2\nr2,1,3,{cell}\nr3,0,4,{cell}\n"))
    assert_names(msg, "f.csv", "column 'b'", "row 2 (id 'r2')", problem)


def test_nan_and_inf_in_parquet_features(write_parquet):
    frame = pd.DataFrame({"id": ["a", "b", "c"], "y": [0, 1, 0], "x": [1.0, 2.0, np.inf], "z": [np.nan, 1.0, 2.0]})
    msg = load_error(write_parquet("p.parquet", frame))
    assert_names(msg, "p.parquet", "column 'x'", "row 3 (id 'c')", "infinite")
    msg = load_error(write_parquet("q.parquet", frame.drop(columns="x")))
    assert_names(msg, "q.parquet", "column 'z'", "row 1 (id 'a')", "missing")


def test_parquet_text_and_datetime_features(write_parquet):
    frame = pd.DataFrame({"id": ["a", "b"], "y": [0, 1], "t": ["1", "zz"]})
    assert_names(load_error(write_parquet("s.parquet", frame)), "s.parquet", "column 't'", "row 2 (id 'b')",
                 "'zz' is not numeric", "categorical")
    frame = pd.DataFrame({"id": ["a", "b"], "y": [0, 1], "when": pd.to_datetime(["2024-01-01", "2024-01-02"])})
    assert_names(load_error(write_parquet("d.parquet", frame)), "d.parquet", "column 'when'", "row 1 (id 'a')",
                 "not numeric", "datetime64")


def test_missing_categorical_value(write_text):
    msg = load_error(write_text("c.csv", "id,y,color\nr1,0,red\nr2,1,\n"), categorical=["color"])
    assert_names(msg, "c.csv", "column 'color'", "row 2 (id 'r2')", "missing categorical value")


def test_one_hot_name_collision(write_text):
    msg = load_error(write_text("c.csv", "id,y,color=red,color\nr1,0,1,red\n"), categorical=["color"], task=None)
    assert_names(msg, "c.csv", "'color=red'", "occurs twice")


# --- labels ------------------------------------------------------------------------------------------------

@pytest.mark.parametrize("cell, task, problem", [
    ("", "binary", "missing label"), ("nan", "binary", "missing value"), ("inf", "multiclass", "infinite"),
    ("", "regression", "empty value"), ("inf", "regression", "infinite"), ("high", "regression", "not numeric"),
])
def test_bad_label_values(write_text, cell, task, problem):
    msg = load_error(write_text("l.csv", f"id,y,a\nr1,0,1\nr2,{cell},2\nr3,1,3\n"), task=task)
    assert_names(msg, "l.csv", "column 'y'", "row 2 (id 'r2')", problem)


def test_binary_needs_two_classes(write_text):
    msg = load_error(write_text("l.csv", "id,y,a\nr1,0,1\nr2,1,2\nr3,2,3\n"), task="binary")
    assert_names(msg, "l.csv", "column 'y'", "exactly 2", "['0', '1', '2']")


def test_label_declared_at_two_parties():
    with pytest.raises(DataError) as info:
        check_label_declarations({"bank": "y", "shop": None, "insurer": "default"})
    assert_names(str(info.value), "'bank'", "'y'", "'insurer'", "'default'")
    assert check_label_declarations({"bank": "y", "shop": None}) == "bank"
    assert check_label_declarations({"bank": None, "shop": ""}) is None
    with pytest.raises(DataError) as info:
        check_label_declarations({"bank": "y", "insurer": "default"},
                                 files={"bank": "bank/customers.csv", "insurer": "ins/policies.parquet"})
    assert_names(str(info.value), "bank/customers.csv", "ins/policies.parquet", "column 'y'", "column 'default'")


# --- malformed files -------------------------------------------------------------------------------------------

@pytest.mark.parametrize("name, content, fragment", [
    ("e.csv", b"", "empty"),
    ("e.csv", b"\n\n", "empty"),
    ("h.csv", b"id,y,a\n", "no data rows"),
    ("r.csv", b"id,y,a\n1,0,2\n2,1,3,4\n", "line 3"),
    ("q.csv", b'id,y,a\n"1,0,2\n', "not a valid CSV"),
    ("l.csv", b"id,y,a\n\xe9\xff,0,1\n", "not UTF-8"),
    ("g.csv.gz", gzip.compress(b"id,y,a\n" + b"1,0,2\n" * 500)[:40], "cannot read csv"),
    ("n.csv.gz", b"plain text, not gzip\n", "cannot read csv"),
    ("p.parquet", b"PAR1 this is not parquet", "cannot read parquet"),
    ("z.pq", b"", "cannot read parquet"),
])
def test_malformed_files(tmp_path, name, content, fragment):
    path = tmp_path / name
    path.write_bytes(content)
    assert_names(load_error(path), name, fragment)


def test_parquet_without_rows(write_parquet):
    frame = pd.DataFrame({"id": pd.Series([], dtype=str), "y": pd.Series([], dtype=int)})
    assert_names(load_error(write_parquet("e.parquet", frame)), "e.parquet", "no data rows")


def test_missing_file_and_unknown_extension(tmp_path):
    assert_names(load_error(tmp_path / "absent.csv"), "absent.csv", "not found")
    (tmp_path / "t.xlsx").write_text("id\n1\n")
    assert_names(load_error(tmp_path / "t.xlsx"), "t.xlsx", "unsupported file type")
    (tmp_path / "dir.csv").mkdir()
    assert_names(load_error(tmp_path / "dir.csv"), "dir.csv", "not a regular file")
