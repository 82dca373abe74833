"""An oblivious key-value store (OKVS): a 3-hash XOR table, encoded by hypergraph peeling, in numpy.

Keys and values are 16-byte strings. A table T of m cells (16 bytes each) is split into three equal
segments of s = m / 3 cells. A seeded hash maps each key k to one cell per segment,

    h_i(k) = i * s + (g_i(k) mod s),   i = 0, 1, 2,

and the value stored for k is read back as

    Decode(T, k) = T[h_0(k)] XOR T[h_1(k)] XOR T[h_2(k)].

**Encoding** solves Decode(T, k) = v(k) for every key, a sparse linear system over GF(2)^128 whose rows
are the keys' three cells (the edges of a random 3-partite 3-uniform hypergraph on the cells). Peeling
solves it: a cell that only one remaining key touches can be set last, after that key's other two cells,
so the key is removed and recorded; this repeats until no key remains. Each round removes every key that
owns such a cell at the start of the round; within a round the removed keys are independent (a cell of
degree one is touched by no other remaining key, so no key of the round touches another's cell), which
makes each round one vectorised step. Cells are then assigned in reverse peel order, a round at a time:
``T[c] = v(k) XOR T[other two cells of k]``. Cells that no key claims keep uniformly random bytes.
With m >= 1.23 n + 32 cells a random 3-partite hypergraph peels with high probability (the peeling
threshold is m / n ~ 1.222); when it does not, the caller retries with another seed (:func:`encode`).

**Obliviousness.** If the encoded values are uniformly random and independent, the table is uniformly
random: the free cells are uniform, and each claimed cell is a value XOR cells fixed before it, a
bijection of the values. So the table reveals nothing about which keys were encoded, and Decode at a
key that was not encoded is uniform unless its three cells are a GF(2) combination of the encoded keys'
rows (probability about 2^(n - m) <= 2^-32 per query, and even then the output is an XOR of values the
decoder cannot predict when the values are pseudorandom to it).

Hashes are a 64-bit mix (the splitmix/murmur finaliser) of the key's two halves and a 192-bit seed, in
vectorised uint64 arithmetic; they need to be well spread, not secret (the keys fed in by the PSI are
themselves pseudorandom).
"""
from __future__ import annotations

import os
from dataclasses import dataclass

import numpy as np

from psi.errors import PsiError

KEY_BYTES = VALUE_BYTES = 16
EXPANSION = 1.23           # cells per key, just above the 3-hypergraph peeling threshold 1.2218
EXTRA_CELLS = 32           # headroom that makes small tables peel as reliably as big ones
GROWTH_AFTER = 4           # attempts at the base size before each retry adds 5% cells
MAX_ATTEMPTS = 16

_M1 = np.uint64(0xFF51AFD7ED558CCD)
_M2 = np.uint64(0xC4CEB9FE1A85EC53)
_GOLDEN = np.uint64(0x9E3779B97F4A7C15)
_S33 = np.uint64(33)


class OkvsError(PsiError):
    """Peeling failed for every allowed seed (practically impossible for distinct keys)."""

    grpc_code = "INTERNAL"


def table_cells(n: int, attempt: int = 0) -> int:
    """Number of cells for n keys at a given attempt: a public function both sides compute.

    ceil(1.23 n) + 32 rounded up to a multiple of 3; attempts from GROWTH_AFTER on add 5% per attempt,
    so a set that is unlucky (or tiny) still succeeds within MAX_ATTEMPTS.
    """
    if n < 0 or not 0 <= attempt < MAX_ATTEMPTS:
        raise ValueError(f"no OKVS table for n={n}, attempt={attempt}")
    base = -(-n * 123 // 100) + EXTRA_CELLS
    grow = max(0, attempt - GROWTH_AFTER + 1)
    cells = base + (base * 5 * grow) // 100
    return 3 * (-(-cells // 3))


def _fmix(x: np.ndarray) -> np.ndarray:
    """The 64-bit finaliser of MurmurHash3: a bijection of uint64 with good avalanche (in place)."""
    x ^= x >> _S33
    x *= _M1
    x ^= x >> _S33
    x *= _M2
    x ^= x >> _S33
    return x


def _as_u64(keys) -> np.ndarray:
    """(n, 2) uint64 view of n 16-byte keys (bytes or an (n, 16) uint8 array)."""
    if isinstance(keys, np.ndarray) and keys.dtype == np.dtype("<u8") and keys.ndim == 2 and keys.shape[1] == 2:
        return keys
    arr = np.frombuffer(keys, dtype=np.uint8) if isinstance(keys, (bytes, bytearray, memoryview)) else keys
    arr = np.ascontiguousarray(arr, dtype=np.uint8).reshape(-1, KEY_BYTES)
    return arr.view("<u8")


def positions(keys, seed: bytes, cells: int) -> np.ndarray:
    """(n, 3) int64: the cell of each key in each segment. ``seed`` is 24 bytes."""
    if cells % 3 or cells <= 0:
        raise ValueError(f"table size {cells} is not a positive multiple of 3")
    if len(seed) != 24:
        raise ValueError("OKVS seed must be 24 bytes")
    s0, s1, s2 = (np.uint64(v) for v in np.frombuffer(seed, dtype="<u8"))
    k = _as_u64(keys)
    seg = np.uint64(cells // 3)
    with np.errstate(over="ignore"):
        a = _fmix(k[:, 0] ^ s0)
        b = _fmix(k[:, 1] ^ s1 ^ a)            # depends on both halves of the key
        out = np.empty((len(k), 3), dtype=np.int64)
        for i in range(3):
            h = _fmix(b + (s2 ^ (_GOLDEN * np.uint64(i + 1))))
            out[:, i] = (h % seg).astype(np.int64) + i * int(seg)
    return out


@dataclass
class _Peeling:
    order: list[tuple[np.ndarray, np.ndarray]]   # per round: (key indices, the cell each one is assigned)
    complete: bool


def _peel(pos: np.ndarray, cells: int) -> _Peeling:
    """Remove keys that own a degree-one cell, round by round; see the module docstring."""
    n = len(pos)
    degree = np.bincount(pos.ravel(), minlength=cells).astype(np.int64)
    # XOR of the indices of the keys touching each cell: for a degree-one cell, that key's index
    owner = np.zeros(cells, dtype=np.int64)
    np.bitwise_xor.at(owner, pos.ravel(), np.repeat(np.arange(n, dtype=np.int64), 3))
    ones = np.flatnonzero(degree == 1)           # every cell of degree one at the start of the round
    rounds: list[tuple[np.ndarray, np.ndarray]] = []
    removed = 0
    while ones.size:
        keys, first = np.unique(owner[ones], return_index=True)   # a key may own several such cells
        rounds.append((keys, ones[first]))
        removed += len(keys)
        touched = pos[keys].ravel()
        np.subtract.at(degree, touched, 1)
        np.bitwise_xor.at(owner, touched, np.repeat(keys, 3))
        # a degree-one cell either was touched now or was one of ``ones`` (whose owners all left: now 0)
        ones = touched[degree[touched] == 1]
    return _Peeling(rounds, removed == n)


def encode_with_seed(keys, values, seed: bytes, cells: int) -> np.ndarray | None:
    """The (cells, 16) uint8 table for this seed, or None if the hypergraph does not peel."""
    k = _as_u64(keys)
    v = _as_u64(values)
    if len(k) != len(v):
        raise ValueError(f"{len(k)} keys but {len(v)} values")
    pos = positions(k, seed, cells)
    peel = _peel(pos, cells)
    if not peel.complete:
        return None
    table = np.frombuffer(bytearray(os.urandom(cells * VALUE_BYTES)), dtype="<u8").reshape(cells, 2)
    for keys_r, cells_r in reversed(peel.order):
        p = pos[keys_r]
        current = table[p[:, 0]] ^ table[p[:, 1]] ^ table[p[:, 2]]
        table[cells_r] ^= current ^ v[keys_r]
    return table.view(np.uint8).reshape(cells, VALUE_BYTES)


def encode(keys, values, seed_for) -> tuple[int, np.ndarray]:
    """Encode ``keys -> values`` (n x 16 bytes each, keys distinct); ``seed_for(attempt)`` gives the 24-byte
    seed of each attempt. Returns (attempt, table), the table having ``table_cells(n, attempt)`` cells."""
    n = len(_as_u64(keys))
    for attempt in range(MAX_ATTEMPTS):
        table = encode_with_seed(keys, values, seed_for(attempt), table_cells(n, attempt))
        if table is not None:
            return attempt, table
    raise OkvsError(f"OKVS encoding of {n} keys failed for {MAX_ATTEMPTS} seeds (are the keys distinct?)")


def decode(table, keys, seed: bytes) -> np.ndarray:
    """(n, 16) uint8: T[h0(k)] ^ T[h1(k)] ^ T[h2(k)] for every key."""
    t = _as_u64(table)
    pos = positions(keys, seed, len(t))
    out = t[pos[:, 0]] ^ t[pos[:, 1]] ^ t[pos[:, 2]]
    return out.view(np.uint8).reshape(-1, VALUE_BYTES)
