"""An oblivious key-value store (OKVS): a 3-hash XOR table plus 64 dense cells, in numpy.

Keys and values are 16-byte strings. A table T has m = 3s + D cells of 16 bytes: a **sparse part** of three
segments of s cells each, followed by D = 64 **dense cells** ``Dense[b] = T[3s + b]``. A seeded hash gives
each key k one cell per segment and, independently, a 64-bit **dense mask** d(k):

    h_i(k) = i * s + (g_i(k) mod s),   i = 0, 1, 2,
    Decode(T, k) = T[h_0(k)] XOR T[h_1(k)] XOR T[h_2(k)] XOR  XOR_{b : bit b of d(k) is set} Dense[b].

So each key is a row of a linear map over GF(2)^128 (three ones in the sparse part, d(k) in the dense part),
and encoding solves Decode(T, k) = v(k) for every key. The table size m is a public function of n and the
attempt (:func:`table_cells`): 3s = ceil(1.52 n) + 128 rounded up to a multiple of 3, plus 64.

**Encoding** (:func:`encode_with_seed`):

a. *Peel* the sparse hypergraph (cells are vertices, keys are 3-edges): a cell that only one remaining key
   touches can be set last, so that key is removed and recorded with that cell; this repeats until no
   remaining key owns such a cell. Each round removes every key that owns a degree-one cell at the start
   of the round; within a round the removed keys are independent (a degree-one cell is touched by no other
   remaining key), which makes each round one vectorised step.
b. The keys that remain form the *2-core* (every cell they touch has degree >= 2 among them); usually there
   are none, sometimes a few. They give a small GF(2) system whose unknowns are the sparse cells they touch
   plus the 64 dense cells, solved by Gaussian elimination (rows are Python ints, right-hand sides 128-bit
   ints). Free unknowns keep their uniformly random bytes. If the rows are linearly dependent, or the core
   has more than ``MAX_CORE`` keys, this seed fails (below: with probability < 2^-40). With no core keys
   the dense cells are simply random.
c. Every cell nobody has set holds uniformly random bytes (the table starts random).
d. The peeled keys are assigned in reverse peel order, a round at a time:
   ``T[c(k)] = v(k) XOR T[other two cells of k] XOR DenseXor(d(k))`` where c(k) is the cell k was peeled with.

*Why the order is right.* Key k, peeled in round r with cell c, was the only remaining key touching c at
the start of round r; the remaining keys then were those peeled in rounds >= r and the core keys. So no
core key and no key peeled later (nor another key of round r) touches c. The core step (b) sets only core
cells and dense cells, none of which is a peeled key's own cell (a core cell has degree >= 2 throughout).
When round r is assigned, every other cell k reads (its other two sparse cells, the dense cells) already
has its final value: dense and core cells were fixed in (b), and a sparse cell owned by a key of a later
round was assigned before (reverse order), while a cell owned by a key of an earlier round r' < r is not
touched by k at all (k was still present at round r', so that cell had degree one only if k did not touch
it). Assigning c therefore makes Decode(T, k) = v(k), and later assignments never change a cell k reads.

**Correctness.** Every peeled key decodes to its value by the order argument; every core key by the
elimination (its equation involves only core and dense cells, which peeled keys never change).

**Failure probability** (one seed; hashes modelled as independent random functions, which is how they look
on the PSI's pseudorandom tags). Encoding fails exactly when the core rows are linearly dependent (or the
core exceeds ``MAX_CORE`` keys). The rows of the whole system are independent iff the core rows are: the
system is triangular, each peeled key having a pivot cell that no core key and no later-peeled key touches.

* *Rank, given a core of k keys.* Write a core row as (sparse part, dense part). A dependency is a nonzero
  x in GF(2)^k with x * Sparse = 0 and x * Dense = 0. The x with x * Sparse = 0 form a space of dimension
  k - rank(Sparse) <= k; the dense masks are independent of the positions (which alone decide the core),
  so for each such x != 0 the XOR of the selected masks is uniform on 64 bits. Union bound:
  P(dependent | core of k keys) <= 2^(k - 64). Cores of up to 24 keys are thus solved except with
  probability at most 2^-40; in practice the kernel has dimension 0 or 1 (e.g. two keys on the same three
  cells), i.e. 2^-64.
* *Size of the core.* The core is a stopping set (a set of keys in which no cell has degree one), and any
  stopping set lies inside the core. In each segment, k keys place k uniform balls into s bins and a
  stopping set needs no bin with exactly one ball; the number of such placements is k! [x^k] (e^x - x)^s
  <= k! (e^x - x)^s / x^k for every x > 0. Hence
      P(core has k keys) <= E_k := C(n, k) * (min_x k! (e^x - x)^s / (x s)^k)^3,
  and P(fail) <= sum_{k=2}^{n} min(1, E_k) * min(1, 2^(k - 64))  (:func:`log2_failure_bound`).
  This first-moment bound is what sizes the table. For fixed k it is small (E_k = O(n^(-k/2))), but for
  cores of linear size it only becomes useful above about 1.512 cells per key; hence 3s = ceil(1.52 n) + 128
  (the constant covers small n). Evaluated numerically, the bound is <= 2^-41.3 for every n <= 20 000
  (worst near n = 275), 2^-63.8 at n = 1 000, 2^-75.6 at n = 10^6 and 2^-79 at n = 10^7, and below 2^-69
  at every n sampled (60 sizes) between 20 000 and 10^7.
  Split at 24 keys: the terms k > 24 alone (a core of more than 24 keys, counted as a failure) sum to at
  most 2^-26 (near n = 200), 2^-41 at n = 1000 and 2^-81 at n = 10^4; the bound reaches 2^-40 for small n
  only because a core of 25..63 keys is still solved (P(dependent) <= 2^(k - 64)), which is why
  ``MAX_CORE`` is 256 and not 24. The cores actually measured are tiny: over 722 050 tables (100 000 each of
  n = 1, 2, 5, 20, 50, 100, 275, 1000; 20 000 of 10^4; 2000 of 10^5; 50 of 10^6) the largest had 6 keys.
  At the previous size (1.23 n + 32 cells, just above the peeling threshold 1.2218) the 2-core was often
  not small: 7.7% of 1000-key and 8.8% of 10^4-key tables kept a giant core of 28-53% of the keys, which
  no dense part can absorb; that is why the sparse part grew and not only the dense one.

So a retry with the next public seed (:func:`encode`, attempt > 0) happens with probability below 2^-40
per table; the retry loop remains as a fallback (and for duplicate keys, which can never be encoded).

**Obliviousness.** For fixed keys (whose rows are independent), encoding picks the free unknowns (all
cells except one pivot per key) uniformly at random and determines the pivots as an affine function of the
values and the free cells: a bijection between (free cells) and the tables that decode to the values. So
the table is uniform among all tables consistent with the values, and if the values are uniform and
independent the table is uniform: it reveals nothing about the keys. Decode at a key that was not encoded
returns T * row(k); unless that row lies in the span of the encoded rows (for random hashes, an event no
likelier than the failure of n + 1 keys in a table of this size) it is uniform, and even then it is an XOR
of stored values the decoder cannot predict when they are pseudorandom to it.

Hashes are a 64-bit mix (the splitmix/murmur finaliser) of the key's two halves and a 192-bit seed, in
vectorised uint64 arithmetic; the dense mask comes from a second mixing chain (other seed words, other
constants, halves in the other order), so two keys whose sparse cells coincide still get unrelated masks.
They need to be well spread, not secret (the keys fed in by the PSI are themselves pseudorandom).
"""
from __future__ import annotations

import os
from dataclasses import dataclass

import numpy as np

from psi.errors import PsiError

KEY_BYTES = VALUE_BYTES = 16
EXPANSION = 1.52           # sparse cells per key: where the first-moment bound on the 2-core becomes tight
EXTRA_CELLS = 128          # sparse headroom that keeps the bound below 2^-40 for small n
DENSE = 64                 # dense cells, always present at the end of the table
MAX_CORE = 256             # the largest 2-core solved by elimination (more: this seed fails)
GROWTH_AFTER = 4           # attempts at the base size before each retry adds 5% cells
MAX_ATTEMPTS = 16

_M1 = np.uint64(0xFF51AFD7ED558CCD)
_M2 = np.uint64(0xC4CEB9FE1A85EC53)
_GOLDEN = np.uint64(0x9E3779B97F4A7C15)
_S33 = np.uint64(33)
_DENSE_SALT = (np.uint64(0x243F6A8885A308D3), np.uint64(0x13198A2E03707344), np.uint64(0xA4093822299F31D0))
_LOW64 = (1 << 64) - 1


class OkvsError(PsiError):
    """Encoding failed for every allowed seed (practically impossible for distinct keys)."""

    grpc_code = "INTERNAL"


def table_cells(n: int, attempt: int = 0) -> int:
    """Number of cells for n keys at a given attempt: a public function both sides compute.

    ceil(1.52 n) + 128 sparse cells rounded up to a multiple of 3, plus the 64 dense cells; attempts from
    GROWTH_AFTER on add 5% sparse cells per attempt (a fallback that practically never runs).
    """
    if n < 0 or not 0 <= attempt < MAX_ATTEMPTS:
        raise ValueError(f"no OKVS table for n={n}, attempt={attempt}")
    base = -(-n * round(EXPANSION * 100) // 100) + EXTRA_CELLS
    grow = max(0, attempt - GROWTH_AFTER + 1)
    cells = base + (base * 5 * grow) // 100
    return 3 * (-(-cells // 3)) + DENSE


def sparse_cells(cells: int) -> int:
    """The sparse part (3 segments) of a table of ``cells`` cells; the rest are the 64 dense cells."""
    sparse = cells - DENSE
    if sparse <= 0 or sparse % 3:
        raise ValueError(f"table size {cells} is not {DENSE} dense cells plus a positive multiple of 3")
    return sparse


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


def _seed_words(seed: bytes) -> tuple[np.uint64, np.uint64, np.uint64]:
    if len(seed) != 24:
        raise ValueError("OKVS seed must be 24 bytes")
    s0, s1, s2 = (np.uint64(v) for v in np.frombuffer(seed, dtype="<u8"))
    return s0, s1, s2


def positions(keys, seed: bytes, cells: int) -> np.ndarray:
    """(n, 3) int64: the sparse cell of each key in each segment of a ``cells``-cell table. ``seed``: 24 B."""
    seg = np.uint64(sparse_cells(cells) // 3)
    s0, s1, s2 = _seed_words(seed)
    k = _as_u64(keys)
    with np.errstate(over="ignore"):
        a = _fmix(k[:, 0] ^ s0)
        b = _fmix(k[:, 1] ^ s1 ^ a)            # depends on both halves of the key
        out = np.empty((len(k), 3), dtype=np.int64)
        for i in range(3):
            h = _fmix(b + (s2 ^ (_GOLDEN * np.uint64(i + 1))))
            out[:, i] = (h % seg).astype(np.int64) + i * int(seg)
    return out


def dense_masks(keys, seed: bytes) -> np.ndarray:
    """(n,) uint64: each key's dense mask (bit b set: the key reads dense cell b)."""
    s0, s1, s2 = _seed_words(seed)
    d0, d1, d2 = _DENSE_SALT
    k = _as_u64(keys)
    with np.errstate(over="ignore"):
        c = _fmix(k[:, 1] ^ (s0 ^ d0))
        d = _fmix(k[:, 0] ^ (s2 ^ d1) ^ c)     # both halves, in the other order than in positions()
        return _fmix(d + (s1 ^ d2))


def _gather(t: np.ndarray, index: np.ndarray) -> np.ndarray:
    """(len(index), 2) uint64: rows of the (m, 2) uint64 array ``t`` (one 16-byte copy each, fast)."""
    return np.ascontiguousarray(t).view("V16").reshape(-1).take(index).view("<u8").reshape(-1, 2)


def _dense_xor(dense: np.ndarray, masks: np.ndarray) -> np.ndarray:
    """(n, 2) uint64: for each mask, the XOR of the dense cells (64 x 2 uint64) its set bits name.

    One mask byte at a time: a 256-entry table of all XORs of 8 dense cells, then one gather per byte."""
    n = len(masks)
    out = np.zeros((n, 2), dtype="<u8")
    mask_bytes = np.ascontiguousarray(masks, dtype="<u8").view(np.uint8).reshape(n, 8)
    combos = np.zeros((256, 2), dtype="<u8")
    for j in range(8):
        for i in range(8):
            combos[1 << i:2 << i] = combos[:1 << i] ^ dense[8 * j + i]
        out ^= _gather(combos, mask_bytes[:, j])
    return out


@dataclass
class _Peeling:
    order: list[tuple[np.ndarray, np.ndarray]]   # per round: (key indices, the cell each one is assigned)
    core: np.ndarray                             # indices of the keys left in the 2-core


def _peel(pos: np.ndarray, cells: int) -> _Peeling:
    """Remove keys that own a degree-one cell, round by round; see the module docstring."""
    n = len(pos)
    degree = np.bincount(pos.ravel(), minlength=cells).astype(np.int64)
    # XOR of the indices of the keys touching each cell: for a degree-one cell, that key's index
    owner = np.zeros(cells, dtype=np.int64)
    np.bitwise_xor.at(owner, pos.ravel(), np.repeat(np.arange(n, dtype=np.int64), 3))
    alive = np.ones(n, dtype=bool)
    ones = np.flatnonzero(degree == 1)           # every cell of degree one at the start of the round
    rounds: list[tuple[np.ndarray, np.ndarray]] = []
    while ones.size:
        keys, first = np.unique(owner[ones], return_index=True)   # a key may own several such cells
        rounds.append((keys, ones[first]))
        alive[keys] = False
        touched = pos[keys].ravel()
        np.subtract.at(degree, touched, 1)
        np.bitwise_xor.at(owner, touched, np.repeat(keys, 3))
        # a degree-one cell either was touched now or was one of ``ones`` (whose owners all left: now 0)
        ones = touched[degree[touched] == 1]
    return _Peeling(rounds, np.flatnonzero(alive))


def _solve_core(table: np.ndarray, sparse: int, core: np.ndarray, pos: np.ndarray, masks: np.ndarray,
                values: np.ndarray) -> bool:
    """Set the core keys' sparse cells and the dense cells so that every core key decodes to its value.

    Unknowns: bit b < 64 is dense cell b, bit 64 + j the j-th sparse cell the core touches. Free unknowns
    keep the table's random bytes. False if the rows are dependent or the core is too big."""
    if not core.size:
        return True
    if core.size > MAX_CORE:
        return False
    cols, local = np.unique(pos[core].ravel(), return_inverse=True)
    local = local.reshape(-1, 3)
    pivots: dict[int, tuple[int, int]] = {}          # pivot bit -> (row, rhs); the pivot is the row's top bit
    for i, key in enumerate(core.tolist()):
        row = int(masks[key])
        for c in local[i].tolist():
            row |= 1 << (DENSE + c)
        rhs = int(values[key, 0]) | int(values[key, 1]) << 64
        while row:
            top = row.bit_length() - 1
            if top not in pivots:
                pivots[top] = (row, rhs)
                break
            prow, prhs = pivots[top]
            row ^= prow
            rhs ^= prhs
        else:
            return False                             # dependent rows (duplicate keys, or probability < 2^-40)
    cell_of = [sparse + b for b in range(DENSE)] + [int(c) for c in cols]
    solved: list[int] = []
    for col, cell in enumerate(cell_of):             # ascending: a pivot row's other bits are all below it
        if col in pivots:
            row, x = pivots[col]
            rest = row ^ (1 << col)
            while rest:
                low = rest & -rest
                x ^= solved[low.bit_length() - 1]
                rest ^= low
            table[cell, 0] = x & _LOW64
            table[cell, 1] = x >> 64
        else:
            x = int(table[cell, 0]) | int(table[cell, 1]) << 64
        solved.append(x)
    return True


def encode_with_seed(keys, values, seed: bytes, cells: int) -> np.ndarray | None:
    """The (cells, 16) uint8 table for this seed, or None if the system cannot be solved (see above)."""
    k = _as_u64(keys)
    v = _as_u64(values)
    if len(k) != len(v):
        raise ValueError(f"{len(k)} keys but {len(v)} values")
    sparse = sparse_cells(cells)
    pos = positions(k, seed, cells)
    masks = dense_masks(k, seed)
    peel = _peel(pos, sparse)
    table = np.frombuffer(bytearray(os.urandom(cells * VALUE_BYTES)), dtype="<u8").reshape(cells, 2)
    if not _solve_core(table, sparse, peel.core, pos, masks, v):
        return None
    target = v ^ _dense_xor(table[sparse:], masks)   # the dense cells are final from here on
    for keys_r, cells_r in reversed(peel.order):
        p = pos[keys_r]
        current = _gather(table, p[:, 0]) ^ _gather(table, p[:, 1]) ^ _gather(table, p[:, 2])
        table[cells_r] ^= current ^ target[keys_r]
    return table.view(np.uint8).reshape(cells, VALUE_BYTES)


def encode(keys, values, seed_for) -> tuple[int, np.ndarray]:
    """Encode ``keys -> values`` (n x 16 bytes each, keys distinct); ``seed_for(attempt)`` gives the 24-byte
    seed of each attempt. Returns (attempt, table), the table having ``table_cells(n, attempt)`` cells.
    The attempt is 0 except with probability below 2^-40 (:func:`log2_failure_bound`)."""
    n = len(_as_u64(keys))
    for attempt in range(MAX_ATTEMPTS):
        table = encode_with_seed(keys, values, seed_for(attempt), table_cells(n, attempt))
        if table is not None:
            return attempt, table
    raise OkvsError(f"OKVS encoding of {n} keys failed for {MAX_ATTEMPTS} seeds (are the keys distinct?)")


def decode(table, keys, seed: bytes) -> np.ndarray:
    """(n, 16) uint8: T[h0(k)] ^ T[h1(k)] ^ T[h2(k)] ^ (the dense cells named by d(k)) for every key."""
    t = _as_u64(table)
    pos = positions(keys, seed, len(t))
    out = _gather(t, pos[:, 0]) ^ _gather(t, pos[:, 1]) ^ _gather(t, pos[:, 2])
    out ^= _dense_xor(t[len(t) - DENSE:], dense_masks(keys, seed))
    return out.view(np.uint8).reshape(-1, VALUE_BYTES)


def log2_failure_bound(n: int, cells: int | None = None) -> float:
    """log2 of the upper bound on P(one seed fails) for n keys (module docstring, "Failure probability"):
    sum over k of min(1, E_k) * min(1, 2^(k - 64)), E_k the expected number of k-key stopping sets.

    Evaluated in floating point (the saddle point x of each k by bisection); ``cells`` defaults to the
    table size of attempt 0. Takes about a second for n = 10^6."""
    if n < 2:
        return float("-inf")                     # a single key always peels
    s = sparse_cells(table_cells(n) if cells is None else cells) // 3
    k = np.arange(2, n + 1, dtype=np.float64)
    log_fact = np.concatenate([[0.0], np.cumsum(np.log(np.arange(1, n + 1, dtype=np.float64)))])
    ki = k.astype(np.int64)
    # x minimising log((e^x - x)^s / x^k): the root of x (e^x - 1) / (e^x - x) = k / s (increasing in x)
    rho = k / s
    lo, hi = np.zeros_like(k), rho + 2.0
    for _ in range(64):
        mid = (lo + hi) / 2
        above = mid * np.expm1(mid) > rho * (np.exp(mid) - mid)
        hi = np.where(above, mid, hi)
        lo = np.where(above, lo, mid)
    x = (lo + hi) / 2
    log_no_singleton = np.minimum(log_fact[ki] + s * np.log(np.exp(x) - x) - k * np.log(x * s), 0.0)
    log_e = log_fact[n] - log_fact[ki] - log_fact[n - ki] + 3 * log_no_singleton
    terms = np.minimum(log_e / np.log(2), 0.0) + np.minimum(k - DENSE, 0.0)
    top = terms.max()
    return float(min(0.0, top + np.log2(np.sum(np.exp2(terms - top)))))
