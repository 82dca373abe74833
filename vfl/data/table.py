"""Loading and validating one party's table.

Every failure is a DataError naming the file, the column and the first offending row (1-based data row,
header excluded, with its id once IDs are known) or value. Loading only reads: nothing is ever written.

Missing cells are refused unless the dataset declares how to fill them (`missing`: column -> 'median', 'mean' or
a constant); the fill values are computed once, on the training table, and saved in the schema, so prediction
fills new rows with the very same values.

Unknown categories at prediction time (a value the saved vocabulary lacks) give an all-zero one-hot row
by default, counted in `PartyTable.unknown_categories` and reported once per column with an
`UnknownCategoryWarning`; pass `on_unknown="error"` to refuse them instead.
"""
from __future__ import annotations

import math
import warnings
from dataclasses import dataclass, field
from pathlib import Path
from typing import Sequence

import numpy as np
import pandas as pd

from vfl.data.columns import (MISSING_MARKERS, Where, check_unique_ids, id_strings, is_missing, numeric_column,
                              one_hot, text_column)
from vfl.data.ids import IdFormat
from vfl.data.labels import (TASKS, check_class_count, decode_labels, encode_labels, sorted_classes,
                             with_positive_class)
from vfl.data.readers import read_frame
from vfl.data.schema import Schema
from vfl.errors import DataError, quote

ON_UNKNOWN = ("zero", "error")


class UnknownCategoryWarning(UserWarning):
    """Rows at prediction time whose category the training vocabulary lacks (encoded as all zeros)."""


@dataclass
class PartyTable:
    ids: np.ndarray               # object array of str, unique
    features: np.ndarray          # float64, rows x features, finite
    feature_names: list[str]
    label: np.ndarray | None      # class indices (int64) or regression values (float64)
    label_name: str | None
    source: Path
    schema: Schema
    unknown_categories: dict[str, int] = field(default_factory=dict)  # column -> rows encoded all-zero
    raw_ids: np.ndarray | None = None  # the IDs as the file wrote them, when id_format rewrote them

    def __len__(self) -> int:
        return len(self.ids)

    @property
    def written_ids(self) -> np.ndarray:
        """The IDs as the file wrote them (text): what a user's own table holds, before id_format."""
        return self.ids if self.raw_ids is None else self.raw_ids

    def take(self, indices: Sequence[int] | np.ndarray) -> "PartyTable":
        """The rows at `indices` (distinct, in range), in that order: used to align rows after PSI."""
        idx = _row_positions(indices, len(self), self.source)
        return PartyTable(ids=self.ids[idx], features=self.features[idx], feature_names=list(self.feature_names),
                          label=None if self.label is None else self.label[idx], label_name=self.label_name,
                          source=self.source, schema=self.schema, unknown_categories=dict(self.unknown_categories),
                          raw_ids=None if self.raw_ids is None else self.raw_ids[idx])

    def label_texts(self) -> np.ndarray | None:
        """Labels as the file wrote them (class names for classification), or None without a label."""
        if self.label is None or self.schema.label_classes is None:
            return self.label
        return decode_labels(self.label, self.schema.label_classes)


def _row_positions(indices: Sequence[int] | np.ndarray, rows: int, source: Path) -> np.ndarray:
    idx = np.asarray(indices)
    if idx.size == 0:
        return np.zeros(0, dtype=np.int64)
    if idx.ndim != 1 or idx.dtype.kind not in "iu":
        raise IndexError(f"take() needs a 1-D sequence of integer row positions, got dtype {idx.dtype} "
                         f"and shape {idx.shape}")
    idx = idx.astype(np.int64)
    outside = np.flatnonzero((idx < 0) | (idx >= rows))
    if len(outside):
        raise IndexError(f"row position {int(idx[outside[0]])} is out of range for {source.name} ({rows} rows)")
    if len(np.unique(idx)) != len(idx):
        raise ValueError(f"take() row positions must be distinct (IDs stay unique) for {source.name}")
    return idx


def _absent(path: Path, frame: pd.DataFrame, columns: Sequence[str], role: str, why: str = "") -> None:
    for column in columns:
        if column not in frame.columns:
            raise DataError(f"{path.name}: no {role} column {column!r}{why} (columns: {list(frame.columns)})")


def _training_columns(path: Path, frame: pd.DataFrame, id_column: str, features: Sequence[str] | None,
                      label: str | None, categorical: Sequence[str]) -> tuple[list[str], list[str]]:
    """(numeric, categorical) feature columns, both in table order, from the declarations."""
    if label is not None:
        _absent(path, frame, [label], "label")
        if label == id_column:
            raise DataError(f"{path.name}: column {label!r} is declared both as id and as label")
    excluded = {id_column, label}
    chosen = list(features) if features is not None else [c for c in frame.columns if c not in excluded]
    _absent(path, frame, chosen, "feature")
    for column in chosen:
        if column in excluded:
            role = "id" if column == id_column else "label"
            raise DataError(f"{path.name}: column {column!r} is declared both as {role} and as feature")
        if chosen.count(column) > 1:
            raise DataError(f"{path.name}: feature column {column!r} is declared more than once")
    _absent(path, frame, categorical, "categorical")
    for column in categorical:
        if column not in chosen:
            raise DataError(f"{path.name}: categorical column {column!r} is not among the features {chosen}")
    in_order = [c for c in frame.columns if c in chosen]
    return [c for c in in_order if c not in categorical], [c for c in in_order if c in categorical]


def _categorical_block(path: Path, frame: pd.DataFrame, column: str, ids: np.ndarray,
                       vocabulary: list[str] | None, on_unknown: str, first_row: int = 1,
                       warn: bool = True) -> tuple[np.ndarray, list[str], int]:
    """One-hot block, its vocabulary, and how many rows fell outside a saved vocabulary."""
    where = Where(path.name, column, ids, first_row)
    values = text_column(frame[column], where, "categorical value")
    vocab = sorted(set(values)) if vocabulary is None else list(vocabulary)
    block, unknown = one_hot(values, vocab)
    if unknown:
        first = unknown[0]
        detail = f"{where.row(first)}: value {quote(values[first])} was not seen in training"
        if on_unknown == "error":
            raise DataError(f"{detail} (known: {vocab[:20]})")
        if warn:
            warnings.warn(f"{detail}; {len(unknown)} row(s) with unseen values get all-zero one-hot columns",
                          UnknownCategoryWarning, stacklevel=3)
    return block, vocab, len(unknown)


def _label_column(path: Path, frame: pd.DataFrame, column: str, ids: np.ndarray, task: str | None,
                  classes: list[str] | None, positive_class: str | None,
                  first_row: int = 1) -> tuple[np.ndarray, list[str] | None]:
    where = Where(path.name, column, ids, first_row)
    if task == "regression" and classes is None:
        return numeric_column(frame[column], where, role="label"), None
    texts = text_column(frame[column], where, "label")
    if classes is None:
        classes = sorted_classes(texts)
        check_class_count(classes, task, where)
        classes = with_positive_class(classes, positive_class, where)
    return encode_labels(texts, classes, where)


FILL_STATISTICS = ("median", "mean")


def _missing_mask(series: pd.Series) -> np.ndarray:
    values = series.to_numpy(dtype=object)
    return np.array([is_missing(v) or (isinstance(v, str) and v.strip().lower() in MISSING_MARKERS)
                     for v in values], dtype=bool)


def _fill_value(path: Path, frame: pd.DataFrame, column: str, rule: object, numeric: bool) -> str:
    """The text that replaces `column`'s missing cells: a statistic of its present values, or the constant."""
    constant = _fill_rule(path, column, rule, numeric)
    if constant is not None:
        return constant
    values = present_numbers(frame[column])
    return _statistic_text(path, column, rule, values if len(values) else None,
                           lambda: float(np.median(values)), len(values))


def _fill_rule(path: Path, column: str, rule: object, numeric: bool) -> str | None:
    """A constant fill's text, None for a statistic (checked: it needs a numeric column), or a DataError."""
    where = f"{path.name}: missing: column {column!r}"
    if rule in FILL_STATISTICS:
        if not numeric:
            raise DataError(f"{where}: {rule!r} needs a numeric column; give a categorical column a constant "
                            "such as 'unknown'")
        return None
    if isinstance(rule, bool) or rule is None or (numeric and not isinstance(rule, (int, float))):
        expected = "'median', 'mean' or a number" if numeric else "a constant such as 'unknown'"
        raise DataError(f"{where}: fill {rule!r} is not {expected}")
    return str(rule)


def present_numbers(series: pd.Series) -> np.ndarray:
    """The finite numbers among a column's present (not missing) cells, as float64."""
    present = series[~_missing_mask(series)]
    values = pd.to_numeric(present.astype(object), errors="coerce").to_numpy(dtype=np.float64)
    return values[np.isfinite(values)]


def _statistic_text(path: Path, column: str, rule: object, values, median, count: int) -> str:
    """The fill text of a statistic: the mean (exactly rounded sum / count) or `median()`."""
    if count == 0:
        raise DataError(f"{path.name}: missing: column {column!r}: no numeric values to take the {rule} of")
    if rule == "median":
        return repr(float(median()))
    chunks = [values] if isinstance(values, np.ndarray) else values
    return repr(math.fsum(v for chunk in chunks for v in chunk.tolist()) / count)


def _fills(path: Path, frame: pd.DataFrame, missing: dict, numeric_cols: list[str],
           categorical_cols: list[str]) -> dict[str, str]:
    """column -> fill text for the training table, checked against its feature columns."""
    fills = {}
    for column, rule in missing.items():
        if column not in numeric_cols and column not in categorical_cols:
            raise DataError(f"{path.name}: missing: column {column!r} is not a feature of this dataset "
                            f"(features: {numeric_cols + categorical_cols})")
        fills[column] = _fill_value(path, frame, column, rule, column in numeric_cols)
    return fills


def _apply_fills(frame: pd.DataFrame, fills: dict[str, str]) -> pd.DataFrame:
    if not fills:
        return frame
    frame = frame.copy()
    for column, text in fills.items():
        if column in frame.columns:
            series = frame[column].astype(object)
            series[_missing_mask(series)] = text
            frame[column] = series
    return frame


def _check_feature_names(path: Path, names: list[str], id_column: str, label: str | None) -> None:
    seen = {id_column, label}
    for name in names:
        if name in seen:
            raise DataError(f"{path.name}: feature name {name!r} occurs twice (a numeric column and a one-hot "
                            "column 'column=value' collide, or a one-hot name equals the id or label)")
        seen.add(name)


def check_table_options(task: str | None, positive_class: str | None, on_unknown: str) -> None:
    """The options of a party table that do not depend on its file (whole or streamed)."""
    if task is not None and task not in TASKS:
        raise ValueError(f"task must be one of {TASKS} or None, got {task!r}")
    if positive_class is not None and task != "binary":
        raise ValueError(f"positive_class is for binary tasks, not {task!r}")
    if on_unknown not in ON_UNKNOWN:
        raise ValueError(f"on_unknown must be one of {ON_UNKNOWN}, got {on_unknown!r}")


def load_party_table(path: str | Path, id_column: str | None = None, features: Sequence[str] | None = None,
                     label: str | None = None, categorical: Sequence[str] = (), schema: Schema | None = None,
                     task: str | None = "binary", on_unknown: str = "zero", missing: dict | None = None,
                     id_format: IdFormat | None = None, read_label: bool = True,
                     positive_class: str | None = None, frame: pd.DataFrame | None = None) -> PartyTable:
    """Load and validate a party's table.

    Training: `features` defaults to every column except the id and the label; `categorical` columns are
    one-hot encoded with their sorted values; classification labels become class indices.
    Prediction: pass the saved `schema` (features/categorical are then taken from it); its columns must
    exist, extra columns are ignored, and the label is read only if `label` is given and present.
    `id_column` defaults to the schema's, else 'id'. `task` is 'binary', 'multiclass', 'regression'
    or None (classes without a count check). `missing` (training only): column -> 'median', 'mean' or a
    constant for its missing cells; prediction uses the schema's saved fills. `id_format` rewrites the IDs
    (vfl/data/ids.py) before they are checked for duplicates. `read_label=False` keeps the label column out of
    both the label and the features without looking at it (PSI-only jobs, which never use it). `positive_class`
    (a binary task in training) puts that label value second in the classes, so the model predicts its probability.
    `frame`: the file as `read_frame(path)` returns it, when the caller has read it already (a job's data audit
    reads it first); it is not changed.
    """
    check_table_options(task, positive_class, on_unknown)
    path = Path(path)
    frame = read_frame(path) if frame is None else frame
    id_column = id_column or (schema.id_column if schema is not None else "id")
    _absent(path, frame, [id_column], "id")
    if schema is None:
        numeric_cols, categorical_cols = _training_columns(path, frame, id_column, features, label, categorical)
        vocabularies: dict[str, list[str] | None] = dict.fromkeys(categorical_cols)
        label = label if read_label else None
        fills = _fills(path, frame, dict(missing or {}), numeric_cols, categorical_cols)
    else:
        numeric_cols, vocabularies = list(schema.numeric), dict(schema.categorical)
        _absent(path, frame, [*numeric_cols, *vocabularies], "feature", " (the saved schema needs it)")
        label = label if label is not None and label in frame.columns else None
        fills = dict(schema.fill)
    frame = _apply_fills(frame, fills)
    ids = id_strings(frame[id_column], Where(path.name, id_column))
    raw_ids = None
    if id_format is not None and id_format.active:
        raw_ids, ids = ids, id_format.apply(ids, Where(path.name, id_column))
        try:
            check_unique_ids(ids, Where(path.name, id_column))
        except DataError as exc:  # two raw IDs ('7', '007') that the format makes one
            raise DataError(f"{exc} (after id_format)") from None
    check_unique_ids(ids, Where(path.name, id_column))
    blocks = [numeric_column(frame[c], Where(path.name, c, ids))[:, None] for c in numeric_cols]
    unknown_counts: dict[str, int] = {}
    for column, saved in list(vocabularies.items()):
        block, vocabularies[column], unknown = _categorical_block(path, frame, column, ids, saved, on_unknown)
        blocks.append(block)
        if unknown:
            unknown_counts[column] = unknown
    x = np.hstack(blocks) if blocks else np.zeros((len(ids), 0))
    y, classes = None, schema.label_classes if schema is not None else None
    if label is not None:
        y, classes = _label_column(path, frame, label, ids, task, classes, positive_class)
    if schema is None:
        schema = Schema(id_column=id_column, numeric=numeric_cols, categorical=vocabularies,  # type: ignore[arg-type]
                        label=label, label_classes=classes, fill=fills)
    _check_feature_names(path, schema.feature_names, id_column, label)
    return PartyTable(ids=ids, features=x, feature_names=schema.feature_names, label=y, label_name=label,
                      source=path, schema=schema, unknown_categories=unknown_counts, raw_ids=raw_ids)


def check_label_declarations(party_to_label: dict[str, str | None],
                             files: dict[str, object] | None = None) -> str | None:
    """The single party that declares a label (or None); two or more is a DataError naming them.

    `files` (party -> path) adds each declaring party's file to the message.
    """
    holders = [(party, label) for party, label in party_to_label.items() if label]
    if len(holders) > 1:
        where = files or {}
        named = ", ".join(f"{party!r} declares column {label!r}" + (f" in {where[party]}" if party in where else "")
                          for party, label in holders)
        raise DataError(f"label declared at more than one party: {named}; exactly one party holds the label")
    return holders[0][0] if holders else None
