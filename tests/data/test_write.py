"""write_aligned validates before it creates anything, then writes atomically (temp file + rename)."""
from __future__ import annotations

import os

import numpy as np
import pytest

from vfl.data import load_party_table, write_aligned
from vfl.data import writer as writer_module
from vfl.errors import DataError

from .conftest import assert_names

TEXT = "id,y,size,color\n007,yes,1.25,red\nb,no,2,blue\nc,yes,3,red\n"


def table(write_text):
    return load_party_table(write_text("src.csv", TEXT), label="y", categorical=["color"])


@pytest.mark.parametrize("name", ["out.csv", "out.csv.gz", "out.parquet", "out.pq", "out.tsv"])
def test_round_trip(write_text, tmp_path, name):
    aligned = table(write_text).take([2, 1])
    out = write_aligned(aligned, tmp_path / "sub" / name)
    again = load_party_table(out, label="y")
    assert again.ids.tolist() == ["c", "b"]
    assert again.feature_names == ["size", "color=blue", "color=red"]
    np.testing.assert_array_equal(again.features, aligned.features)
    assert again.label_texts().tolist() == ["yes", "no"]  # class names, not indices
    assert sorted(p.name for p in out.parent.iterdir()) == [name]  # the temp file is gone


def test_gzip_output_is_gzip(write_text, tmp_path):
    out = write_aligned(table(write_text), tmp_path / "o.csv.gz")
    assert out.read_bytes()[:2] == b"\x1f\x8b"


def test_ids_only(write_text, tmp_path):
    out = write_aligned(table(write_text), tmp_path / "ids.csv", ids_only=True)
    assert out.read_text() == "id\n007\nb\nc\n"


def no_files_after(tmp_path, call) -> str:
    before = sorted(str(p) for p in tmp_path.rglob("*"))
    with pytest.raises(DataError) as info:
        call()
    assert sorted(str(p) for p in tmp_path.rglob("*")) == before
    return str(info.value)


def test_invalid_table_writes_nothing(write_text, tmp_path):
    bad = table(write_text)
    bad.features[1, 0] = np.nan
    msg = no_files_after(tmp_path, lambda: write_aligned(bad, tmp_path / "new" / "out.csv"))
    assert_names(msg, "out.csv", "src.csv", "column 'size'", "row 2 (id 'b')", "nan")
    assert not (tmp_path / "new").exists()


def test_duplicate_ids_write_nothing(write_text, tmp_path):
    bad = table(write_text)
    bad.ids[2] = "007"
    msg = no_files_after(tmp_path, lambda: write_aligned(bad, tmp_path / "out.parquet"))
    assert_names(msg, "out.parquet", "duplicate id '007'", "rows 1 and 3")


def test_bad_shape_and_destination_write_nothing(write_text, tmp_path):
    good = table(write_text)
    bad = good.take([0, 1])
    bad.ids = bad.ids[:1]
    assert "shape" in no_files_after(tmp_path, lambda: write_aligned(bad, tmp_path / "out.csv"))
    assert "unsupported" in no_files_after(tmp_path, lambda: write_aligned(good, tmp_path / "out.xlsx"))
    assert "source" in no_files_after(tmp_path, lambda: write_aligned(good, good.source))


def test_failure_while_writing_leaves_old_file_and_no_temp(write_text, tmp_path, monkeypatch):
    out = tmp_path / "out.csv"
    out.write_text("old contents")

    def explode(frame, tmp, path):
        with open(tmp, "w") as handle:
            handle.write("partial")
        raise OSError("disk full")

    monkeypatch.setattr(writer_module, "_write_frame", explode)
    # a clear one-line error for the CLI (a VflError), naming the file and the cause; it was a bare OSError
    from vfl.errors import StorageError
    with pytest.raises(StorageError, match=r"cannot write its aligned table .*out\.csv: disk full"):
        write_aligned(table(write_text), out)
    assert out.read_text() == "old contents"
    assert sorted(os.listdir(tmp_path)) == ["out.csv", "src.csv"]
