"""StreamedTable: a table read in chunks gives what load_party_table gives for the whole file (vfl/data/streamed.py)."""
from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from vfl.data import Schema, load_party_table
from vfl.data.ids import IdFormat
from vfl.data.streamed import StreamedTable, exact_median
from vfl.data import streamed
from vfl.errors import DataError

from .conftest import assert_names


def whole_and_streamed(path, chunk_rows=3, **kw):
    whole = load_party_table(path, **kw)
    stream = StreamedTable(path, chunk_rows=chunk_rows, **kw)
    chunks = list(stream.chunks())
    return whole, stream, chunks


def concat(chunks, attr):
    parts = [getattr(c, attr) for c in chunks]
    return None if parts[0] is None else np.concatenate(parts)


def table_frame(rows: int = 23, seed: int = 3) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    frame = pd.DataFrame({"id": [f"c{k:03d}" for k in rng.permutation(rows)],
                          "income": rng.integers(0, 100, rows).astype(float),
                          "region": rng.choice(["north", "south", "east"], rows),
                          "age": rng.integers(18, 90, rows).astype(float),
                          "y": rng.choice(["no", "yes"], rows)})
    frame.loc[[2, 9, 17], "income"] = np.nan
    frame.loc[[4, 20], "region"] = None
    frame.loc[[5, 11, 12, 21], "age"] = np.nan
    return frame


@pytest.mark.parametrize("kind", ["csv", "parquet"])
def test_training_table_in_chunks_equals_the_whole_table(tmp_path, kind):
    frame = table_frame()
    path = tmp_path / f"t.{kind}"
    frame.to_csv(path, index=False) if kind == "csv" else frame.to_parquet(path, index=False)
    kw = dict(id_column="id", label="y", categorical=["region"], positive_class="no",
              missing={"income": "median", "age": "mean", "region": "unknown"})
    whole, stream, chunks = whole_and_streamed(path, **kw)
    assert [len(c) for c in chunks] == [3] * 7 + [2]
    assert stream.schema.to_json() == whole.schema.to_json()
    assert concat(chunks, "ids").tolist() == whole.ids.tolist()
    assert np.array_equal(concat(chunks, "features"), whole.features)
    assert np.array_equal(concat(chunks, "label"), whole.label)
    assert stream.feature_names == whole.feature_names and stream.rows == len(whole)


def test_prediction_table_uses_the_saved_schema_and_counts_unknown_categories(tmp_path, write_text):
    train = load_party_table(write_text("t.csv", "id,region,x\na,n,1\nb,s,2\n"), "id", categorical=["region"])
    text = "id,region,x,y\n" + "".join(f"p{k},{'w' if k % 4 == 0 else 'n'},{k},1\n" for k in range(10))
    path = write_text("p.csv", text)
    with pytest.warns(UserWarning, match="row 1"):
        whole = load_party_table(path, schema=train.schema, label="y", task=None)
    with pytest.warns(UserWarning, match="row 1") as caught:
        stream = StreamedTable(path, schema=train.schema, label="y", task=None, chunk_rows=3)
        chunks = list(stream.chunks())
    assert len(caught) == 1                       # warned once for the column, as for the whole table
    assert np.array_equal(concat(chunks, "features"), whole.features)
    assert stream.unknown_categories == whole.unknown_categories == {"region": 3}


def test_id_format_and_written_ids(write_text):
    path = write_text("t.csv", "id,x\n1040.0,1\n0007,2\n 12 ,3\n5,4\n")
    whole, stream, chunks = whole_and_streamed(path, id_column="id", id_format=IdFormat(strip=True, integer=True),
                                               chunk_rows=2)
    assert concat(chunks, "ids").tolist() == whole.ids.tolist() == ["1040", "7", "12", "5"]
    assert np.concatenate([c.written_ids for c in chunks]).tolist() == whole.written_ids.tolist()


def test_errors_name_the_file_wide_row(write_text):
    text = "id,x\n" + "".join(f"r{k},{k}\n" for k in range(7)) + "r7,oops\n"
    with pytest.raises(DataError) as info:
        list(StreamedTable(write_text("t.csv", text), "id", chunk_rows=3).chunks())
    assert_names(str(info.value), "t.csv", "column 'x'", "row 8", "'oops'", "not numeric")


def test_a_binary_label_with_three_values_fails_in_the_schema_pass(write_text):
    with pytest.raises(DataError, match="exactly 2 label values"):
        StreamedTable(write_text("t.csv", "id,y\na,1\nb,2\nc,3\n"), "id", label="y", chunk_rows=1)


def test_ids_only_reads_the_id_column_alone(write_text):
    stream = StreamedTable(write_text("t.csv", "id,x,y\na,not a number,1\nb,2,5\n"), "id", label="y", ids_only=True)
    chunks = list(stream.chunks())
    assert concat(chunks, "ids").tolist() == ["a", "b"] and chunks[0].features.shape == (2, 0)


@pytest.mark.parametrize("count", [1, 2, 7, 1000, 1001])
def test_exact_median_by_radix_selection_equals_numpy(monkeypatch, count):
    rng = np.random.default_rng(count)
    values = np.concatenate([rng.normal(size=count // 2) * 1e6, rng.integers(-5, 5, count - count // 2) * 0.5])
    rng.shuffle(values)
    monkeypatch.setattr(streamed, "MEDIAN_IN_MEMORY", 3)     # force the passes over the "disk"
    chunks = lambda: (values[i:i + 64] for i in range(0, count, 64))  # noqa: E731
    assert exact_median(chunks, count) == float(np.median(values))


def test_schema_round_trip_of_a_streamed_training_table(write_text, tmp_path):
    stream = StreamedTable(write_text("t.csv", "id,c,y\na,x,0\nb,y,1\nc,x,1\n"), "id", label="y", categorical=["c"],
                           chunk_rows=2)
    stream.schema.save(tmp_path / "s.json")
    assert Schema.load(tmp_path / "s.json").categorical == {"c": ["x", "y"]}
