"""2-party PSI in bounded memory: sets spread over many spill buckets, IDs read in chunks, the spill encrypted and
deleted (psi/core/spill.py, psi/protocol/two_party.py)."""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

import psi
from psi import DuplicateIdError, PsiConfig, run_in_process
from psi.core import spill
from psi.protocol.ids import ChunkedIds, as_id_source

from .conftest import random_ids


class CountingIds:
    """IDs that exist only chunk by chunk (as read from a file), with where the session may spill."""

    def __init__(self, ids: list[str], spill_dir: Path):
        self.ids = ids
        self.spill_dir = spill_dir
        self.largest_chunk = 0

    def __len__(self) -> int:
        return len(self.ids)

    def chunks(self, size: int):
        for start in range(0, len(self.ids), size):
            part = self.ids[start:start + size]
            self.largest_chunk = max(self.largest_chunk, len(part))
            yield start, list(part)

    def gather(self, rows: np.ndarray) -> list:
        return [self.ids[int(r)] for r in rows]


def cfg(**kw):
    kw.setdefault("workers", 0)
    kw.setdefault("chunk_size", 97)
    return PsiConfig(**kw)


@pytest.fixture
def small_buckets(monkeypatch):
    """Buckets of 64 records: a few thousand IDs take the many-bucket path that very large sets take."""
    monkeypatch.setattr(spill, "BUCKET_ITEMS", 64)


@pytest.mark.parametrize("mode", ["intersection", "cardinality"])
def test_many_buckets_give_the_plain_intersection_in_the_agreed_order(engine, small_buckets, tmp_path, mode):
    u = random_ids(3000, 71)
    lists = {"a": CountingIds(u[:2000], tmp_path / "a"), "b": CountingIds(u[1200:], tmp_path / "b")}
    assert spill.bucket_count(2000) == 32
    results = run_in_process(lists, "a", cfg(mode=mode), engine=engine)
    assert results["a"].size == results["b"].size == 800
    if mode == "cardinality":
        assert results["a"].rows is None and results["b"].ids is None
        return
    a, b = results["a"], results["b"]
    assert a.ids == b.ids and set(a.ids) == set(u[1200:2000])
    assert [u[:2000][r] for r in a.rows] == a.ids and [u[1200:][r] for r in b.rows] == b.ids
    chunks = list(a.row_chunks(100))
    assert [len(c) for c in chunks] == [100] * 8 and np.array_equal(np.concatenate(chunks), a.rows)


def test_the_send_order_over_many_buckets_is_a_permutation_of_every_row(engine, small_buckets, tmp_path):
    """ShuffledIds: every row exactly once, not in row order, and no bucket in memory beyond its own."""
    from psi.protocol.base import ShuffledIds
    from psi.protocol.two_party import secure_permutation
    ids = CountingIds(random_ids(1000, 72), tmp_path)
    with spill.Spill(tmp_path) as sp:
        order = ShuffledIds(ids, sp, secure_permutation)
        taken = [order.take(97) for _ in range(12)]
    rows = np.concatenate([r for r, _ in taken])
    assert sorted(rows.tolist()) == list(range(1000))
    assert [v for _, part in taken for v in part] == [ids.ids[r] for r in rows]
    assert not np.array_equal(rows, np.arange(1000))
    assert ids.largest_chunk <= 1 << 16


def test_a_duplicate_in_another_bucket_is_still_found(engine, small_buckets, tmp_path):
    u = random_ids(2000, 73)
    mine = u[:1500] + ["  " + u[3]]          # equal to row 3 once stripped; its key lands in the same bucket
    with pytest.raises(DuplicateIdError, match=r"rows 3 and 1500"):
        run_in_process({"a": CountingIds(mine, tmp_path), "b": u[1000:]}, "a", cfg(), engine=engine)


def test_the_spill_holds_no_id_in_the_clear_and_is_deleted(engine, small_buckets, tmp_path):
    """What a session writes to disk is sealed under a key that only its process holds; the result's rows stay
    until the result is closed, then nothing of the session is left."""
    u = random_ids(1500, 74)
    lists = {"a": CountingIds(u[:1000], tmp_path / "a"), "b": CountingIds(u[500:], tmp_path / "b")}
    seen: list[bytes] = []
    real_write = spill.Buckets._write

    def write_and_keep(self, b):
        real_write(self, b)
        path = self._path(b)
        if path.exists():
            seen.append(path.read_bytes())

    spill.Buckets._write = write_and_keep
    try:
        results = run_in_process(lists, "a", cfg(), engine=engine)
    finally:
        spill.Buckets._write = real_write
    assert seen and results["a"].size == 500
    blob = b"".join(seen)
    for value in u[:1500:50]:
        assert value.encode() not in blob
    assert any((tmp_path / "a").iterdir())          # the result's rows, until it is closed
    rows = results["a"].rows
    results["a"].close()
    results["b"].close()
    assert not any((tmp_path / "a").iterdir()) and not any((tmp_path / "b").iterdir())
    assert len(rows) == 500
    with pytest.raises(psi.PsiConfigError, match="deleted"):
        list(results["b"].row_chunks())


def test_a_chunked_source_is_taken_as_it_is():
    ids = CountingIds(["x", "y"], Path("."))
    assert isinstance(ids, ChunkedIds) and as_id_source(ids) is ids
    assert not isinstance(["x"], ChunkedIds)


def test_buckets_keep_the_order_records_were_added_in(tmp_path):
    with spill.Spill(tmp_path) as sp:
        buckets = sp.buckets(3, {"n": np.int64, "pair": (np.float32, 2), "t": spill.TEXT}, budget=100)
        for start in range(0, 300, 7):
            n = np.arange(start, min(start + 7, 300))
            buckets.add(n % 3, {"n": n, "pair": np.stack([n, -n], axis=1).astype(np.float32),
                                "t": [f"v{i}" if i % 2 else f"v{i}".encode() for i in n]})
        for b in range(3):
            frame = buckets.read(b)
            assert frame["n"].tolist() == list(range(b, 300, 3))
            assert frame["pair"][:, 1].tolist() == [-float(i) for i in range(b, 300, 3)]
            assert frame["t"] == [f"v{i}" if i % 2 else f"v{i}".encode() for i in range(b, 300, 3)]
        assert len(list((sp.dir).iterdir())) == 3
    assert not Path(sp.dir).exists()
