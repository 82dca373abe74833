"""A party's rows for one job: read from its own dataset, aligned by PSI, split by ID, standardized; on disk.

Nothing here holds a whole table. At open the dataset is read in chunks into the job's `table/` folder
(vfl/data/prepared.py); PSI reads the IDs from there; its result becomes the aligned columns in `aligned/`
(vfl/data/aligned.py) and the job's `aligned_rows.npy` and `aligned_ids.json`, written as streams. Training holds
the aligned IDs, the labels and the split positions in memory (the aligned ID list) and reads the features of each
batch from disk; prediction reads everything front to back. All files it writes go under the job directory.
"""
from __future__ import annotations

import json
import threading
from dataclasses import dataclass
from pathlib import Path
from typing import Iterator, Sequence

import numpy as np

from vfl.data import sealed
from vfl.data.aligned import AlignedTable, iter_json_list, write_aligned_table
from vfl.data.prepared import PreparedTable
from vfl.data.rowfiles import ArrayFile, NpyFile, _Writer
from vfl.errors import DataError
from vfl.job.spec import JobSpec
from vfl.job.split import Split, split_by_id
from vfl.data.dataset import DatasetConfig

TABLE_DIR = "table"
ALIGNED_DIR = "aligned"
ROWS_FILE = "aligned_rows.npy"
IDS_FILE = "aligned_ids.json"
_BUILDING = threading.Lock()   # one table build at a time per process: each holds a chunk of the file in memory


def prepare_dataset(ds: DatasetConfig, job_dir: Path, task: str, schema=None, with_label: bool = True,
                    positive_class: str | None = None, ids_only: bool = False,
                    party: str | None = None) -> PreparedTable:
    """This party's table for the job: built from the dataset in chunks the first time, reused when the job is
    opened again (a lost reply asked again, a resume, a restarted node)."""
    from vfl.data.streamed import StreamedTable
    directory = Path(job_dir) / TABLE_DIR
    with _BUILDING:
        existing = PreparedTable.open(directory)
        if existing is not None:
            return existing
        stream = StreamedTable(ds.path, id_column=ds.id_column, features=list(ds.features) if ds.features else None,
                               label=ds.label, read_label=with_label, categorical=list(ds.categorical),
                               schema=schema, task=task, missing=ds.missing, id_format=ds.id_format,
                               positive_class=positive_class, spill_dir=Path(job_dir), ids_only=ids_only)
        return PreparedTable.build(directory, stream, party)


def audit_for_job(ds: DatasetConfig, job_dir: Path, allowed: frozenset[str], uses_features: bool):
    """The data audit every job runs at every party when it opens (vfl/governance/audit.py), reading the table in
    chunks: its column statistics and detectors over an even sample of JOB_AUDIT_MAX_ROWS rows when the table is
    longer, its row count and quasi-identifier k over every row.

    The report is saved as the job's audit.json, for this party only. A job that trains or scores on the features
    refuses feature columns the audit flags as personal data unless this node's policy allows them by name.
    """
    from vfl.data.atomic import atomic_write_text
    from vfl.governance.audit import audit_stream
    report = audit_stream(ds)   # read in chunks; the column statistics over an even sample of a long table
    atomic_write_text(job_dir / "audit.json", report.to_json(), "data audit")
    refused = report.pii_features(allowed) if uses_features else []
    if refused:
        raise DataError(f"dataset {ds.name!r}: the data audit refuses feature column(s) that look like personal "
                        f"data: {'; '.join(f.describe() for f in refused)}. Drop them from the dataset's features, "
                        f"or list them in this node's policy.allow_pii_columns if they are meant to be used")
    return report


class StandardizedRows:
    """The aligned features as the models see them: rows read from disk on demand, standardized, float32
    (`rows[positions]`), so a batch costs its own rows and nothing more."""

    def __init__(self, features: ArrayFile, standardizer):
        self.file, self.standardizer = features, standardizer
        self.shape = features.shape

    def __len__(self) -> int:
        return len(self.file)

    def __getitem__(self, positions) -> np.ndarray:
        positions = np.asarray(positions)
        if positions.dtype == bool:
            positions = np.flatnonzero(positions)
        return self.standardizer.apply(self.file.take(positions)).astype(np.float32)

    def range(self, start: int, stop: int) -> np.ndarray:
        return self.standardizer.apply(self.file.read(start, stop)).astype(np.float32)


@dataclass
class AlignedData:
    ids: Sequence[str]          # common IDs in the agreed order (training: in memory; prediction: on disk)
    features: StandardizedRows  # this party's rows in that order, read on demand
    label: np.ndarray | None
    split: Split | None         # None for a prediction
    feature_names: list[str]
    table: AlignedTable | None = None

    @property
    def feature_dim(self) -> int:
        return self.features.shape[1]


def save_alignment(job_dir: Path, table: PreparedTable, result, canon, party: str | None = None) -> AlignedTable:
    """The PSI result, written as streams: the aligned columns, then `aligned_rows.npy`, then `aligned_ids.json`
    (a resume trusts whatever it finds; the IDs last, so a job whose alignment write failed halfway has none)."""
    job_dir = Path(job_dir)
    aligned = write_aligned_table(table, result.row_chunks(), job_dir / ALIGNED_DIR, canon, party)
    _write_rows_npy(job_dir / ROWS_FILE, aligned.rows, party)
    ids = _Writer(job_dir / IDS_FILE, "PSI alignment", party)
    for part in iter_json_list(values for _, values in aligned.ids.chunks()):
        ids.write(part)
    ids.close()
    return aligned


def _write_rows_npy(path: Path, rows: ArrayFile, party: str | None) -> None:
    """`np.save` of the rows, written a chunk at a time (the header says the length first)."""
    import io
    header = io.BytesIO()
    np.lib.format.write_array_header_1_0(header, {"descr": np.dtype(np.int64).str, "fortran_order": False,
                                                  "shape": (len(rows),)})
    out = _Writer(path, "PSI alignment", party)
    out.write(header.getvalue())
    for _, chunk in rows.chunks():
        out.write(np.ascontiguousarray(chunk, dtype=np.int64).tobytes())
    out.close()


def release_tables(job_dir: Path, *tables) -> None:
    """A job that ended for good no longer needs its copy of the table nor the aligned columns (they can be as
    large as the dataset): close them and delete both folders. `aligned_rows.npy` and `aligned_ids.json` stay."""
    import shutil
    for table in tables:
        if table is not None:
            table.close()
    for name in (TABLE_DIR, ALIGNED_DIR):
        shutil.rmtree(Path(job_dir) / name, ignore_errors=True)


def has_alignment(job_dir: Path) -> bool:
    return (job_dir / ROWS_FILE).exists() and (job_dir / IDS_FILE).exists()


def load_alignment(job_dir: Path) -> tuple[np.ndarray, np.ndarray]:
    """The agreed IDs and this party's rows, whole (tests and small jobs; a job reads `aligned_table`)."""
    rows_path, ids_path = job_dir / ROWS_FILE, job_dir / IDS_FILE
    if not has_alignment(job_dir):
        raise DataError(f"job directory {job_dir}: no PSI alignment saved (run PSI first)")
    import io
    ids = json.loads(sealed.read_text(ids_path))
    return np.array(ids, dtype=object), np.load(io.BytesIO(sealed.read_bytes(rows_path)))


def alignment_size(job_dir: Path) -> int:
    """How many rows PSI aligned, from the header of `aligned_rows.npy` (its first and, sealed, its last segment are
    read; nothing else)."""
    if not has_alignment(job_dir):
        raise DataError(f"job directory {job_dir}: no PSI alignment saved (run PSI first)")
    rows = NpyFile(Path(job_dir) / ROWS_FILE)
    try:
        return len(rows)
    finally:
        rows.close()


def aligned_table(job_dir: Path, table: PreparedTable | None, canon, party: str | None = None) -> AlignedTable:
    """The aligned columns of the job; written again from `aligned_rows.npy` if a crash left them unfinished."""
    existing = AlignedTable.open(Path(job_dir) / ALIGNED_DIR)
    if existing is not None:
        return existing
    if not has_alignment(job_dir):
        raise DataError(f"job directory {job_dir}: no PSI alignment saved (run PSI first)")
    if table is None:
        raise DataError(f"job directory {job_dir}: the aligned rows cannot be rebuilt without the job's table")
    rows = NpyFile(Path(job_dir) / ROWS_FILE)   # sealed at rest, it is read through its opener, not mapped

    def chunks() -> Iterator[np.ndarray]:
        for _, chunk in rows.chunks(1 << 16):
            yield chunk.astype(np.int64, copy=False)
    try:
        return write_aligned_table(table, chunks(), Path(job_dir) / ALIGNED_DIR, canon, party)
    finally:
        rows.close()


def fit_standardizer(features: ArrayFile, positions: np.ndarray):
    """Column means and population standard deviations of the rows at `positions` (two passes over the file, a
    block at a time: the mean first, then the squared deviations from it)."""
    from vfl.data import Standardizer
    width = features.shape[1]
    if len(positions) == 0:
        positions = np.arange(len(features))
    if len(positions) == 0:
        return Standardizer(np.zeros(width), np.ones(width))
    mask = np.zeros(len(features), dtype=bool)
    mask[positions] = True
    total = np.zeros(width)
    for start, block in features.chunks():
        total += block[mask[start:start + len(block)]].sum(axis=0)
    mean = total / len(positions)
    squares = np.zeros(width)
    for start, block in features.chunks():
        squares += ((block[mask[start:start + len(block)]] - mean) ** 2).sum(axis=0)
    std = np.sqrt(squares / len(positions))
    return Standardizer(mean, np.where(std > 0, std, 1.0))


def align(aligned: AlignedTable, spec: JobSpec, standardizer=None, ids_in_memory: bool = True):
    """The job's view of its aligned rows: the split by ID, the standardizer (fitted on the training rows, or given),
    the features read on demand. Training keeps the IDs and labels in memory; prediction (`ids_in_memory` False)
    reads them from disk."""
    if ids_in_memory:
        ids = np.array(list(aligned.ids), dtype=object)
        split = split_by_id(ids, spec.split.validation, spec.split.test, spec.split.seed)
    else:
        ids, split = aligned.ids, None   # a prediction: every row, front to back
    if standardizer is None:
        standardizer = fit_standardizer(aligned.features, split.train)
    label = np.asarray(aligned.labels.read(0, len(aligned))) if aligned.labels is not None else None
    return AlignedData(ids=ids, features=StandardizedRows(aligned.features, standardizer), label=label, split=split,
                       feature_names=aligned.feature_names, table=aligned), standardizer
