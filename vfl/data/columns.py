"""Column converters: each turns one raw column into validated values, or raises a DataError that names
the file, the column and the first offending row (1-based data row, header excluded, with its id when known).
"""
from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import pandas as pd

from vfl.errors import DataError, quote

# Text that spreadsheets and pandas write for "no value"; reported as missing, not as "not numeric".
MISSING_MARKERS = frozenset({"", "nan", "-nan", "na", "n/a", "null", "none", "<na>"})
# IDs are stricter about what counts as missing: 'NA', 'null' or 'None' can be real IDs (Namibia's code is
# 'NA'), but 'NaN' and '<NA>' are what pandas writes for a missing value.
ID_MISSING_MARKERS = frozenset({"nan", "-nan", "<na>"})


@dataclass(frozen=True)
class Where:
    """Where a value sits, for error messages: `file: column 'c': row 17 (id 'c-0042')`."""

    file: str
    column: str
    ids: np.ndarray | None = None
    first_row: int = 1  # data row number of element 0 (chunked readers start later)

    def row(self, i: int) -> str:
        known = self.ids is not None and i < len(self.ids)
        rid = f" (id {quote(self.ids[i])})" if known else ""
        return f"{self.file}: column {self.column!r}: row {self.first_row + i}{rid}"

    def error(self, i: int, problem: str) -> DataError:
        return DataError(f"{self.row(i)}: {problem}")


def is_missing(value: object) -> bool:
    """None, NaN, pandas NA, or blank text."""
    if value is None or value is pd.NA:
        return True
    if isinstance(value, (float, np.floating)):
        return math.isnan(value)
    return isinstance(value, str) and not value.strip()


def _type_error(series: pd.Series, where: Where, what: str) -> DataError:
    return where.error(0, f"the column has type {series.dtype}; {what}")


def id_strings(series: pd.Series, where: Where) -> np.ndarray:
    """IDs as an object array of str, taken verbatim (no stripping, no Unicode normalization).

    Refused: empty or whitespace-only IDs, missing values, and the text 'NaN' or '<NA>'.
    """
    kind = series.dtype.kind
    if isinstance(series.dtype, pd.CategoricalDtype):
        series = series.astype(object)
        kind = "O"
    if kind == "f":
        missing = np.flatnonzero(series.isna().to_numpy())
        if len(missing):
            raise where.error(int(missing[0]), "empty id")
        raise _type_error(series, where, f"IDs must be text or integers, not floating point "
                                         f"(first value {quote(series.iloc[0])})")
    if kind not in "iuOT":  # integers, unsigned, object, pandas text
        raise _type_error(series, where, "IDs must be text or integers")
    values = series.to_numpy(dtype=object)
    out = np.empty(len(values), dtype=object)
    for i, value in enumerate(values):
        if isinstance(value, bytes):
            try:
                value = value.decode("utf-8")
            except UnicodeDecodeError:
                raise where.error(i, f"id {quote(value)} is not UTF-8 text") from None
        if is_missing(value):
            raise where.error(i, "empty id")
        if isinstance(value, str) and value.strip().lower() in ID_MISSING_MARKERS:
            raise where.error(i, f"id {quote(value)} is a missing value (NaN)")
        out[i] = value if isinstance(value, str) else str(value)
    return out


def check_unique_ids(ids: np.ndarray, where: Where) -> None:
    """Refuse the first repeated ID, naming both of its rows."""
    repeated = pd.Series(ids, dtype=object).duplicated(keep="first").to_numpy()
    hits = np.flatnonzero(repeated)
    if len(hits):
        second = int(hits[0])
        first = int(np.flatnonzero(ids[:second] == ids[second])[0])
        raise DataError(f"{where.file}: column {where.column!r}: duplicate id {quote(ids[second])} in rows "
                        f"{where.first_row + first} and {where.first_row + second}")


def _numeric_problem(raw: object, role: str) -> str:
    """Why one value could not become a finite float."""
    if is_missing(raw):
        return "empty value (missing)"
    text = str(raw).strip()
    if text.lower() in MISSING_MARKERS:
        return f"value {quote(raw)} is a missing value (NaN)"
    try:
        number = float(text)
    except ValueError:
        number = None
    if number is not None and math.isinf(number):
        overflow = "inf" not in text.lower()
        return f"value {quote(raw)} is " + ("too large (overflows to infinity)" if overflow else "infinite")
    if number is not None and math.isnan(number):
        return f"value {quote(raw)} is a missing value (NaN)"
    hint = (" (declare the column categorical to one-hot encode it)" if role == "feature"
            else " (regression labels must be numbers)" if role == "label" else "")
    return f"value {quote(raw)} is not numeric{hint}"


def numeric_column(series: pd.Series, where: Where, role: str = "feature") -> np.ndarray:
    """A finite float64 column; text is parsed, NaN/inf/non-numbers are refused at their first row."""
    kind = series.dtype.kind
    if isinstance(series.dtype, pd.CategoricalDtype):
        series, kind = series.astype(object), "O"
    if kind in "biuf":
        values = series.to_numpy(dtype=np.float64, na_value=np.nan)
    elif kind in "OT":
        parsed = pd.to_numeric(series.astype(object).map(lambda v: v.strip() if isinstance(v, str) else v),
                               errors="coerce")
        values = pd.Series(parsed).to_numpy(dtype=np.float64, na_value=np.nan)
    else:
        hint = " (declare the column categorical to one-hot encode it)" if role == "feature" else ""
        raise where.error(0, f"value {quote(series.iloc[0])} is not numeric (column type {series.dtype}){hint}")
    bad = np.flatnonzero(~np.isfinite(values))
    if len(bad):
        i = int(bad[0])
        raise where.error(i, _numeric_problem(series.iloc[i], role))
    return values


def category_text(value: object) -> str:
    """A category or class as text: strings stripped, integral numbers without a trailing '.0'."""
    if isinstance(value, bytes):
        value = value.decode("utf-8", errors="replace")
    if isinstance(value, str):
        return value.strip()
    if isinstance(value, (bool, np.bool_)):
        return str(bool(value))
    if isinstance(value, (int, np.integer)):
        return str(int(value))
    if isinstance(value, (float, np.floating)) and float(value).is_integer():
        return str(int(value))
    return str(value)


def text_column(series: pd.Series, where: Where, what: str) -> list[str]:
    """Category or class values as text; missing values, NaN and infinities are refused."""
    out = []
    for i, raw in enumerate(series.to_numpy(dtype=object)):
        if is_missing(raw):
            raise where.error(i, f"missing {what} (empty)")
        text = category_text(raw)
        lowered = text.lower()
        if lowered in MISSING_MARKERS:
            raise where.error(i, f"{what} {quote(raw)} is a missing value (NaN)")
        if lowered.lstrip("+-") in ("inf", "infinity"):
            raise where.error(i, f"{what} {quote(raw)} is infinite")
        out.append(text)
    return out


def one_hot(values: list[str], vocabulary: list[str]) -> tuple[np.ndarray, list[int]]:
    """Rows x len(vocabulary) indicator matrix and the rows whose value is not in the vocabulary
    (those rows stay all-zero)."""
    position = {v: k for k, v in enumerate(vocabulary)}
    out = np.zeros((len(values), len(vocabulary)), dtype=np.float64)
    unknown = []
    for i, value in enumerate(values):
        k = position.get(value)
        if k is None:
            unknown.append(i)
        else:
            out[i, k] = 1.0
    return out, unknown
