"""The benchmark tables in /work/shared/data load cleanly (skipped where that folder is absent)."""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from vfl.data import iter_id_chunks, load_party_table

SHARED = Path("/work/shared/data")

# file, id column, label, task, rows, feature count, classes
CASES = [
    ("breast_hetero_guest.csv", "id", "y", "binary", 569, 10, ["0", "1"]),
    ("breast_hetero_host.csv", "id", None, None, 569, 20, None),
    ("default_credit_hetero_guest.csv", "id", "y", "binary", 30000, 13, ["0", "1"]),
    ("default_credit_hetero_host.csv", "id", None, None, 30000, 10, None),
    ("vehicle_scale_hetero_guest.csv", "id", "y", "multiclass", 846, 9, ["0", "1", "2", "3"]),
    ("vehicle_scale_hetero_host.csv", "id", None, None, 846, 9, None),
    ("student_hetero_guest.csv", "id", "y", "regression", 395, 6, None),
    ("student_hetero_host.csv", "id", None, None, 395, 7, None),
    ("motor_hetero_guest.csv", "idx", "motor_speed", "regression", None, 4, None),
    ("motor_hetero_host_1.csv", "idx", None, None, None, 3, None),
    ("motor_hetero_host_2.csv", "idx", None, None, None, 4, None),
]


@pytest.mark.skipif(not SHARED.is_dir(), reason="/work/shared/data is not available here")
@pytest.mark.parametrize("name, id_column, label, task, rows, width, classes", CASES, ids=[c[0] for c in CASES])
def test_shared_file_loads(name, id_column, label, task, rows, width, classes):
    table = load_party_table(SHARED / name, id_column=id_column, label=label, task=task)
    if rows is not None:
        assert len(table) == rows
    assert table.features.shape == (len(table), width) and np.isfinite(table.features).all()
    assert table.label_name == label and table.schema.label_classes == classes
    if label is not None and task == "regression":
        assert table.label.dtype == np.float64
    assert len(set(table.ids)) == len(table)


@pytest.mark.skipif(not SHARED.is_dir(), reason="/work/shared/data is not available here")
def test_guest_and_host_ids_match_and_chunk_reader_agrees():
    guest = load_party_table(SHARED / "breast_hetero_guest.csv", label="y")
    host = load_party_table(SHARED / "breast_hetero_host.csv")
    assert set(guest.ids) == set(host.ids)
    chunks = list(iter_id_chunks(SHARED / "breast_hetero_host.csv", "id", chunk_rows=200))
    assert [len(c) for c in chunks] == [200, 200, 169]
    assert np.concatenate(chunks).tolist() == host.ids.tolist()
