"""Multi-exponentiation modulo n^2: out[i] = prod_j b_j^(E[i, j]) for a signed integer matrix E.

This is the ciphertext-matrix x plaintext-matrix product of packed Paillier: with [x_j] = b_j,
prod_j [x_j]^(E_ij) = [sum_j E_ij x_j]. Computing each term with its own powmod wastes the squarings, which
the algorithms here share. Every algorithm starts from the signed c-bit digit recoding

    E = sum_w d_w 2^(c w),   d_w in [-2^(c-1), 2^(c-1))

and keeps negative digits apart so that no huge exponent (n - |e|) is ever used: a negative digit either
multiplies a separate "negative" accumulator that is inverted once per output at the end (with Montgomery's
batch-inversion trick: one modular inverse for all outputs), or multiplies an inverted base (again batch
inverted, once per base). Inverses are exact in Z*_{n^2}, so results equal, as integers, phe's term-by-term
``sum(E_ij * EncryptedNumber_j)`` (which raises inverse ciphertexts to |E_ij| for negative scalars).

Algorithms (cost in modular multiplications at n^2, W = number of c-bit windows):

* ``comb`` -- fixed-base windows, for few bases and many outputs. Per base and window, a table
  T[j, w, d] = b_j^(d 2^(c w)) for d = 1..2^(c-1) (built once: about J W 2^(c-1) multiplications, shared by
  all outputs). Then each output is a plain product of table entries, one per non-zero digit: about
  I J W (1 - 2^-c) multiplications and no squarings at all.
* ``pippenger`` -- bucket method, for many bases and few outputs. Per output and window (top first):
  c squarings of the accumulator, then every base with digit d goes into bucket |d| (using the inverted base
  when d < 0), and the buckets are folded with two running products: prod_d B_d^d in 2 * 2^(c-1)
  multiplications. About I W (J + 2^c) + I c W multiplications, plus 3 J for the base inverses.
* ``direct`` -- one gmpy2 powmod per non-zero term (for tiny problems).

:func:`plan` counts the multiplications each algorithm would make for every window width c on the actual
digits, and picks the cheapest (squarings cost about the same as multiplications at this size).
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Sequence

import gmpy2
import numpy as np
from gmpy2 import mpz

from vfl.he.errors import CryptoError

INT64_DIGIT_LIMIT = 1 << 62


def batch_invert(values: Sequence, modulus) -> list:
    """Modular inverses of all values with one gmpy2.invert (Montgomery's trick): 3(N-1) mults + 1 inverse."""
    values = list(values)
    if not values:
        return []
    prefix = [values[0]]
    for v in values[1:]:
        prefix.append(prefix[-1] * v % modulus)
    try:
        inv = gmpy2.invert(prefix[-1], modulus)
    except ZeroDivisionError:
        raise CryptoError("a ciphertext is not invertible modulo n^2 (it shares a factor with n)") from None
    out = [None] * len(values)
    for i in range(len(values) - 1, 0, -1):
        out[i] = inv * prefix[i - 1] % modulus
        inv = inv * values[i] % modulus
    out[0] = inv
    return out


# ------------------------------------------------------------------------------------------ digits

def signed_digits(exponents: np.ndarray, c: int) -> np.ndarray:
    """Signed c-bit digits of every exponent: array [W, *E.shape] with E = sum_w d_w 2^(c w).

    int64 input is recoded with numpy; object arrays (Python ints of any size) digit by digit.
    """
    E = np.asarray(exponents)
    if c < 2:
        raise ValueError("signed digits need a window of at least 2 bits")
    full, half = 1 << c, 1 << (c - 1)
    if E.dtype != object:
        rem = E.astype(np.int64)
        if rem.size and int(np.max(np.abs(rem))) >= INT64_DIGIT_LIMIT:
            return signed_digits(rem.astype(object), c)
        out = []
        while rem.size and rem.any():
            d = rem & (full - 1)
            d = np.where(d >= half, d - full, d)
            out.append(d)
            rem = (rem - d) >> c
        if not out:
            out.append(np.zeros(E.shape, dtype=np.int64))
        return np.stack(out)
    flat = [int(v) for v in E.reshape(-1)]
    columns: list[list[int]] = []
    for v in flat:
        ds = []
        while v:
            d = v & (full - 1)
            if d >= half:
                d -= full
            ds.append(d)
            v = (v - d) >> c
        columns.append(ds)
    W = max([len(ds) for ds in columns] + [1])
    out = np.zeros((W, len(flat)), dtype=np.int64)
    for k, ds in enumerate(columns):
        out[:len(ds), k] = ds
    return out.reshape((W,) + E.shape)


# ------------------------------------------------------------------------------------------ cost model

@dataclass(frozen=True)
class Plan:
    algorithm: str      # "comb" | "pippenger" | "direct"
    window: int         # c (0 for direct)
    cost: float         # estimated modular multiplications
    digits: np.ndarray | None = None

    def describe(self) -> str:
        return f"{self.algorithm}(c={self.window}, ~{int(self.cost)} mulmods)"


def _comb_cost(digits: np.ndarray) -> float:
    W, I, J = digits.shape
    absd = np.abs(digits)
    maxd = absd.max(axis=1)                      # [W, J] largest digit needed per table
    table = float(np.maximum(maxd - 1, 0).sum()) + float((W - 1) * J)  # entries + one step per window
    products = float(np.count_nonzero(digits))
    negatives = 3.0 * I if (digits < 0).any() else 0.0
    return table + products + negatives


def _pippenger_cost(digits: np.ndarray, c: int) -> float:
    W, I, J = digits.shape
    absd = np.abs(digits)
    terms = float(np.count_nonzero(digits))
    fold = 2.0 * float(absd.max(axis=2).sum())    # two running products up to the largest digit
    squarings = float(c * (W - 1) * I)
    inverses = 3.0 * J if (digits < 0).any() else 0.0
    return terms + fold + squarings + inverses


def _direct_cost(E: np.ndarray) -> float:
    if E.dtype == object:
        bits = np.array([abs(int(v)).bit_length() for v in E.reshape(-1)], dtype=np.float64)
    else:
        a = np.abs(E.astype(np.int64)).astype(np.float64)
        bits = np.where(a > 0, np.floor(np.log2(np.maximum(a, 1))) + 1, 0)
    nz = float(np.count_nonzero(bits))
    # a powmod with a k-bit exponent costs about 1.2 k multiplications (sliding window, in C)
    return float(1.2 * bits.sum()) + nz + (3.0 * E.shape[0] if (np.asarray(E) < 0).any() else 0.0)


def plan(exponents: np.ndarray, windows: Sequence[int] = tuple(range(2, 11)),
         algorithms: Sequence[str] = ("comb", "pippenger", "direct")) -> Plan:
    """The cheapest (algorithm, window) by counted multiplications on these exponents."""
    E = np.asarray(exponents)
    if E.ndim != 2:
        raise ValueError(f"exponent matrix must be 2-D [outputs, bases], got shape {E.shape}")
    best: Plan | None = None
    if "direct" in algorithms:
        best = Plan("direct", 0, _direct_cost(E))
    for c in windows:
        digits = signed_digits(E, c)
        for algorithm in algorithms:
            if algorithm == "comb":
                cost = _comb_cost(digits)
            elif algorithm == "pippenger":
                cost = _pippenger_cost(digits, c)
            else:
                continue
            if best is None or cost < best.cost:
                best = Plan(algorithm, c, cost, digits)
    assert best is not None
    return best


# ------------------------------------------------------------------------------------------ algorithms
# These functions are the work units of the parallel executor: top-level, arguments picklable (mpz lists,
# numpy arrays), results lists of mpz with None meaning 1.

def comb_partial(bases: Sequence, digits: np.ndarray, c: int, modulus) -> tuple[list, list]:
    """(positive, negative) partial products per output over these bases: out = pos * neg^-1.

    `digits` is [W, I, J] for the J bases given. Table for base j, window w: b_j^(d 2^(c w)), d = 1..max|d|.
    """
    m = mpz(modulus)
    W, I, J = digits.shape
    half = 1 << (c - 1)
    absd = np.abs(digits)
    need = absd.max(axis=1)                      # [W, J]
    table: list = []
    offsets = np.zeros((W, J), dtype=np.int64)
    for j in range(J):
        g = mpz(bases[j])                        # b_j^(2^(c w)) for the current window w
        for w in range(W):
            k = int(need[w, j])
            offsets[w, j] = len(table) - 1       # entry for digit d sits at offsets + d (d >= 1)
            acc = g
            if k:
                table.append(g)
                for _ in range(k - 1):
                    acc = acc * g % m
                    table.append(acc)
            if w + 1 < W:                        # next window's base g^(2^c)
                have = max(k, 1)                 # acc = g^have
                if half - have + 1 <= c:         # extend the run to g^(2^(c-1)) and square once
                    for _ in range(half - have):
                        acc = acc * g % m
                    g = acc * acc % m
                else:                            # or square c times
                    for _ in range(c):
                        g = g * g % m
    # flat table index for every digit: offsets[w, j] + |d|
    idx = offsets[:, None, :] + absd             # [W, I, J]
    idx_t = np.ascontiguousarray(idx.transpose(1, 0, 2)).reshape(I, W * J)
    sign_t = np.ascontiguousarray(np.sign(digits).transpose(1, 0, 2)).reshape(I, W * J)
    pos_out: list = []
    neg_out: list = []
    for i in range(I):
        row_idx, row_sign = idx_t[i], sign_t[i]
        for sign, out in ((1, pos_out), (-1, neg_out)):
            acc = None
            for k in row_idx[row_sign == sign].tolist():
                t = table[k]
                acc = t if acc is None else acc * t % m
            out.append(acc)
    return pos_out, neg_out


def pippenger_outputs(bases: Sequence, inv_bases: Sequence | None, digits: np.ndarray, c: int,
                      modulus) -> list:
    """Final outputs by the bucket method; negative digits use inv_bases (required if any digit < 0)."""
    m = mpz(modulus)
    W, I, J = digits.shape
    half = 1 << (c - 1)
    out: list = []
    for i in range(I):
        acc = None
        for w in range(W - 1, -1, -1):
            if acc is not None:
                for _ in range(c):
                    acc = acc * acc % m
            row = digits[w, i]
            nz = np.flatnonzero(row)
            if nz.size == 0:
                continue
            buckets: list = [None] * (half + 1)
            for j, d in zip(nz.tolist(), row[nz].tolist()):
                if d > 0:
                    b = bases[j]
                else:
                    b = inv_bases[j]  # type: ignore[index]
                    d = -d
                cur = buckets[d]
                buckets[d] = b if cur is None else cur * b % m
            running = None
            total = None
            for d in range(half, 0, -1):
                bd = buckets[d]
                if bd is not None:
                    running = bd if running is None else running * bd % m
                if running is not None:
                    total = running if total is None else total * running % m
            if total is not None:
                acc = total if acc is None else acc * total % m
        out.append(acc)
    return out


def direct_partial(bases: Sequence, exponents: np.ndarray, modulus) -> tuple[list, list]:
    """(positive, negative) partial products with one powmod per non-zero term."""
    m = mpz(modulus)
    E = np.asarray(exponents)
    pos_out, neg_out = [], []
    for row in E.tolist():
        pos = neg = None
        for b, e in zip(bases, row):
            e = int(e)
            if e == 0:
                continue
            t = gmpy2.powmod(b, abs(e), m)
            if e > 0:
                pos = t if pos is None else pos * t % m
            else:
                neg = t if neg is None else neg * t % m
        pos_out.append(pos)
        neg_out.append(neg)
    return pos_out, neg_out


def combine(pos: list, neg: list, modulus) -> list:
    """pos[i] * neg[i]^-1 mod modulus with one batch inversion; None stands for 1."""
    m = mpz(modulus)
    out = [mpz(1) if p is None else p for p in pos]
    which = [i for i, v in enumerate(neg) if v is not None]
    if which:
        inverses = batch_invert([neg[i] for i in which], m)
        for i, inv in zip(which, inverses):
            out[i] = out[i] * inv % m
    return out


def multiply_partials(parts: Sequence[list], modulus) -> list:
    """Elementwise product of partial-result lists (None = 1)."""
    m = mpz(modulus)
    out = list(parts[0])
    for part in parts[1:]:
        for i, v in enumerate(part):
            if v is not None:
                out[i] = v if out[i] is None else out[i] * v % m
    return out
