"""A party's rows in the order PSI agreed on, written from its prepared table in bounded memory.

PSI gives this party's row numbers in the agreed order (a permutation of a subset of the table's rows). Reading
them one by one would seek all over the table; holding the table would not fit. `write_aligned_table` regroups
instead, with two passes over buckets on disk (psi.core.spill, encrypted under a key held in memory):

1. (position, row) pairs go to buckets by row block (`block_rows` consecutive rows of the table);
2. the table is read front to back, a block at a time: each block's pairs take their row's values, which go to
   buckets by position block;
3. each position block is sorted by position and appended to the aligned columns.

Memory: one block of the table, one bucket, the spill's buffer; disk: the columns twice over, transiently. The
aligned columns (`aligned/` in the job's folder, vfl/data/rowfiles.py): the canonical IDs (as PSI compared them),
the IDs as the file wrote them, the features, the label and the table rows; `meta.json` last. Training then reads
batches of rows from it (`AlignedTable.features.take`), prediction reads it front to back.
"""
from __future__ import annotations

import json
import shutil
from pathlib import Path
from typing import Iterable, Iterator

import numpy as np

from psi.core.hashing import Canonicalization, canonical_id
from psi.core.spill import TEXT, Spill, bucket_count
from vfl.data import sealed
from vfl.data.atomic import atomic_write_text
from vfl.data.prepared import PreparedTable
from vfl.data.rowfiles import ArrayFile, ArrayWriter, TextFile, TextWriter
from vfl.errors import DataError

META = "meta.json"
KIND = "PSI alignment"
#: table rows read at once while aligning (a block of the table, and about the rows of one bucket), at most...
BLOCK_ROWS = 1 << 16
#: ...and about this many bytes of features and IDs per block, so that a wide table's blocks stay as small
BLOCK_BYTES = 4 << 20


class AlignedTable:
    """The aligned columns of one job at one party."""

    def __init__(self, directory: Path, meta: dict):
        self.directory, self.meta = Path(directory), meta
        self.ids = TextFile(self.directory / "ids")
        self.written_ids = TextFile(self.directory / "written_ids")
        self.features = ArrayFile(self.directory / "features")
        self.rows = ArrayFile(self.directory / "rows")
        self.labels = ArrayFile(self.directory / "label") if meta["label"] else None

    def __len__(self) -> int:
        return int(self.meta["rows"])

    @property
    def feature_names(self) -> list[str]:
        return list(self.meta["feature_names"])

    @classmethod
    def open(cls, directory: Path) -> "AlignedTable | None":
        path = Path(directory) / META
        if not path.exists():
            return None
        try:
            return cls(directory, json.loads(sealed.read_text(path)))
        except (OSError, ValueError, KeyError, DataError):
            return None

    def close(self) -> None:
        for f in (self.ids, self.written_ids, self.features, self.rows, self.labels):
            if f is not None:
                f.close()

    def remove(self) -> None:
        self.close()
        shutil.rmtree(self.directory, ignore_errors=True)


def _columns(width: int, label_dtype) -> dict:
    columns = {"pos": np.int64, "row": np.int64, "id": TEXT, "written": TEXT, "x": (np.float64, width)}
    if label_dtype is not None:
        columns["y"] = label_dtype
    return columns


def write_aligned_table(table: PreparedTable, row_chunks: Iterable[np.ndarray], directory: Path,
                        canon: Canonicalization, party: str | None = None,
                        block_rows: int | None = None) -> AlignedTable:
    """The rows `row_chunks` gives (table rows in the agreed order, a chunk at a time) as aligned columns in
    `directory`; see the module docstring."""
    directory = Path(directory)
    shutil.rmtree(directory, ignore_errors=True)
    directory.mkdir(parents=True, exist_ok=True)
    n = len(table)
    block_rows = block_rows or max(256, min(BLOCK_ROWS, BLOCK_BYTES // (8 * table.feature_dim + 64)))
    blocks = bucket_count(n, block_rows)
    block_rows = -(-max(n, 1) // blocks)          # more rows per block above MAX_BUCKETS blocks
    label_dtype = table.labels.dtype if table.labels is not None else None
    writers: list = []
    try:
        with Spill(directory, prefix="align-") as spill:
            pairs = spill.buckets(blocks, {"pos": np.int64, "row": np.int64})
            count = 0
            for rows in row_chunks:
                rows = np.asarray(rows, dtype=np.int64)
                if len(rows) and (rows.min() < 0 or rows.max() >= n):
                    raise DataError(f"PSI alignment refers to row {int(rows.max())} but the table has {n} rows")
                pairs.add(rows // block_rows, {"pos": np.arange(count, count + len(rows), dtype=np.int64),
                                               "row": rows})
                count += len(rows)
            pairs.flush()
            positions = bucket_count(count, block_rows)
            per_position = -(-max(count, 1) // positions)
            values = spill.buckets(positions, _columns(table.feature_dim, label_dtype))
            for block in table.blocks(block_rows):
                b = block.start // block_rows
                want = pairs.read(b)
                pairs.drop(b)
                local = (want["row"] - block.start).tolist()
                frame = {"pos": want["pos"], "row": want["row"],
                         "id": [canonical_id(block.ids[i], canon, int(block.start + i)) for i in local],
                         "written": [block.written_ids[i] for i in local], "x": block.features[local]}
                if label_dtype is not None:
                    frame["y"] = block.label[local]
                values.add(want["pos"] // per_position, frame)
            values.flush()
            ids = TextWriter(directory / "ids", KIND, party)
            written = TextWriter(directory / "written_ids", KIND, party)
            features = ArrayWriter(directory / "features", np.float64, table.feature_dim, KIND, party)
            rows_out = ArrayWriter(directory / "rows", np.int64, None, KIND, party)
            labels = ArrayWriter(directory / "label", label_dtype, None, KIND, party) \
                if label_dtype is not None else None
            writers = [w for w in (ids, written, features, rows_out, labels) if w is not None]
            for c in range(values.count):
                frame = values.read(c)
                values.drop(c)
                order = np.argsort(frame["pos"], kind="stable")
                ids.append([frame["id"][i] for i in order.tolist()])
                written.append([frame["written"][i] for i in order.tolist()])
                features.append(frame["x"][order])
                rows_out.append(frame["row"][order])
                if labels is not None:
                    labels.append(frame["y"][order])
            for w in writers:
                w.close()
    except BaseException:
        for w in writers:
            w.discard()
        shutil.rmtree(directory, ignore_errors=True)
        raise
    meta = {"rows": count, "feature_names": table.feature_names, "label": table.label_name is not None}
    atomic_write_text(directory / META, json.dumps(meta), KIND, party)
    return AlignedTable(directory, meta)


def iter_json_list(values: Iterator[list[str]]) -> Iterator[bytes]:
    """A JSON array of strings, a chunk at a time: the bytes json.dumps(list) gives for the whole list."""
    yield b"["
    first = True
    for chunk in values:
        if not chunk:
            continue
        text = ", ".join(json.dumps(v) for v in chunk)
        yield (text if first else ", " + text).encode()
        first = False
    yield b"]"
