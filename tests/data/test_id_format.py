"""Dataset options: `id_format` (canonical IDs) and `missing` (fills fixed in training, reused in prediction)."""
from __future__ import annotations

import json

import numpy as np
import pytest

from tests.data.conftest import assert_names
from vfl.data import Schema, load_party_table
from vfl.data.columns import Where
from vfl.data.ids import IdFormat, parse_id_format
from vfl.errors import ConfigError, DataError
from vfl.node.config import parse_node_config

WHERE = Where("ids.csv", "customer_id")


def canonical(fmt: IdFormat, *values: str) -> list[str]:
    return list(fmt.apply(np.array(values, dtype=object), WHERE))


def test_integer_ids_in_their_plain_form():
    fmt = IdFormat(integer=True)
    assert canonical(fmt, "1040.0", "00001040", "+1041", "1.042e3", "1043.", "-7", "0", "000") == \
        ["1040", "1040", "1041", "1042", "1043", "-7", "0", "0"]
    assert canonical(fmt, "123456789012345678901234567890.000") == ["123456789012345678901234567890"]


@pytest.mark.parametrize("value, problem", [
    ("1040.5", "has a fractional part"), ("C-1040", "is not an integer"), ("1_040", "is not an integer"),
    ("nan", "is not an integer"), ("1e999", "at most 64 digits"), ("0x10", "is not an integer"),
])
def test_values_that_are_not_integers_name_their_row(value, problem):
    with pytest.raises(DataError) as info:
        IdFormat(integer=True).apply(np.array(["7", value], dtype=object), WHERE)
    assert_names(str(info.value), "ids.csv", "'customer_id'", "row 2", repr(value), problem)


def test_steps_apply_in_order():
    assert canonical(IdFormat(strip=True, case="upper"), "  ab-1 ") == ["AB-1"]
    assert canonical(IdFormat(case="lower"), "AB-1", " Ab ") == ["ab-1", " ab "]    # no strip asked for
    assert canonical(IdFormat(strip=True, integer=True, pad=8), " 1040.0 ", "7") == ["00001040", "00000007"]
    assert canonical(IdFormat(pad=4), "123456") == ["123456"]                      # longer ones stay
    assert canonical(IdFormat(), " x ") == [" x "]


def test_parse_id_format_errors_name_the_key():
    assert parse_id_format(None, "d.id_format") is None
    assert parse_id_format({"integer": True, "pad": 8}, "d") == IdFormat(integer=True, pad=8)
    for data, text in [({"integr": True}, "unknown key(s) ['integr']"), ({"case": "title"}, "d.case"),
                       ({"pad": 0}, "d.pad"), ({"pad": True}, "d.pad"), ({"strip": "yes"}, "d.strip"),
                       (["integer"], "must be a mapping")]:
        with pytest.raises(ConfigError) as info:
            parse_id_format(data, "d")
        assert text in str(info.value)


def test_table_ids_are_rewritten_before_the_duplicate_check(write_text):
    path = write_text("t.csv", "id,x\n1040.0,1\n0007,2\n 12 ,3\n")
    table = load_party_table(path, "id", id_format=IdFormat(strip=True, integer=True))
    assert list(table.ids) == ["1040", "7", "12"]
    clash = write_text("c.csv", "id,x\n7,1\n007,2\n")
    with pytest.raises(DataError) as info:
        load_party_table(clash, "id", id_format=IdFormat(integer=True))
    assert_names(str(info.value), "c.csv", "duplicate id '7'", "rows 1 and 2", "after id_format")


def test_missing_cells_are_filled_by_the_declared_rule(write_text):
    path = write_text("t.csv", "id,income,age,region,y\na,10,,north,1\nb,,30,,0\nc,40,50,south,1\nd,NA,40,north,0\n")
    table = load_party_table(path, "id", label="y", categorical=["region"],
                             missing={"income": "median", "age": "mean", "region": "unknown"})
    assert table.schema.fill == {"income": "25.0", "age": "40.0", "region": "unknown"}
    assert table.feature_names == ["income", "age", "region=north", "region=south", "region=unknown"]
    assert table.features[:, 0].tolist() == [10.0, 25.0, 40.0, 25.0]
    assert table.features[:, 1].tolist() == [40.0, 30.0, 50.0, 40.0]
    assert table.features[1, 2:].tolist() == [0.0, 0.0, 1.0]


def test_prediction_reuses_the_training_fills(write_text, tmp_path):
    train = load_party_table(write_text("t.csv", "id,income\na,10\nb,\nc,40\n"), "id", missing={"income": "mean"})
    train.schema.save(tmp_path / "schema.json")
    schema = Schema.load(tmp_path / "schema.json")
    assert schema.fill == {"income": "25.0"}
    new = load_party_table(write_text("n.csv", "id,income\nx,\ny,1000\nz,1000\n"), schema=schema)
    assert new.features[:, 0].tolist() == [25.0, 1000.0, 1000.0]     # not the new table's own mean
    old = json.loads(schema.to_json())
    del old["fill"]                                                   # a schema saved before fills existed
    assert Schema.from_json(json.dumps(old)).fill == {}


@pytest.mark.parametrize("missing, parts", [
    ({"nope": "median"}, ["missing: column 'nope' is not a feature", "income"]),
    ({"region": "median"}, ["'median' needs a numeric column", "'unknown'"]),
    ({"income": "zero"}, ["fill 'zero' is not 'median', 'mean' or a number"]),
    ({"y": 0}, ["column 'y' is not a feature"]),
])
def test_fill_errors_name_the_column(write_text, missing, parts):
    path = write_text("t.csv", "id,income,region,y\na,1,n,0\nb,,s,1\n")
    with pytest.raises(DataError) as info:
        load_party_table(path, "id", label="y", categorical=["region"], missing=missing)
    assert_names(str(info.value), "t.csv", *parts)


def test_a_missing_cell_without_a_rule_is_still_refused(write_text):
    path = write_text("t.csv", "id,income,age\na,1,\nb,,3\n")
    with pytest.raises(DataError) as info:
        load_party_table(path, "id", missing={"age": 0})
    assert_names(str(info.value), "t.csv", "'income'", "row 2", "missing")


def test_node_config_reads_both_options(tmp_path):
    config = parse_node_config({
        "party": "bank-a", "role": "active", "insecure": True,
        "datasets": {"c": {"path": "c.csv", "id": "cid", "id_format": {"integer": True, "pad": 6},
                           "missing": {"income": "median", "region": "unknown"}}}}, tmp_path)
    ds = config.dataset("c")
    assert ds.id_format == IdFormat(integer=True, pad=6) and ds.missing == {"income": "median", "region": "unknown"}
    for bad, key in [({"id_format": {"case": "camel"}}, "datasets.c.id_format.case"),
                     ({"missing": ["income"]}, "datasets.c.missing"),
                     ({"missing": {"income": None}}, "datasets.c.missing.income")]:
        with pytest.raises(ConfigError, match=key.replace(".", r"\.")):
            parse_node_config({"party": "bank-a", "role": "active", "insecure": True,
                               "datasets": {"c": {"path": "c.csv", **bad}}}, tmp_path)


def test_read_label_false_leaves_the_label_column_alone(write_text):
    path = write_text("t.csv", "id,x,outcome\na,1,low\nb,2,\nc,3,high\n")   # three classes, one missing
    table = load_party_table(path, "id", label="outcome", read_label=False)
    assert table.label is None and table.feature_names == ["x"]
    with pytest.raises(DataError, match="missing label"):
        load_party_table(path, "id", label="outcome", task="multiclass")
