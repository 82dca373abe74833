"""Uniform, memory-frugal access to a party's IDs: lists, numpy arrays, pandas Series, pyarrow arrays.

The protocol only ever needs ``len(ids)`` and the IDs at a batch of row positions (it hashes them in a
random order and, at the end, reads the common ones), so a large column never has to become a Python list.
"""
from __future__ import annotations

from typing import Any, Sequence

import numpy as np

from psi.errors import PsiInputError


class IdSource:
    def __init__(self, ids: Any):
        self._kind, self._ids = _wrap(ids)

    def __len__(self) -> int:
        return len(self._ids)

    def gather(self, rows: np.ndarray) -> list:
        """The IDs at ``rows`` (str, or bytes for byte-string columns), as a list."""
        kind, ids = self._kind, self._ids
        if kind == "numpy":
            return ids[rows].tolist()
        if kind == "arrow":
            import pyarrow as pa
            return ids.take(pa.array(np.asarray(rows, dtype=np.int64))).to_pylist()
        return [ids[i] for i in rows.tolist()]


def _wrap(ids: Any) -> tuple[str, Any]:
    if isinstance(ids, IdSource):
        return ids._kind, ids._ids
    if isinstance(ids, np.ndarray):
        if ids.ndim != 1:
            raise PsiInputError(f"IDs must be one-dimensional, got an array of shape {ids.shape}")
        return "numpy", ids
    mod = type(ids).__module__
    if mod.startswith("pandas"):
        return "numpy", ids.to_numpy()
    if mod.startswith("pyarrow"):
        import pyarrow as pa
        if isinstance(ids, pa.ChunkedArray):
            ids = ids.combine_chunks()
        if not (pa.types.is_string(ids.type) or pa.types.is_large_string(ids.type)
                or pa.types.is_binary(ids.type) or pa.types.is_large_binary(ids.type)):
            raise PsiInputError(f"ID column has type {ids.type}; expected strings")
        return "arrow", ids
    if isinstance(ids, (str, bytes)):
        raise PsiInputError("IDs must be a sequence of strings, not a single string")
    if not isinstance(ids, Sequence):
        ids = list(ids)
    return "sequence", ids


def as_id_source(ids: Any) -> IdSource:
    return ids if isinstance(ids, IdSource) else IdSource(ids)
