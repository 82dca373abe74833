"""A party's table for one job: read from its dataset once, checked and encoded, and kept on disk in the job's
directory, column by column (vfl/data/rowfiles.py), so that no step of the job holds the whole table in memory.

`PreparedTable.build` streams the dataset (vfl/data/streamed.py) into the job's `table/` folder: the IDs (after
`id_format`), the IDs as the file wrote them (when `id_format` rewrote them), the feature matrix (float64) and the
label; then it checks the IDs are unique across the whole table (64-bit keyed hashes of the IDs in buckets on disk,
psi.core.spill; a candidate pair is confirmed on the IDs themselves) and writes `meta.json` last, so a folder
without it is an unfinished build that the next open starts again. The job reads what it needs from there: PSI the
IDs chunk by chunk (`id_source`), the alignment after PSI every column block by block (`blocks`).

Memory while building: one chunk of the file (vfl.data.readers.chunk_rows_for), the spill's buffer and one bucket of keys.
A snapshot also means a dataset file replaced during the job cannot misalign its rows.
"""
from __future__ import annotations

import json
import os
import shutil
from dataclasses import dataclass
from pathlib import Path
from typing import Iterator

import numpy as np
import pandas as pd

from psi.core.spill import Spill, bucket_bits, leading_bits
from vfl.data import sealed
from vfl.data.atomic import atomic_write_text
from vfl.data.rowfiles import ArrayFile, ArrayWriter, TextFile, TextWriter
from vfl.data.schema import Schema
from vfl.data.streamed import StreamedTable
from vfl.errors import DataError, quote

META = "meta.json"
KIND = "job table"


@dataclass
class Block:
    """Rows start .. start + len - 1 of a prepared table."""
    start: int
    ids: list[str]
    written_ids: list[str]
    features: np.ndarray
    label: np.ndarray | None

    def __len__(self) -> int:
        return len(self.ids)


class IdColumn:
    """A prepared table's IDs as PSI reads them (psi.protocol.ids.ChunkedIds): `len`, `chunks`, `gather`, and where
    a session puts its temporary files."""

    def __init__(self, ids: TextFile, spill_dir: Path | None):
        self.ids, self.spill_dir = ids, spill_dir

    def __len__(self) -> int:
        return len(self.ids)

    def __getitem__(self, i: int) -> str:
        return self.ids[i]

    def chunks(self, size: int) -> Iterator[tuple[int, list]]:
        return self.ids.chunks(size)

    def gather(self, rows) -> list:
        return self.ids.gather(rows)


class PreparedTable:
    def __init__(self, directory: Path, meta: dict):
        self.directory = Path(directory)
        self.meta = meta
        self.schema = Schema.from_json(json.dumps(meta["schema"]))
        self.ids = TextFile(self.directory / "ids")
        self._written = TextFile(self.directory / "written_ids") if meta["written_ids"] else None
        self.features = ArrayFile(self.directory / "features")
        self.labels = ArrayFile(self.directory / "label") if meta["label"] is not None else None

    # ------------------------------------------------------------------ what the job asks about the table
    def __len__(self) -> int:
        return int(self.meta["rows"])

    @property
    def feature_names(self) -> list[str]:
        return list(self.meta["feature_names"])

    @property
    def feature_dim(self) -> int:
        return len(self.meta["feature_names"])

    @property
    def label_name(self) -> str | None:
        return self.meta["label"]

    @property
    def unknown_categories(self) -> dict[str, int]:
        return dict(self.meta["unknown_categories"])

    @property
    def written_ids(self) -> TextFile:
        return self._written if self._written is not None else self.ids

    @property
    def source(self) -> Path:
        return Path(self.meta["source"])

    def id_source(self, spill_dir: Path | None) -> IdColumn:
        return IdColumn(self.ids, spill_dir)

    def blocks(self, rows: int) -> Iterator[Block]:
        """The table front to back, `rows` rows at a time."""
        for start, ids in self.ids.chunks(rows):
            stop = start + len(ids)
            written = self._written._range(start, stop) if self._written is not None else ids
            label = self.labels.read(start, stop) if self.labels is not None else None
            yield Block(start, ids, written, self.features.read(start, stop), label)

    def close(self) -> None:
        for f in (self.ids, self._written, self.features, self.labels):
            if f is not None:
                f.close()

    def remove(self) -> None:
        """Delete the table's columns (the job's alignment keeps what it needs)."""
        self.close()
        shutil.rmtree(self.directory, ignore_errors=True)

    # ------------------------------------------------------------------ building it
    @classmethod
    def open(cls, directory: Path) -> "PreparedTable | None":
        """The table built in `directory` earlier (a job reopened, a node restarted), or None."""
        path = Path(directory) / META
        if not path.exists():
            return None
        try:
            return cls(directory, json.loads(sealed.read_text(path)))
        except (OSError, ValueError, KeyError, DataError):
            return None   # damaged: built again

    @classmethod
    def build(cls, directory: Path, table: StreamedTable, party: str | None = None) -> "PreparedTable":
        directory = Path(directory)
        shutil.rmtree(directory, ignore_errors=True)
        directory.mkdir(parents=True, exist_ok=True)
        width = len(table.feature_names)
        label_dtype = np.float64 if table.task == "regression" else np.int64
        ids = TextWriter(directory / "ids", KIND, party)
        written = TextWriter(directory / "written_ids", KIND, party) \
            if table.id_format is not None and table.id_format.active else None
        features = ArrayWriter(directory / "features", np.float64, width, KIND, party)
        labels = ArrayWriter(directory / "label", label_dtype, None, KIND, party) if table.label is not None else None
        writers = [w for w in (ids, written, features, labels) if w is not None]
        try:
            with Spill(directory, prefix="keys-") as spill:
                keys = _KeyCheck(spill, table)
                for chunk in table.chunks():
                    ids.append(chunk.ids.tolist())
                    if written is not None:
                        written.append(chunk.written_ids.tolist())
                    features.append(chunk.features)
                    if labels is not None:
                        labels.append(np.asarray(chunk.label, dtype=label_dtype))
                    keys.add(chunk.first_row - 1, chunk.ids)
                for w in writers:
                    w.close()
                keys.check(TextFile(directory / "ids"))
        except BaseException:
            for w in writers:
                w.discard()
            shutil.rmtree(directory, ignore_errors=True)
            raise
        meta = {"rows": table.rows, "feature_names": table.feature_names, "schema": json.loads(table.schema.to_json()),
                "label": table.label, "written_ids": written is not None,
                "unknown_categories": table.unknown_categories, "source": str(table.path)}
        atomic_write_text(directory / META, json.dumps(meta), KIND, party)
        return cls(directory, meta)


class _KeyCheck:
    """IDs unique across the whole table, in bounded memory: a keyed 64-bit hash of every ID goes to buckets on disk
    by its leading bits; equal hashes in a bucket are candidates, confirmed on the IDs."""

    def __init__(self, spill: Spill, table: StreamedTable):
        self.table = table
        self.key = os.urandom(8).hex()   # pandas' hash_array takes a 16-character key
        self.bits = bucket_bits(_row_estimate(table))
        self.buckets = spill.buckets(1 << self.bits, {"hash": np.uint64, "row": np.int64})

    def add(self, first: int, ids: np.ndarray) -> None:
        hashes = pd.util.hash_array(np.asarray(ids, dtype=object), hash_key=self.key).astype(np.uint64)
        self.buckets.add(leading_bits(hashes, self.bits), {"hash": hashes,
                                                           "row": np.arange(first, first + len(ids), dtype=np.int64)})

    def check(self, ids: TextFile) -> None:
        self.buckets.flush()
        table = self.table
        first_clash = None
        for b in range(self.buckets.count):
            frame = self.buckets.read(b)
            self.buckets.drop(b)
            order = np.argsort(frame["hash"], kind="stable")
            hashes, rows = frame["hash"][order], frame["row"][order]
            for k in np.flatnonzero(hashes[1:] == hashes[:-1]).tolist():
                a, c = sorted((int(rows[k]), int(rows[k + 1])))
                if ids[a] == ids[c] and (first_clash is None or c < first_clash[1]):
                    first_clash = (a, c)
        if first_clash is not None:
            a, c = first_clash
            after = " (after id_format)" if table.id_format is not None and table.id_format.active else ""
            raise DataError(f"{table.path.name}: column {table.id_column!r}: duplicate id {quote(ids[c])} in rows "
                            f"{a + 1} and {c + 1}{after}")


def _row_estimate(table: StreamedTable) -> int:
    """Rows of the file, estimated from its size (the key buckets are sized before the rows are counted)."""
    try:
        return max(1, table.path.stat().st_size // 16)
    except OSError:
        return 1
