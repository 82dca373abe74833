"""Reading CSV and Parquet files. CSV cells are read as text (so IDs like '007' stay '007'), Parquet
columns keep their stored types. Every read failure becomes a DataError naming the file, never a
pandas or pyarrow traceback.

The file type comes from the extension: .csv, .csv.gz, .tsv (tab-separated), .parquet, .pq.
"""
from __future__ import annotations

import csv
import zlib
from contextlib import contextmanager
from pathlib import Path
from typing import Iterator

import numpy as np
import pandas as pd
import pyarrow as pa

from vfl.data.columns import Where, id_strings
from vfl.errors import DataError

CSV_SUFFIXES = (".csv", ".csv.gz", ".tsv")
PARQUET_SUFFIXES = (".parquet", ".pq")
_CSV_OPTIONS = {"dtype": str, "keep_default_na": False, "na_values": [], "encoding": "utf-8"}


def file_kind(path: Path) -> str:
    """'csv' or 'parquet', from the file name's extension."""
    name = path.name.lower()
    if name.endswith(CSV_SUFFIXES):
        return "csv"
    if name.endswith(PARQUET_SUFFIXES):
        return "parquet"
    raise DataError(f"{path.name}: unsupported file type (use .csv, .csv.gz, .tsv, .parquet or .pq)")


def _separator(path: Path) -> str:
    return "\t" if path.name.lower().endswith(".tsv") else ","


def _existing(path: str | Path) -> tuple[Path, str]:
    path = Path(path)
    kind = file_kind(path)
    if not path.exists():
        raise DataError(f"{path}: file not found")
    if not path.is_file():
        raise DataError(f"{path}: not a regular file")
    return path, kind


@contextmanager
def _read_errors(path: Path, kind: str) -> Iterator[None]:
    """Turn whatever pandas, pyarrow, gzip or the OS raise while reading into one DataError."""
    try:
        yield
    except DataError:
        raise
    except pd.errors.EmptyDataError:
        raise DataError(f"{path.name}: the file is empty") from None
    except pd.errors.ParserError as exc:
        detail = str(exc).strip().replace("Error tokenizing data. C error: ", "")
        raise DataError(f"{path.name}: not a valid CSV file: {detail}") from None
    except UnicodeDecodeError as exc:
        raise DataError(f"{path.name}: not UTF-8 text ({exc.reason}); save the file as UTF-8") from None
    except (OSError, EOFError, ValueError, zlib.error, csv.Error, pa.ArrowException) as exc:
        raise DataError(f"{path.name}: cannot read {kind} file: {exc}") from None


def _check_header(path: Path, names: list[str]) -> list[str]:
    """Column names as given: each non-empty and unique."""
    for position, name in enumerate(names, start=1):
        if not name.strip():
            raise DataError(f"{path.name}: header column {position} has no name "
                            "(was the file written with its index? name the column or drop it)")
    seen: set[str] = set()
    for name in names:
        if name in seen:
            raise DataError(f"{path.name}: column {name!r} appears more than once in the header")
        seen.add(name)
    return names


def _csv_header(path: Path) -> list[str]:
    """The header row verbatim (pandas would rename a repeated 'x' to 'x.1')."""
    first = pd.read_csv(path, header=None, nrows=1, sep=_separator(path), **_CSV_OPTIONS)
    return _check_header(path, ["" if pd.isna(v) else str(v) for v in first.iloc[0]])


def _parquet_names(path: Path) -> list[str]:
    import pyarrow.parquet as pq
    return _check_header(path, [str(n) for n in pq.read_schema(path).names])


def read_frame(path: str | Path) -> pd.DataFrame:
    """The whole table: CSV cells as text, Parquet columns with their stored types; at least one row."""
    path, kind = _existing(path)
    with _read_errors(path, kind):
        if kind == "csv":
            names = _csv_header(path)
            frame = pd.read_csv(path, sep=_separator(path), **_CSV_OPTIONS)
        else:
            names = _parquet_names(path)
            frame = pd.read_parquet(path, engine="pyarrow")
    frame.columns = names
    if len(frame) == 0:
        raise DataError(f"{path.name}: the file has a header but no data rows")
    return frame


#: rows per chunk when a table is read in chunks (`iter_frames`), at most...
FRAME_CHUNK_ROWS = 65_536
#: ...and cells (rows x columns read) per chunk, so that a wide table's chunk stays as small as a narrow one's
FRAME_CHUNK_CELLS = 1 << 19


def chunk_rows_for(columns: int) -> int:
    """Rows per chunk for a table read with `columns` columns."""
    return max(256, min(FRAME_CHUNK_ROWS, FRAME_CHUNK_CELLS // max(columns, 1)))


def table_columns(path: str | Path) -> list[str]:
    """The header of a table file (checked as `read_frame` checks it), without reading its rows."""
    path, kind = _existing(path)
    with _read_errors(path, kind):
        return _csv_header(path) if kind == "csv" else _parquet_names(path)


def iter_frames(path: str | Path, chunk_rows: int | None = None,
                columns: list[str] | None = None) -> Iterator[tuple[int, pd.DataFrame]]:
    """The table in chunks, as `read_frame` reads it whole: (number of the chunk's first data row, frame).

    `chunk_rows` None: sized to the columns read (`chunk_rows_for`).
    CSV chunks come from pandas' chunked reader, Parquet chunks from the file's record batches (row groups read a
    batch at a time), so memory holds one chunk whatever the file's length. `columns` limits what is parsed (a CSV
    row's surplus cells in other columns then pass unnoticed: read all columns where the file is validated). A
    file with no data rows is a DataError, as for `read_frame`.
    """
    if chunk_rows is not None and (not isinstance(chunk_rows, int) or chunk_rows < 1):
        raise ValueError(f"chunk_rows must be a positive integer, got {chunk_rows!r}")
    path, kind = _existing(path)
    row = 1
    with _read_errors(path, kind):
        names = _csv_header(path) if kind == "csv" else _parquet_names(path)
        wanted = names if columns is None else [n for n in names if n in set(columns)]
        chunk_rows = chunk_rows or chunk_rows_for(len(wanted))
        if kind == "csv":
            reader = pd.read_csv(path, sep=_separator(path), chunksize=chunk_rows,
                                 usecols=None if columns is None else wanted, **_CSV_OPTIONS)
            with reader:
                for chunk in reader:
                    chunk.columns = wanted
                    if len(chunk):
                        yield row, chunk.reset_index(drop=True)
                        row += len(chunk)
        else:
            import pyarrow.parquet as pq
            for batch in pq.ParquetFile(path).iter_batches(batch_size=chunk_rows, columns=wanted):
                frame = batch.to_pandas()
                frame.columns = wanted
                if len(frame):
                    yield row, frame
                    row += len(frame)
    if row == 1:
        raise DataError(f"{path.name}: the file has a header but no data rows")


def _missing_id_column(path: Path, id_column: str, names: list[str]) -> DataError:
    return DataError(f"{path.name}: no id column {id_column!r} (columns: {names})")


def _csv_id_series(path: Path, id_column: str, chunk_rows: int) -> Iterator[pd.Series]:
    names = _csv_header(path)
    if id_column not in names:
        raise _missing_id_column(path, id_column, names)
    reader = pd.read_csv(path, sep=_separator(path), usecols=[id_column], chunksize=chunk_rows, **_CSV_OPTIONS)
    with reader:
        for chunk in reader:
            yield chunk[id_column]


def _parquet_id_series(path: Path, id_column: str, chunk_rows: int) -> Iterator[pd.Series]:
    import pyarrow.parquet as pq
    names = _parquet_names(path)
    if id_column not in names:
        raise _missing_id_column(path, id_column, names)
    handle = pq.ParquetFile(path)
    for batch in handle.iter_batches(batch_size=chunk_rows, columns=[id_column]):
        yield batch.column(0).to_pandas()


def iter_id_chunks(path: str | Path, id_column: str, chunk_rows: int = 1_000_000) -> Iterator[np.ndarray]:
    """IDs of a very large file, chunk by chunk, as object arrays of str.

    Empty IDs are refused (row numbers count from the start of the file); duplicates are the caller's
    to check. A file with no data rows is a DataError, as for `read_frame`. Only the id column is
    parsed, so CSV rows with surplus cells in other columns pass here (`read_frame` refuses them).
    """
    if not isinstance(chunk_rows, int) or chunk_rows < 1:
        raise ValueError(f"chunk_rows must be a positive integer, got {chunk_rows!r}")
    path, kind = _existing(path)
    series_of = _csv_id_series if kind == "csv" else _parquet_id_series
    row = 1
    with _read_errors(path, kind):
        for series in series_of(path, id_column, chunk_rows):
            ids = id_strings(series.reset_index(drop=True), Where(path.name, id_column, first_row=row))
            row += len(ids)
            if len(ids):
                yield ids
    if row == 1:
        raise DataError(f"{path.name}: the file has a header but no data rows")
