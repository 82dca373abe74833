"""A party's rows for one job: loaded from its own dataset, aligned by PSI, split by ID, standardized.

Both the active and passive runtimes use it; all files it writes go under the job directory.
"""
from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from vfl.data import sealed
from vfl.data.atomic import atomic_write_bytes, atomic_write_text, serialized
from vfl.errors import DataError
from vfl.job.spec import JobSpec
from vfl.job.split import Split, split_by_id
from vfl.data.dataset import DatasetConfig


def read_dataset(ds: DatasetConfig):
    """The dataset's table as stored, read once per job: the data audit and `load_dataset` both take it."""
    from vfl.data import read_frame
    return read_frame(ds.path)


def load_dataset(ds: DatasetConfig, task: str, schema=None, with_label: bool = True, positive_class: str | None = None,
                 frame=None):
    from vfl.data import load_party_table
    return load_party_table(ds.path, id_column=ds.id_column, features=list(ds.features) if ds.features else None,
                            label=ds.label, read_label=with_label, categorical=list(ds.categorical),
                            schema=schema, task=task, missing=ds.missing, id_format=ds.id_format,
                            positive_class=positive_class, frame=frame)


def audit_for_job(ds: DatasetConfig, job_dir: Path, allowed: frozenset[str], uses_features: bool, frame=None):
    """The data audit every job runs at every party when it opens (vfl/governance/audit.py), on the table the job
    has read (`frame`, from `read_dataset`): its column statistics and detectors over an even sample of
    JOB_AUDIT_MAX_ROWS rows when the table is longer, its row count and quasi-identifier k over every row.

    The report is saved as the job's audit.json, for this party only. A job that trains or scores on the features
    refuses feature columns the audit flags as personal data unless this node's policy allows them by name.
    """
    from vfl.data.atomic import atomic_write_text
    from vfl.governance.audit import JOB_AUDIT_MAX_ROWS, audit_frame
    report = audit_frame(frame if frame is not None else read_dataset(ds), ds, max_rows=JOB_AUDIT_MAX_ROWS)
    atomic_write_text(job_dir / "audit.json", report.to_json(), "data audit")
    refused = report.pii_features(allowed) if uses_features else []
    if refused:
        raise DataError(f"dataset {ds.name!r}: the data audit refuses feature column(s) that look like personal "
                        f"data: {'; '.join(f.describe() for f in refused)}. Drop them from the dataset's features, "
                        f"or list them in this node's policy.allow_pii_columns if they are meant to be used")
    return report


@dataclass
class AlignedData:
    ids: np.ndarray            # common IDs in the agreed order
    features: np.ndarray       # this party's rows in that order (standardized, float32)
    label: np.ndarray | None
    split: Split
    feature_names: list[str]

    @property
    def feature_dim(self) -> int:
        return self.features.shape[1]


def save_alignment(job_dir: Path, ids: np.ndarray, own_rows: np.ndarray, party: str | None = None) -> None:
    """The PSI result, written atomically (a resume trusts whatever it finds here); the IDs last, so a job whose
    alignment write failed halfway has none (`has_alignment`)."""
    rows = serialized(lambda buffer: np.save(buffer, np.asarray(own_rows, dtype=np.int64)))
    atomic_write_bytes(job_dir / "aligned_rows.npy", rows, "PSI alignment", party)
    atomic_write_text(job_dir / "aligned_ids.json", json.dumps([str(i) for i in ids]), "PSI alignment", party)


def has_alignment(job_dir: Path) -> bool:
    return (job_dir / "aligned_rows.npy").exists() and (job_dir / "aligned_ids.json").exists()


def load_alignment(job_dir: Path) -> tuple[np.ndarray, np.ndarray]:
    rows_path, ids_path = job_dir / "aligned_rows.npy", job_dir / "aligned_ids.json"
    if not has_alignment(job_dir):
        raise DataError(f"job directory {job_dir}: no PSI alignment saved (run PSI first)")
    import io
    ids = json.loads(sealed.read_text(ids_path))
    return np.array(ids, dtype=object), np.load(io.BytesIO(sealed.read_bytes(rows_path)))


def align(table, ids: np.ndarray, own_rows: np.ndarray, spec: JobSpec, standardizer=None):
    """Rows in PSI order, split by ID, standardized with statistics of the training rows (or given ones)."""
    from vfl.data import Standardizer
    if len(own_rows) and (own_rows.min() < 0 or own_rows.max() >= len(table)):
        raise DataError(f"PSI alignment refers to row {own_rows.max()} but the table has {len(table)} rows")
    aligned = table.take(own_rows)
    split = split_by_id([str(i) for i in ids], spec.split.validation, spec.split.test, spec.split.seed)
    x = np.asarray(aligned.features, dtype=np.float64)
    if standardizer is None:
        standardizer = Standardizer.fit(x[split.train] if len(split.train) else x)
    x = standardizer.apply(x).astype(np.float32)
    label = aligned.label if aligned.label is not None else None
    return AlignedData(ids=ids, features=x, label=label, split=split,
                       feature_names=list(aligned.feature_names)), standardizer
