"""Reading CSV and Parquet files with every column as text first, so IDs like '007' stay '007'."""
from __future__ import annotations

from pathlib import Path
from typing import Iterator

import numpy as np
import pandas as pd

from vfl.errors import DataError

CSV_SUFFIXES = (".csv", ".csv.gz", ".tsv")
PARQUET_SUFFIXES = (".parquet", ".pq")


def file_kind(path: Path) -> str:
    name = path.name.lower()
    if name.endswith(CSV_SUFFIXES):
        return "csv"
    if name.endswith(PARQUET_SUFFIXES):
        return "parquet"
    raise DataError(f"{path.name}: unsupported file type (use .csv, .csv.gz, .tsv, .parquet or .pq)")


def read_frame(path: str | Path) -> pd.DataFrame:
    """The whole table, every column as object strings (CSV) or its stored type (Parquet)."""
    path = Path(path)
    kind = file_kind(path)
    if not path.is_file():
        raise DataError(f"{path}: file not found")
    try:
        if kind == "csv":
            frame = pd.read_csv(path, dtype=str, keep_default_na=False, na_values=[],
                                sep="\t" if path.name.lower().endswith(".tsv") else ",")
        else:
            frame = pd.read_parquet(path)
    except pd.errors.EmptyDataError:
        raise DataError(f"{path.name}: the file is empty") from None
    except pd.errors.ParserError as exc:
        raise DataError(f"{path.name}: not a valid CSV file: {str(exc).strip()}") from None
    except (OSError, ValueError) as exc:
        raise DataError(f"{path.name}: cannot read {kind} file: {exc}") from None
    if frame.empty:
        raise DataError(f"{path.name}: the file has a header but no data rows")
    frame.columns = [str(c) for c in frame.columns]
    duplicated = frame.columns[frame.columns.duplicated()].tolist()
    if duplicated:
        raise DataError(f"{path.name}: column {duplicated[0]!r} appears more than once in the header")
    return frame


def _check_ids(path: Path, column: str, ids: np.ndarray, first_row: int) -> np.ndarray:
    out = np.empty(len(ids), dtype=object)
    for i, value in enumerate(ids):
        if value is None or (isinstance(value, float) and np.isnan(value)):
            raise DataError(f"{path.name}: column {column!r}: row {first_row + i}: empty id")
        text = str(value)
        if not text.strip():
            raise DataError(f"{path.name}: column {column!r}: row {first_row + i}: empty id")
        out[i] = text
    return out


def iter_id_chunks(path: str | Path, id_column: str, chunk_rows: int = 1_000_000) -> Iterator[np.ndarray]:
    """IDs of a very large file, chunk by chunk, as object arrays of str (empty IDs are refused)."""
    path = Path(path)
    kind = file_kind(path)
    if not path.is_file():
        raise DataError(f"{path}: file not found")
    row = 1
    if kind == "csv":
        try:
            reader = pd.read_csv(path, dtype=str, keep_default_na=False, na_values=[], usecols=[id_column],
                                 chunksize=chunk_rows, sep="\t" if path.name.lower().endswith(".tsv") else ",")
            for chunk in reader:
                yield _check_ids(path, id_column, chunk[id_column].to_numpy(), row)
                row += len(chunk)
        except ValueError as exc:
            if "Usecols" in str(exc) or "not in list" in str(exc) or "do not match" in str(exc):
                raise DataError(f"{path.name}: no id column {id_column!r}") from None
            raise DataError(f"{path.name}: cannot read: {exc}") from None
        return
    import pyarrow.parquet as pq
    try:
        handle = pq.ParquetFile(path)
    except Exception as exc:  # noqa: BLE001 - pyarrow raises several types
        raise DataError(f"{path.name}: cannot read parquet file: {exc}") from None
    if id_column not in handle.schema_arrow.names:
        raise DataError(f"{path.name}: no id column {id_column!r} (columns: {handle.schema_arrow.names})")
    for batch in handle.iter_batches(batch_size=chunk_rows, columns=[id_column]):
        ids = batch.column(0).to_numpy(zero_copy_only=False)
        yield _check_ids(path, id_column, ids, row)
        row += len(ids)
