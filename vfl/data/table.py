"""Loading and validating one party's table.

Every failure names the file, the column and the first offending row (1-based data row, with its id)
or value, and nothing is written: loading is read-only, and `write_aligned` validates before it creates
a file, then writes atomically.
"""
from __future__ import annotations

import math
import os
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Sequence

import numpy as np
import pandas as pd

from vfl.data.readers import read_frame
from vfl.data.schema import Schema
from vfl.errors import DataError


@dataclass
class PartyTable:
    ids: np.ndarray               # object array of str
    features: np.ndarray          # float64, rows x features
    feature_names: list[str]
    label: np.ndarray | None      # class indices (int64) or regression values (float64)
    label_name: str | None
    source: Path
    schema: Schema

    def __len__(self) -> int:
        return len(self.ids)

    def take(self, indices: Sequence[int] | np.ndarray) -> "PartyTable":
        idx = np.asarray(indices, dtype=np.int64)
        return PartyTable(ids=self.ids[idx], features=self.features[idx], feature_names=list(self.feature_names),
                          label=None if self.label is None else self.label[idx], label_name=self.label_name,
                          source=self.source, schema=self.schema)


def _where(path: Path, column: str, row: int, ids: np.ndarray | None) -> str:
    rid = f" (id {ids[row]!r})" if ids is not None and row < len(ids) else ""
    return f"{path.name}: column {column!r}: row {row + 1}{rid}"


def _require_columns(path: Path, frame: pd.DataFrame, columns: Sequence[str], role: str) -> None:
    for column in columns:
        if column not in frame.columns:
            raise DataError(f"{path.name}: no {role} column {column!r} (columns: {list(frame.columns)})")


def _ids(path: Path, frame: pd.DataFrame, id_column: str) -> np.ndarray:
    raw = frame[id_column].to_numpy()
    ids = np.empty(len(raw), dtype=object)
    seen: dict[str, int] = {}
    for i, value in enumerate(raw):
        if value is None or (isinstance(value, float) and math.isnan(value)) or not str(value).strip():
            raise DataError(f"{_where(path, id_column, i, None)}: empty id")
        text = str(value)
        if text in seen:
            raise DataError(f"{path.name}: column {id_column!r}: duplicate id {text!r} in rows {seen[text] + 1} "
                            f"and {i + 1}")
        seen[text] = i
        ids[i] = text
    return ids


def _numeric(path: Path, frame: pd.DataFrame, column: str, ids: np.ndarray, what: str = "") -> np.ndarray:
    series = frame[column]
    values = pd.to_numeric(series, errors="coerce").to_numpy(dtype=np.float64)
    bad = np.flatnonzero(~np.isfinite(values))
    if len(bad):
        i = int(bad[0])
        raw = series.iloc[i]
        text = str(raw).strip().lower()
        if text in ("", "nan", "na", "null", "none") or (isinstance(raw, float) and math.isnan(raw)):
            problem = "missing value (NaN)"
        elif text in ("inf", "-inf", "+inf", "infinity", "-infinity") or (isinstance(raw, float) and math.isinf(raw)):
            problem = f"value {raw!r} is infinite"
        else:
            problem = f"value {raw!r} is not numeric" + (
                " (declare the column categorical to one-hot encode it)" if what == "feature" else "")
        raise DataError(f"{_where(path, column, i, ids)}: {problem}")
    return values


def _one_hot(path: Path, frame: pd.DataFrame, column: str, ids: np.ndarray,
             vocabulary: list[str] | None) -> tuple[np.ndarray, list[str], int]:
    raw = frame[column]
    values = []
    for i, v in enumerate(raw):
        if v is None or (isinstance(v, float) and math.isnan(v)) or not str(v).strip():
            raise DataError(f"{_where(path, column, i, ids)}: missing categorical value")
        values.append(str(v).strip())
    vocab = vocabulary if vocabulary is not None else sorted(set(values))
    position = {v: k for k, v in enumerate(vocab)}
    out = np.zeros((len(values), len(vocab)), dtype=np.float64)
    unknown = 0
    for i, v in enumerate(values):
        k = position.get(v)
        if k is None:
            unknown += 1  # a category training never saw: all zeros, counted
        else:
            out[i, k] = 1.0
    return out, vocab, unknown


def _classes(values: list[str]) -> list[str]:
    try:
        return sorted(set(values), key=lambda v: float(v))
    except ValueError:
        return sorted(set(values))


def _label(path: Path, frame: pd.DataFrame, column: str, ids: np.ndarray, task: str | None,
           classes: list[str] | None) -> tuple[np.ndarray, list[str] | None]:
    if task == "regression":
        return _numeric(path, frame, column, ids, "label"), None
    raw = [str(v).strip() if v is not None and not (isinstance(v, float) and math.isnan(v)) else "" for v in frame[column]]
    for i, v in enumerate(raw):
        if not v or v.lower() in ("nan", "na", "null"):
            raise DataError(f"{_where(path, column, i, ids)}: missing label")
    if classes is None:
        classes = _classes(raw)
    if task == "binary" and len(classes) != 2:
        raise DataError(f"{path.name}: column {column!r}: a binary task needs exactly 2 label values, "
                        f"found {len(classes)}: {classes[:10]}")
    position = {c: k for k, c in enumerate(classes)}
    out = np.empty(len(raw), dtype=np.int64)
    for i, v in enumerate(raw):
        if v not in position:
            raise DataError(f"{_where(path, column, i, ids)}: label {v!r} is not one of the trained classes {classes}")
        out[i] = position[v]
    return out, classes


def load_party_table(path: str | Path, id_column: str = "id", features: Sequence[str] | None = None,
                     label: str | None = None, categorical: Sequence[str] = (), schema: Schema | None = None,
                     task: str | None = "binary") -> PartyTable:
    """Load and validate a party's table. With `schema`, apply a saved schema (prediction on new rows)."""
    path = Path(path)
    frame = read_frame(path)
    if id_column not in frame.columns:
        raise DataError(f"{path.name}: no id column {id_column!r} (columns: {list(frame.columns)})")
    categorical = list(categorical)
    if schema is not None:
        numeric_cols, categorical = list(schema.numeric), list(schema.categorical)
        label = label if label in frame.columns else None
    else:
        excluded = {id_column, label} if label else {id_column}
        chosen = list(features) if features is not None else [c for c in frame.columns if c not in excluded]
        _require_columns(path, frame, chosen, "feature")
        _require_columns(path, frame, categorical, "categorical")
        unknown_cat = [c for c in categorical if c not in chosen]
        if unknown_cat:
            raise DataError(f"{path.name}: categorical column {unknown_cat[0]!r} is not among the features")
        if label and label in chosen:
            raise DataError(f"{path.name}: column {label!r} is declared both as label and as feature")
        numeric_cols = [c for c in chosen if c not in categorical]
    _require_columns(path, frame, numeric_cols + categorical, "feature")
    if label is not None:
        _require_columns(path, frame, [label], "label")
    ids = _ids(path, frame, id_column)
    blocks = [_numeric(path, frame, c, ids, "feature")[:, None] for c in numeric_cols]
    vocabularies: dict[str, list[str]] = {}
    for column in categorical:
        vocab = schema.categorical[column] if schema is not None else None
        block, vocab, _unknown = _one_hot(path, frame, column, ids, vocab)
        vocabularies[column] = vocab
        blocks.append(block)
    x = np.hstack(blocks) if blocks else np.zeros((len(ids), 0))
    y, classes = (None, None)
    if label is not None:
        y, classes = _label(path, frame, label, ids, task,
                            schema.label_classes if schema is not None and schema.label_classes else None)
    new_schema = schema or Schema(id_column=id_column, numeric=numeric_cols, categorical=vocabularies,
                                  label=label, label_classes=classes)
    if schema is None:
        new_schema.categorical = vocabularies
    return PartyTable(ids=ids, features=x, feature_names=new_schema.feature_names, label=y, label_name=label,
                      source=path, schema=new_schema)


def check_label_declarations(party_to_label: dict[str, str | None]) -> str | None:
    """The single party that declares a label (or None); two or more is an error naming them."""
    holders = [(party, label) for party, label in party_to_label.items() if label]
    if len(holders) > 1:
        (p1, l1), (p2, l2) = holders[:2]
        raise DataError(f"label declared at more than one party: {p1!r} declares {l1!r} and {p2!r} declares {l2!r}")
    return holders[0][0] if holders else None


def write_aligned(table: PartyTable, path: str | Path, ids_only: bool = False) -> Path:
    """Write aligned rows (id, then features, then label) atomically: a temp file renamed into place."""
    path = Path(path)
    columns = {table.schema.id_column: table.ids}
    if not ids_only:
        for k, name in enumerate(table.feature_names):
            columns[name] = table.features[:, k]
        if table.label is not None:
            columns[table.label_name] = table.label
    frame = pd.DataFrame(columns)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    os.close(fd)
    try:
        if path.name.lower().endswith((".parquet", ".pq")):
            frame.to_parquet(tmp, index=False)
        else:
            frame.to_csv(tmp, index=False)
        os.replace(tmp, path)
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)
    return path
