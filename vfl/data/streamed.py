"""A party's table read in chunks: the same checks and encoding as `load_party_table`, in bounded memory.

`StreamedTable` reads a CSV or Parquet file chunk by chunk (vfl.data.readers.iter_frames). A training table's
schema (categorical vocabularies, label classes, fills of missing cells) depends on every row, so it takes one
pass to learn it (only the columns it needs: categorical, label, and those filled with a statistic); a prediction
table's schema is the saved one. `chunks()` then encodes the table chunk by chunk with that schema: IDs (checked,
with `id_format` applied), the feature matrix, the label. Memory holds one chunk, the vocabularies and label
classes, and for a `median` fill nothing more: the column's numbers go to an encrypted spill on disk
(psi.core.spill) and the exact median is selected from there.

What one chunk cannot see is the caller's to check across chunks: IDs repeated in different chunks
(vfl/data/prepared.py does it on disk). Row numbers in error messages count from the file's first data row, as for
the whole table.
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Iterator, Sequence

import numpy as np
import pandas as pd

from psi.core.spill import Spill
from vfl.data.columns import Where, check_unique_ids, id_strings, numeric_column, text_column
from vfl.data.ids import IdFormat
from vfl.data.labels import check_class_count, sorted_classes, with_positive_class
from vfl.data.readers import iter_frames, table_columns
from vfl.data.schema import Schema
from vfl.data.table import (check_table_options, _absent, _apply_fills, _categorical_block,
                            _check_feature_names, _fill_rule, _label_column, _statistic_text, _training_columns,
                            present_numbers)
from vfl.errors import DataError

#: numbers of a `median` column held in memory at once while its exact median is selected
MEDIAN_IN_MEMORY = 1 << 22


@dataclass
class TableChunk:
    first_row: int                # data row number of the chunk's first row (1-based, header excluded)
    ids: np.ndarray               # object array of str, after id_format
    raw_ids: np.ndarray | None    # as the file wrote them, when id_format rewrote them
    features: np.ndarray          # float64, rows x features
    label: np.ndarray | None

    def __len__(self) -> int:
        return len(self.ids)

    @property
    def written_ids(self) -> np.ndarray:
        return self.ids if self.raw_ids is None else self.raw_ids


class StreamedTable:
    """`load_party_table`'s arguments, read in chunks; see the module docstring."""

    def __init__(self, path: str | Path, id_column: str | None = None, features: Sequence[str] | None = None,
                 label: str | None = None, categorical: Sequence[str] = (), schema: Schema | None = None,
                 task: str | None = "binary", on_unknown: str = "zero", missing: dict | None = None,
                 id_format: IdFormat | None = None, read_label: bool = True, positive_class: str | None = None,
                 chunk_rows: int | None = None, spill_dir: Path | None = None, ids_only: bool = False):
        check_table_options(task, positive_class, on_unknown)
        self.path = Path(path)
        self.task, self.on_unknown, self.id_format = task, on_unknown, id_format
        self.chunk_rows, self.spill_dir = chunk_rows, spill_dir
        names = table_columns(self.path)
        header = pd.DataFrame(columns=names)
        self.id_column = id_column or (schema.id_column if schema is not None else "id")
        _absent(self.path, header, [self.id_column], "id")
        self.ids_only = ids_only
        if ids_only:  # a PSI-only job: the IDs and nothing else, not even the declarations of the other columns
            self.numeric, self.categorical, self.label = [], {}, None
            self.fills: dict[str, str] = {}
            self.schema = schema or Schema(id_column=self.id_column, numeric=[], categorical={}, label=None,
                                           label_classes=None, fill={})
        elif schema is None:
            self.numeric, categorical_cols = _training_columns(self.path, header, self.id_column, features, label,
                                                               categorical)
            self.categorical = dict.fromkeys(categorical_cols)
            self.label = label if read_label else None
            self.schema = self._learn_schema(dict(missing or {}), positive_class)
        else:
            self.numeric, self.categorical = list(schema.numeric), dict(schema.categorical)
            _absent(self.path, header, [*self.numeric, *self.categorical], "feature", " (the saved schema needs it)")
            self.label = label if label is not None and label in names else None
            self.fills = dict(schema.fill)
            self.schema = schema
        _check_feature_names(self.path, self.schema.feature_names, self.id_column, self.label)
        self.unknown_categories: dict[str, int] = {}
        self.rows = 0

    @property
    def feature_names(self) -> list[str]:
        return self.schema.feature_names

    # ------------------------------------------------------------------ the schema pass (training)
    def _learn_schema(self, missing: dict, positive_class: str | None) -> Schema:
        path = self.path
        fills: dict[str, str] = {}
        statistics: dict[str, object] = {}
        for column, rule in missing.items():
            if column not in self.numeric and column not in self.categorical:
                raise DataError(f"{path.name}: missing: column {column!r} is not a feature of this dataset "
                                f"(features: {self.numeric + list(self.categorical)})")
            constant = _fill_rule(path, column, rule, column in self.numeric)
            if constant is None:
                statistics[column] = rule
            else:
                fills[column] = constant
        vocab: dict[str, set] = {c: set() for c in self.categorical}
        classes: set[str] = set()
        needed = [*self.categorical, *statistics, *([self.label] if self.label else [])]
        spill = Spill(self.spill_dir, prefix="vfl-schema-") if statistics else None
        numbers = {c: spill.buckets(1, {"x": np.float64}) for c in statistics} if spill else {}
        try:
            if needed:
                for first, frame in iter_frames(path, self.chunk_rows, columns=needed):
                    self._learn_chunk(frame, first, fills, vocab, classes, numbers)
            for column, rule in statistics.items():
                fills[column] = self._statistic(column, rule, numbers[column])
        finally:
            if spill is not None:
                spill.close()
        fills = {column: fills[column] for column in missing}   # the declared order, as the whole table keeps it
        label_classes = None
        if self.label is not None and self.task != "regression":
            where = Where(path.name, self.label)
            label_classes = sorted_classes(list(classes))
            check_class_count(label_classes, self.task, where)
            label_classes = with_positive_class(label_classes, positive_class, where)
        self.fills = fills
        self.categorical = {c: sorted(vocab[c]) for c in self.categorical}
        return Schema(id_column=self.id_column, numeric=self.numeric, categorical=self.categorical,  # type: ignore
                      label=self.label, label_classes=label_classes, fill=fills)

    def _learn_chunk(self, frame: pd.DataFrame, first: int, fills: dict, vocab: dict, classes: set,
                     numbers: dict) -> None:
        for column, buckets in numbers.items():
            buckets.add(0, {"x": present_numbers(frame[column])})
        frame = _apply_fills(frame, {c: v for c, v in fills.items() if c in frame.columns})
        for column in self.categorical:
            vocab[column].update(text_column(frame[column], Where(self.path.name, column, first_row=first),
                                             "categorical value"))
        if self.label is not None and self.task != "regression":
            classes.update(text_column(frame[self.label], Where(self.path.name, self.label, first_row=first), "label"))
            if self.task == "binary" and len(classes) > 2:
                check_class_count(sorted_classes(list(classes)), self.task, Where(self.path.name, self.label))

    def _statistic(self, column: str, rule: object, buckets) -> str:
        buckets.flush()
        count = int(buckets.sizes[0])

        def chunks():
            for block in buckets.blocks(0):
                yield block["x"]
        return _statistic_text(self.path, column, rule, chunks(), lambda: exact_median(chunks, count), count)

    # ------------------------------------------------------------------ the encoding pass
    def chunks(self) -> Iterator[TableChunk]:
        """The table, encoded chunk by chunk with the schema (a second call reads the file again)."""
        self.rows = 0
        unknown_seen: set[str] = set()
        columns = [self.id_column] if self.ids_only else None
        for first, frame in iter_frames(self.path, self.chunk_rows, columns=columns):
            yield self._encode(frame, first, unknown_seen)
            self.rows += len(frame)

    def _encode(self, frame: pd.DataFrame, first: int, unknown_seen: set[str]) -> TableChunk:
        path = self.path
        frame = _apply_fills(frame, self.fills)
        ids = id_strings(frame[self.id_column], Where(path.name, self.id_column, first_row=first))
        raw_ids = None
        if self.id_format is not None and self.id_format.active:
            where = Where(path.name, self.id_column, first_row=first)
            raw_ids, ids = ids, self.id_format.apply(ids, where)
            try:
                check_unique_ids(ids, where)
            except DataError as exc:
                raise DataError(f"{exc} (after id_format)") from None
        check_unique_ids(ids, Where(path.name, self.id_column, first_row=first))
        blocks = [numeric_column(frame[c], Where(path.name, c, ids, first))[:, None] for c in self.numeric]
        for column, vocabulary in self.categorical.items():
            block, _, unknown = _categorical_block(path, frame, column, ids, vocabulary, self.on_unknown, first,
                                                   warn=column not in unknown_seen)
            blocks.append(block)
            if unknown:
                unknown_seen.add(column)
                self.unknown_categories[column] = self.unknown_categories.get(column, 0) + unknown
        x = np.hstack(blocks) if blocks else np.zeros((len(ids), 0))
        y = None
        if self.label is not None:
            y, _ = _label_column(path, frame, self.label, ids, self.task, self.schema.label_classes, None, first)
        return TableChunk(first_row=first, ids=ids, raw_ids=raw_ids, features=x, label=y)


def sortable_keys(values: np.ndarray) -> np.ndarray:
    """uint64 keys whose unsigned order is the order of the float64 `values` (finite, -0.0 == 0.0 aside)."""
    bits = np.ascontiguousarray(values, dtype=np.float64).view(np.uint64)
    negative = (bits >> np.uint64(63)).astype(bool)
    return np.where(negative, ~bits, bits | np.uint64(1 << 63))


def _value_of_key(key: int) -> float:
    bits = np.uint64(key)
    bits = bits & ~np.uint64(1 << 63) if key >> 63 else ~bits
    return float(np.array([bits], dtype=np.uint64).view(np.float64)[0])


def exact_quantile(chunks, count: int, rank: int) -> float:
    """The `rank`-th smallest (0-based) of `count` finite numbers that `chunks()` yields, in bounded memory: a
    radix selection on their sortable 64-bit keys, 16 bits per pass, until the candidates fit in memory."""
    prefix, shift = 0, 64
    while True:
        candidates = count if shift == 64 else None
        if candidates is not None and candidates <= MEDIAN_IN_MEMORY:
            values = np.concatenate([np.zeros(0), *chunks()])
            return float(np.partition(values, rank)[rank])
        histogram = np.zeros(1 << 16, dtype=np.int64)
        for chunk in chunks():
            keys = sortable_keys(chunk)
            if shift < 64:
                keys = keys[(keys >> np.uint64(shift)) == np.uint64(prefix)]
            histogram += np.bincount(((keys >> np.uint64(shift - 16)) & np.uint64(0xFFFF)).astype(np.int64),
                                     minlength=1 << 16)
        cumulative = np.cumsum(histogram)
        digit = int(np.searchsorted(cumulative, rank, side="right"))
        rank -= int(cumulative[digit - 1]) if digit else 0
        prefix, shift = (prefix << 16) | digit, shift - 16
        if shift == 0:
            return _value_of_key(prefix)
        if histogram[digit] <= MEDIAN_IN_MEMORY:
            keep = []
            for chunk in chunks():
                keys = sortable_keys(chunk)
                keep.append(chunk[(keys >> np.uint64(shift)) == np.uint64(prefix)])
            values = np.concatenate(keep)
            return float(np.partition(values, rank)[rank])


def exact_median(chunks, count: int) -> float:
    """np.median of the numbers `chunks()` yields (the mean of the two middle ones for an even count)."""
    if count % 2:
        return exact_quantile(chunks, count, count // 2)
    low, high = exact_quantile(chunks, count, count // 2 - 1), exact_quantile(chunks, count, count // 2)
    return float(np.mean([low, high]))
