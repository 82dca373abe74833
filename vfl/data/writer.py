"""Writing aligned rows (after PSI) for the CLI: validate everything first, then write atomically."""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd

from vfl.data.atomic import atomic_write
from vfl.data.columns import Where, check_unique_ids, is_missing
from vfl.data.readers import file_kind
from vfl.data.table import PartyTable
from vfl.errors import DataError, quote


def _check_shapes(table: PartyTable) -> None:
    rows = len(table.ids)
    if table.features.shape != (rows, len(table.feature_names)):
        raise DataError(f"features have shape {table.features.shape}, expected ({rows}, {len(table.feature_names)})")
    if table.label is not None and len(table.label) != rows:
        raise DataError(f"label has {len(table.label)} rows, expected {rows}")


def _check_values(table: PartyTable) -> None:
    source = table.source.name
    for i, value in enumerate(table.ids):
        if not isinstance(value, str) or is_missing(value):
            raise Where(source, table.schema.id_column).error(i, f"empty or non-text id {quote(value)}")
    check_unique_ids(table.ids, Where(source, table.schema.id_column))
    bad = np.argwhere(~np.isfinite(np.asarray(table.features, dtype=np.float64)))
    if len(bad):
        i, k = (int(v) for v in bad[0])
        raise Where(source, table.feature_names[k], table.ids).error(i, f"value {quote(table.features[i, k])} is not finite")
    if table.label is not None and table.label.dtype.kind == "f":
        bad_label = np.flatnonzero(~np.isfinite(table.label))
        if len(bad_label):
            i = int(bad_label[0])
            raise Where(source, str(table.label_name), table.ids).error(i, f"label {quote(table.label[i])} is not finite")


def _columns(table: PartyTable, ids_only: bool) -> dict[str, np.ndarray]:
    """Output columns: id, then features, then the label (class names for classification)."""
    columns = {table.schema.id_column: table.ids}
    if not ids_only:
        for k, name in enumerate(table.feature_names):
            if name in columns:
                raise DataError(f"column name {name!r} occurs twice in the output")
            columns[name] = table.features[:, k]
        if table.label is not None:
            if table.label_name in columns or not table.label_name:
                raise DataError(f"label name {table.label_name!r} is empty or collides with another column")
            columns[table.label_name] = table.label_texts()
    return columns


def validate_for_write(table: PartyTable, path: Path, ids_only: bool = False) -> pd.DataFrame:
    """The frame `write_aligned` would write; any defect is a DataError naming the output file."""
    file_kind(path)
    if path.resolve() == Path(table.source).resolve():
        raise DataError(f"{path}: refusing to overwrite the table's own source file")
    try:
        _check_shapes(table)
        _check_values(table)
        return pd.DataFrame(_columns(table, ids_only))
    except DataError as exc:
        raise DataError(f"cannot write {path.name}: {exc}") from None


def _write_frame(frame: pd.DataFrame, tmp: str, path: Path) -> None:
    name = path.name.lower()
    if file_kind(path) == "parquet":
        frame.to_parquet(tmp, index=False, engine="pyarrow")
    else:
        frame.to_csv(tmp, index=False, sep="\t" if name.endswith(".tsv") else ",",
                     compression="gzip" if name.endswith(".gz") else None)


def write_aligned(table: PartyTable, path: str | Path, ids_only: bool = False) -> Path:
    """Write rows (id, features, label) to CSV/Parquet by extension, atomically.

    Everything is validated before any file or folder is created; then the data goes to a temp file in
    the destination folder (created if needed) that is renamed into place, so a failure leaves nothing.
    """
    path = Path(path)
    frame = validate_for_write(table, path, ids_only)
    path.parent.mkdir(parents=True, exist_ok=True)
    return atomic_write(path, lambda tmp: _write_frame(frame, tmp, path), f"aligned table {path}")
