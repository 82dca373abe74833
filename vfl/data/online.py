"""Online feature tables: a party's features for a few IDs at a time, for scoring.

`FeatureLookup` is what scoring needs of a store: the encoded feature rows (the saved schema's columns, in its
order, categories one-hot as in training, missing cells filled with the training fills) of the IDs it holds. Today
the one implementation is `InMemoryTable`, a dataset of the node config read once into memory; a real store (a
database, a feature service) implements the same two methods.

IDs are compared as the parties compared them in training: each table ID goes through its dataset's `id_format`
and PSI's canonicalization (strip, lowercase), and a requested ID is taken to be in that agreed form already.
"""
from __future__ import annotations

from typing import Callable, Protocol, Sequence

import numpy as np

from vfl.data.dataset import DatasetConfig
from vfl.data.schema import Schema


class FeatureLookup(Protocol):
    feature_names: list[str]

    def lookup(self, ids: Sequence[str]) -> tuple[np.ndarray, np.ndarray]:
        """(rows, found): float64 rows x features for `ids` in order (zeros where not found), and a bool mask."""
        ...

    def __len__(self) -> int: ...


class InMemoryTable:
    """A dataset of this node, loaded once with the model's schema and indexed by canonical ID."""

    def __init__(self, dataset: DatasetConfig, schema: Schema, canonical: Callable[[str], str]):
        from vfl.data.table import load_party_table
        table = load_party_table(dataset.path, id_column=dataset.id_column, schema=schema, task=None,
                                 id_format=dataset.id_format, read_label=False)
        self.name = dataset.name
        self.feature_names = list(table.feature_names)
        self.features = np.ascontiguousarray(table.features, dtype=np.float64)
        self.index = {canonical(str(i)): row for row, i in enumerate(table.ids)}
        self.unknown_categories = dict(table.unknown_categories)

    def __len__(self) -> int:
        return len(self.index)

    def lookup(self, ids: Sequence[str]) -> tuple[np.ndarray, np.ndarray]:
        rows = np.array([self.index.get(i, -1) for i in ids], dtype=np.int64)
        found = rows >= 0
        out = np.zeros((len(ids), self.features.shape[1]), dtype=np.float64)
        out[found] = self.features[rows[found]]
        return out, found
