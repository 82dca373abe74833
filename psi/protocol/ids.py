"""Uniform, memory-frugal access to a party's IDs: lists, numpy arrays, pandas Series, pyarrow arrays, and
sources that read them in chunks from a file.

The 2-party protocol reads a party's IDs front to back in chunks (twice: the input check, then the random send
order it builds on disk), so a source whose IDs do not fit in memory only needs ``len``, ``chunks`` and, for error
messages and results, ``gather``: any object with those (and, optionally, ``spill_dir``: where a session may put
its temporary files) is taken as it is (:class:`ChunkedIds`). The N-party protocol gathers rows in a random order.
"""
from __future__ import annotations

from pathlib import Path
from typing import Any, Iterator, Optional, Protocol, Sequence, runtime_checkable

import numpy as np

from psi.errors import PsiInputError


@runtime_checkable
class ChunkedIds(Protocol):
    """A party's IDs read in chunks, e.g. from a file: ``len``, ``chunks(size)`` -> (first row, IDs) in row order,
    ``gather(rows)`` -> the IDs at ``rows`` (may read the source again; used for the rows of a result and for
    error messages). An optional ``spill_dir`` attribute says where a session puts its temporary files (default:
    the system's temp directory)."""

    def __len__(self) -> int: ...

    def chunks(self, size: int) -> Iterator[tuple[int, list]]: ...

    def gather(self, rows: np.ndarray) -> list: ...


class IdSource:
    """IDs held in memory (list, numpy, pandas, pyarrow)."""

    spill_dir: Optional[Path] = None

    def __init__(self, ids: Any):
        self._kind, self._ids = _wrap(ids)

    def __len__(self) -> int:
        return len(self._ids)

    def chunks(self, size: int) -> Iterator[tuple[int, list]]:
        for start in range(0, len(self), size):
            yield start, self.gather(np.arange(start, min(start + size, len(self))))

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


def as_id_source(ids: Any):
    """An :class:`IdSource` for IDs in memory; a :class:`ChunkedIds` source as it is."""
    if isinstance(ids, IdSource) or (isinstance(ids, ChunkedIds) and not isinstance(ids, (list, tuple))):
        return ids
    return IdSource(ids)
