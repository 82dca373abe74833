"""One-hot encoding is deterministic, and the saved schema reproduces the training columns at prediction."""
from __future__ import annotations

import json
import warnings

import numpy as np
import pytest

from vfl.data import Schema, UnknownCategoryWarning, load_party_table
from vfl.errors import DataError

from .conftest import assert_names

TRAIN = "id,y,size,color,shape\nr1,no,1,red,square\nr2,yes,2,blue,circle\nr3,no,3,red,circle\nr4,yes,4,green,square\n"


def train(write_text, text=TRAIN, name="train.csv"):
    return load_party_table(write_text(name, text), label="y", categorical=["shape", "color"])


def test_one_hot_columns_and_names(write_text):
    table = train(write_text)
    assert table.feature_names == ["size", "color=blue", "color=green", "color=red", "shape=circle", "shape=square"]
    np.testing.assert_array_equal(table.features, [[1, 0, 0, 1, 0, 1], [2, 1, 0, 0, 1, 0],
                                                   [3, 0, 0, 1, 1, 0], [4, 0, 1, 0, 0, 1]])
    assert table.schema.categorical == {"color": ["blue", "green", "red"], "shape": ["circle", "square"]}
    assert table.schema.label_classes == ["no", "yes"] and table.label.tolist() == [0, 1, 0, 1]


def test_one_hot_does_not_depend_on_row_order_or_declaration_order(write_text):
    header, *rows = TRAIN.strip().split("\n")
    shuffled = "\n".join([header, *reversed(rows)]) + "\n"
    a = train(write_text)
    b = load_party_table(write_text("b.csv", shuffled), label="y", categorical=["color", "shape"])
    assert a.feature_names == b.feature_names and a.schema == b.schema
    order = np.argsort(b.ids)
    np.testing.assert_array_equal(a.features, b.features[order])


def test_schema_json_round_trip(write_text, tmp_path):
    schema = train(write_text).schema
    assert Schema.from_json(schema.to_json()) == schema
    path = schema.save(tmp_path / "schema.json")
    assert Schema.load(path) == schema
    assert json.loads(path.read_text())["categorical"]["color"] == ["blue", "green", "red"]
    assert [p.name for p in tmp_path.iterdir() if p.name.startswith(".")] == []  # no temp file left


def test_prediction_reuses_vocabulary_and_classes(write_text, tmp_path):
    schema = train(write_text).schema.save(tmp_path / "schema.json")
    new = "shape,extra,color,size,id\nsquare,9,blue,5,n1\ncircle,9,blue,6,n2\n"  # other order, extra column
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        table = load_party_table(write_text("new.csv", new), schema=Schema.load(schema))
    assert table.feature_names == train(write_text).feature_names
    np.testing.assert_array_equal(table.features, [[5, 1, 0, 0, 0, 1], [6, 1, 0, 0, 1, 0]])
    assert table.label is None and table.unknown_categories == {}


def test_prediction_label_uses_saved_classes(write_text):
    schema = train(write_text).schema
    table = load_party_table(write_text("new.csv", "id,y,size,color,shape\nn1,yes,1,red,circle\n"),
                             schema=schema, label="y")
    assert table.label.tolist() == [1] and table.label_texts().tolist() == ["yes"]
    with pytest.raises(DataError) as info:
        load_party_table(write_text("bad.csv", "id,y,size,color,shape\nn1,maybe,1,red,circle\n"),
                         schema=schema, label="y")
    assert_names(str(info.value), "bad.csv", "column 'y'", "row 1 (id 'n1')", "'maybe'", "['no', 'yes']")


def test_unknown_category_is_all_zero_and_counted(write_text):
    schema = train(write_text).schema
    new = "id,size,color,shape\nn1,1,purple,circle\nn2,2,red,circle\nn3,3,pink,square\n"
    with pytest.warns(UnknownCategoryWarning) as record:
        table = load_party_table(write_text("new.csv", new), schema=schema)
    assert table.unknown_categories == {"color": 2}
    message = str(record[0].message)
    assert_names(message, "new.csv", "column 'color'", "row 1 (id 'n1')", "'purple'", "2 row(s)")
    color = [k for k, n in enumerate(table.feature_names) if n.startswith("color=")]
    np.testing.assert_array_equal(table.features[:, color], [[0, 0, 0], [0, 0, 1], [0, 0, 0]])


def test_unknown_category_can_be_an_error(write_text):
    schema = train(write_text).schema
    with pytest.raises(DataError) as info:
        load_party_table(write_text("new.csv", "id,size,color,shape\nn1,1,red,oval\n"), schema=schema,
                         on_unknown="error")
    assert_names(str(info.value), "new.csv", "column 'shape'", "row 1 (id 'n1')", "'oval'")


def test_prediction_missing_column_is_an_error(write_text):
    schema = train(write_text).schema
    with pytest.raises(DataError) as info:
        load_party_table(write_text("new.csv", "id,size,shape\nn1,1,circle\n"), schema=schema)
    assert_names(str(info.value), "new.csv", "'color'", "saved schema", "columns: ['id', 'size', 'shape']")


@pytest.mark.parametrize("text, fragment", [
    ("{", "not valid JSON"),
    ("[]", "JSON object"),
    ('{"numeric": []}', "missing key 'id_column'"),
    ('{"id_column": "id", "numeric": "a"}', "'numeric'"),
    ('{"id_column": "id", "numeric": [], "categorical": {"c": [1]}}', "'categorical'"),
    ('{"id_column": "id", "numeric": [], "colour": {}}', "unknown key 'colour'"),
])
def test_malformed_schema(tmp_path, text, fragment):
    path = tmp_path / "schema.json"
    path.write_text(text)
    with pytest.raises(DataError) as info:
        Schema.load(path)
    assert_names(str(info.value), "schema.json", fragment)
