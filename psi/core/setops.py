"""Set operations on fully blinded values with numpy.

A fully blinded value is 16 bytes (the low half of an X25519 output). It is stored as a row of two native
uint64s holding the big-endian halves, so ordering rows by (hi, lo) is the byte-lexicographic order of the
16-byte values. That order -- ascending fully blinded value -- is the agreed output order: every party can
compute it, it needs no extra message and it is unrelated to the IDs.
"""
from __future__ import annotations

import hashlib

import numpy as np

VALUE_BYTES = 16


def values_from_bytes(data: bytes) -> np.ndarray:
    """(n, 2) native uint64 (hi, lo) from n concatenated 16-byte values."""
    return np.frombuffer(data, dtype=">u8").reshape(-1, 2).astype(np.uint64)


def values_to_bytes(values: np.ndarray) -> bytes:
    return np.ascontiguousarray(values, dtype=np.uint64).astype(">u8").tobytes()


def sort_order(values: np.ndarray) -> np.ndarray:
    """Indices that sort (n, 2) values ascending by (hi, lo).

    Sorts on the 64-bit hi alone (fast), then fixes the rare runs of equal hi by lo.
    """
    n = len(values)
    if n == 0:
        return np.zeros(0, dtype=np.int64)
    hi = values[:, 0]
    order = np.argsort(hi, kind="stable")
    sorted_hi = hi[order]
    ties = np.flatnonzero(sorted_hi[1:] == sorted_hi[:-1])
    del sorted_hi
    if ties.size:
        starts = ties[np.concatenate(([True], ties[1:] != ties[:-1] + 1))]
        for start in starts.tolist():
            end = start + 1
            while end < n and hi[order[end]] == hi[order[start]]:
                end += 1
            run = order[start:end]
            order[start:end] = run[np.argsort(values[run, 1], kind="stable")]
    return order


def duplicate_pairs(values: np.ndarray, limit: int = 3) -> list[tuple[int, int]]:
    """Up to ``limit`` pairs (i, j), i < j, of rows with equal values."""
    if len(values) < 2:
        return []
    order = sort_order(values)
    s = values[order]
    eq = np.flatnonzero((s[1:, 0] == s[:-1, 0]) & (s[1:, 1] == s[:-1, 1]))
    pairs = []
    for k in eq[:limit]:
        i, j = int(order[k]), int(order[k + 1])
        pairs.append((min(i, j), max(i, j)))
    return pairs


def duplicate_candidates(keys: np.ndarray, limit: int = 16) -> list[tuple[int, int]]:
    """Pairs of positions whose 64-bit keys collide (duplicates, or -- rarely -- a 64-bit collision)."""
    if len(keys) < 2:
        return []
    order = np.argsort(keys, kind="stable")
    s = keys[order]
    eq = np.flatnonzero(s[1:] == s[:-1])
    return [(int(order[k]), int(order[k + 1])) for k in eq[:limit]]


def _sorted_lookup(sorted_vals: np.ndarray, query: np.ndarray, block: int = 1 << 20) -> np.ndarray:
    """For each query row, the index of an equal row in ``sorted_vals`` (ascending, unique) or -1.

    Works in blocks of queries so the temporaries stay small for 10M-element sets.
    """
    n = len(sorted_vals)
    out = np.full(len(query), -1, dtype=np.int64)
    if n == 0 or len(query) == 0:
        return out
    hi = np.ascontiguousarray(sorted_vals[:, 0])
    tie_hi = hi[1:][hi[1:] == hi[:-1]]          # hi values shared by several rows (probability ~ n^2 / 2^65)
    for b in range(0, len(query), block):
        q = query[b:b + block]
        pos = np.minimum(np.searchsorted(hi, q[:, 0], side="left"), n - 1)
        hit = (hi[pos] == q[:, 0]) & (sorted_vals[pos, 1] == q[:, 1])
        out[b:b + block][hit] = pos[hit]
        if tie_hi.size:
            for k in np.flatnonzero(~hit & np.isin(q[:, 0], tie_hi)).tolist():
                j = int(pos[k])
                while j < n and hi[j] == q[k, 0]:
                    if sorted_vals[j, 1] == q[k, 1]:
                        out[b + k] = j
                        break
                    j += 1
    return out


def lookup(sorted_vals: np.ndarray, query: np.ndarray) -> np.ndarray:
    """For each query row, the index of the equal row in ``sorted_vals`` (ascending, unique), or -1."""
    return _sorted_lookup(sorted_vals, query)


def match_sorted(own_sorted: np.ndarray, other_sorted: np.ndarray) -> np.ndarray:
    """Positions in ``own_sorted`` whose value occurs in ``other_sorted`` (both ascending, unique rows).
    Sorted queries make the binary searches cache-friendly (10M x 10M in about a second)."""
    return np.flatnonzero(_sorted_lookup(other_sorted, own_sorted) >= 0)


def match(own: np.ndarray, other: np.ndarray) -> np.ndarray:
    """Positions in ``own`` whose value occurs in ``other``, ordered by ascending value (the agreed order).

    Both arrays are (n, 2) uint64 without duplicate rows.
    """
    if len(own) == 0 or len(other) == 0:
        return np.zeros(0, dtype=np.int64)
    other_sorted = other[sort_order(other)]
    own_order = sort_order(own)
    return own_order[match_sorted(own[own_order], other_sorted)]


def count_common(a: np.ndarray, b: np.ndarray) -> int:
    return int(len(match(a, b)))


def match_many(lists: list[np.ndarray]) -> np.ndarray:
    """Rows present in every list: a (k, len(lists)) int64 array of their positions in each list, ordered by
    ascending value."""
    if not lists or any(len(x) == 0 for x in lists):
        return np.zeros((0, len(lists)), dtype=np.int64)
    first_order = sort_order(lists[0])
    first_sorted = lists[0][first_order]
    keep = np.arange(len(first_sorted), dtype=np.int64)   # positions in first_sorted still common to all
    others = []
    for other in lists[1:]:
        order = sort_order(other)
        found = _sorted_lookup(other[order], first_sorted[keep])
        hit = found >= 0
        keep = keep[hit]
        others = [o[hit] for o in others]
        others.append(order[found[hit]])
    columns = [first_order[keep]] + others
    return np.stack(columns, axis=1)


def digest(values: np.ndarray) -> bytes:
    """SHA-256 of the values in the given order (both parties compare it to confirm the same result)."""
    return hashlib.sha256(values_to_bytes(values)).digest()
