"""Labels map to class indices through a stable sorted class list."""
from __future__ import annotations

import numpy as np
import pytest

from vfl.data import decode_labels, encode_labels, load_party_table, sorted_classes
from vfl.errors import DataError


@pytest.mark.parametrize("values, classes", [
    (["1", "0", "1"], ["0", "1"]),
    ([10, 2, -1], ["-1", "2", "10"]),              # numeric order, not text order
    ([1.0, 0.0], ["0", "1"]),                      # integral floats read like integers
    (["yes", "no", "Maybe"], ["Maybe", "no", "yes"]),
    (["2", "b", "10"], ["10", "2", "b"]),          # any non-number: text order
    (["1.0", "1", "0"], ["0", "1", "1.0"]),        # ties broken by text: independent of hashing
])
def test_sorted_classes(values, classes):
    assert sorted_classes(values) == classes
    assert sorted_classes(list(reversed(values))) == classes


def test_encode_and_decode():
    y, classes = encode_labels(["cat", "dog", "cat", "bird"])
    assert classes == ["bird", "cat", "dog"] and y.tolist() == [1, 2, 1, 0] and y.dtype == np.int64
    assert decode_labels(y, classes).tolist() == ["cat", "dog", "cat", "bird"]
    y2, _ = encode_labels([0, 1], classes=["0", "1"])
    assert y2.tolist() == [0, 1]
    with pytest.raises(DataError, match="row 2: label 'fish'"):
        encode_labels(["cat", "fish"], classes=classes)


def test_string_and_integer_labels_in_tables(write_text, write_parquet):
    import pandas as pd
    text = load_party_table(write_text("a.csv", "id,y,x\na,b,1\nb,a,2\nc,c,3\n"), label="y", task="multiclass")
    assert text.schema.label_classes == ["a", "b", "c"] and text.label.tolist() == [1, 0, 2]
    frame = pd.DataFrame({"id": ["a", "b"], "y": np.array([1, 0], dtype=np.int8), "x": [1.0, 2.0]})
    ints = load_party_table(write_parquet("b.parquet", frame), label="y")
    assert ints.schema.label_classes == ["0", "1"] and ints.label.tolist() == [1, 0]


def test_multiclass_needs_two_classes(write_text):
    with pytest.raises(DataError, match="at least 2"):
        load_party_table(write_text("a.csv", "id,y,x\na,1,1\nb,1,2\n"), label="y", task="multiclass")
