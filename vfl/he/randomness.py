"""Fresh encryption randomness ("obfuscators" r^n mod n^2) -- the dominant cost of Paillier encryption.

A Paillier ciphertext is c = (1 + n m) * rho mod n^2 where rho must be a fresh random n-th residue. Two
sources, chosen by who is protected from whom:

``DjnRandomness`` (key owner only) -- Damgard, Jurik and Nielsen's short-exponent fixed-base variant
    [DJN10: I. Damgard, M. Jurik, J. B. Nielsen, "A generalization of Paillier's public-key system with
    applications to electronic voting", Int. J. Inf. Secur. 9(6):371-385, 2010]:
        h = -x^2 mod n for a random x in Z*_n,   h_s = h^n mod n^2,   rho = h_s^alpha,
        alpha uniform in [0, 2^l),  l = ceil(k/2) bits for a k-bit n (1024 for 2048-bit keys).
    h_s is fixed, so rho comes from a fixed-base window table: T[w][d] = h_s^(d 2^(c w)) and rho is a product
    of l/c table entries (c = 8: 128 multiplications instead of a 2048-bit-exponent powmod). The key owner
    knows p and q and evaluates the product modulo p^2 and q^2 (numbers half as long, ~3x cheaper each) and
    recombines by CRT. The ciphertext is exactly DJN's; semantic security against anyone *without the
    factorization* rests on DCR plus DJN's assumption that h_s^alpha with a short alpha is indistinguishable
    from a uniform element of <h_s>. It must NOT be used under someone else's key: the key owner can compute
    discrete logarithms modulo p and q in a way the assumption does not cover, and -x^2 fixes Jacobi symbols.
    Hence it is only available to an engine that holds the private key.

``PeerDjnRandomness`` (a party re-randomizing under a *peer's* key, with the base the key owner published)
    rho = h_s^beta with beta uniform in [0, 2^(l + 100)), where h_s is the owner's DJN base. Every ciphertext the
    owner sends carries randomness h_s^alpha (alpha < 2^l), so whatever a peer computes from them -- products of
    powers with exponents e_j -- carries h_s^E with |E| < 2^l * sum_j |e_j|. Multiplying by h_s^beta makes the
    total exponent E + beta, within statistical distance |E| / 2^(l+100) < sum_j |e_j| * 2^-100 of beta alone,
    whatever E is. At the default layout (22/24 fixed-point bits, activation bound 32: |activation| <= 2^27,
    |gradient| <= 2^28) the largest sum is the weight gradient's: one term per batch row, at most 2^16 rows
    (max batch 65536), so sum_j |e_j| <= 2^16 * 2^27 = 2^43 (the forward and input-gradient products have 32
    terms: <= 2^32 and 2^33), |E| < 2^(l+43) and the distance is < 2^(43-100) = 2^-57 <= 2^-56. (99 bits would
    be the minimum for 2^-56; 100 leaves one bit.) So even the key owner, who can compute discrete logarithms
    modulo p and q, learns nothing about the e_j from the randomness: the protection is statistical, not an
    assumption. Against anyone else it is the DJN assumption, as above. It
    relies on the owner having produced its ciphertexts with DJN randomness from that base (semi-honest).
    Bases that are trivially unfit (1 mod n, order <= 2, small order) are refused by :func:`check_djn_base`.

``FullRandomness`` (anyone, in particular a party re-randomizing under a *peer's* key) -- r uniform in Z*_n,
    rho = r^n mod n^2 (gmpy2.powmod_base_list, GIL released). rho is a uniform n-th residue, so a
    re-randomized ciphertext is a uniform encryption of its plaintext *even to the key owner*: nothing about
    the computation that produced it leaks. This is the expensive one (~9 ms at 2048 bits), which is what the
    background :class:`RandomnessPool` is for: it precomputes obfuscators on an otherwise idle core.

All randomness comes from the OS CSPRNG (``secrets`` / ``os.urandom``); there is no seed anywhere.
"""
from __future__ import annotations

import collections
import math
import os
import secrets
import threading
from dataclasses import dataclass
from typing import Any

import gmpy2
from gmpy2 import mpz

from vfl.he import ifma
from vfl.he.parallel import run_released, split


# ------------------------------------------------------------------------------------------ DJN

@dataclass(frozen=True)
class DjnSpec:
    """Everything a worker needs to produce DJN obfuscators (picklable; includes p, q when present)."""
    n: int
    hs: int
    exponent_bits: int
    window: int
    p: int | None = None
    q: int | None = None


class _FixedBaseTable:
    """T[w][d] = g^(d 2^(c w)) mod m for d = 1..2^c - 1, w = 0..W-1 (flat list)."""

    def __init__(self, g: int, m: int, bits: int, c: int):
        self.m = mpz(m)
        self.c = c
        self.windows = -(-bits // c)
        self.size = (1 << c) - 1
        table: list = []
        base = mpz(g) % self.m
        for w in range(self.windows):
            acc = base
            table.append(acc)
            for _ in range(self.size - 1):
                acc = acc * base % self.m
                table.append(acc)
            base = acc * base % self.m           # base^(2^c)
        self.table = table

    def power(self, digits: list[int]) -> Any:
        """g^(sum_w digits[w] 2^(c w)) mod m."""
        t, m, size = self.table, self.m, self.size
        acc = None
        for w, d in enumerate(digits):
            if d:
                e = t[w * size + d - 1]
                acc = e if acc is None else acc * e % m
        return mpz(1) if acc is None else acc


_TABLES: dict[DjnSpec, tuple] = {}
_TABLES_LOCK = threading.Lock()


def _djn_tables(spec: DjnSpec) -> tuple:
    tables = _TABLES.get(spec)
    if tables is not None:
        return tables
    with _TABLES_LOCK:
        tables = _TABLES.get(spec)
        if tables is None:
            if spec.p is not None and spec.q is not None:
                p2, q2 = mpz(spec.p) ** 2, mpz(spec.q) ** 2
                tables = (_FixedBaseTable(mpz(spec.hs) % p2, p2, spec.exponent_bits, spec.window),
                          _FixedBaseTable(mpz(spec.hs) % q2, q2, spec.exponent_bits, spec.window),
                          p2, q2, gmpy2.invert(p2, q2))
            else:
                n2 = mpz(spec.n) ** 2
                tables = (_FixedBaseTable(spec.hs, n2, spec.exponent_bits, spec.window),)
            if len(_TABLES) > 8:                 # a few keys per process at most; drop the oldest
                _TABLES.pop(next(iter(_TABLES)))
            _TABLES[spec] = tables
    return tables


def _random_digits(bits: int, c: int) -> list[int]:
    """Digits (base 2^c) of an exponent uniform in [0, 2^bits)."""
    if c == 8 and bits % 8 == 0:
        return list(os.urandom(bits // 8))
    alpha = secrets.randbits(bits)
    mask = (1 << c) - 1
    return [(alpha >> (c * w)) & mask for w in range(-(-bits // c))]


def djn_obfuscators(spec: DjnSpec, count: int) -> list:
    """`count` fresh h_s^alpha mod n^2 (a worker task)."""
    tables = _djn_tables(spec)
    out = []
    if len(tables) == 5:
        tp, tq, p2, q2, p2_inv = tables
        for _ in range(count):
            digits = _random_digits(spec.exponent_bits, spec.window)
            xp, xq = tp.power(digits), tq.power(digits)
            out.append(xp + p2 * ((xq - xp) * p2_inv % q2))      # CRT: x = xp mod p^2, xq mod q^2
    else:
        (t,) = tables
        for _ in range(count):
            out.append(t.power(_random_digits(spec.exponent_bits, spec.window)))
    return out


# ------------------------------------------------------------------------------------------ full

def _uniform_unit(n: int) -> mpz:
    while True:
        r = mpz(secrets.randbelow(n - 1) + 1)
        if gmpy2.gcd(r, n) == 1:
            return r


def full_obfuscators(n: int, count: int) -> list:
    """`count` fresh r^n mod n^2 with r uniform in Z*_n (a worker task; the exponentiations release the GIL and
    run on AVX-512 IFMA where available, vfl.he.ifma)."""
    n = mpz(n)
    return ifma.powmod_list([_uniform_unit(n) for _ in range(count)], n, n * n)


# ------------------------------------------------------------------------------------------ sources

class RandomnessSource:
    """Produces fresh obfuscators, split over an executor's workers."""
    kind = "abstract"

    def task(self) -> tuple:
        raise NotImplementedError

    def generate(self, count: int, executor=None) -> list:
        if count <= 0:
            return []
        fn, arg = self.task()
        if executor is None:
            return run_released(fn, arg, count)
        chunks = split(count, executor.workers)
        parts = executor.map(fn, [(arg, stop - start) for start, stop in chunks])
        return [x for part in parts for x in part]


class DjnRandomness(RandomnessSource):
    """DJN short-exponent fixed-base randomness; needs the private key (see module docstring)."""
    kind = "djn"

    def __init__(self, n: int, p: int, q: int, exponent_bits: int | None = None, window: int = 8,
                 hs: int | None = None):
        n = int(n)
        if p is None or q is None or int(p) * int(q) != n:
            raise ValueError("DJN randomness is only for the key owner: it needs the factors p, q of n")
        bits = exponent_bits or (n.bit_length() + 1) // 2
        if bits < (n.bit_length() + 1) // 2:
            raise ValueError(f"DJN exponents shorter than ceil(k/2) = {(n.bit_length() + 1) // 2} bits are refused")
        if hs is None:  # a fresh base; a second holder of the same key is given the first one's (the published one)
            x = _uniform_unit(n)
            h = (-x * x) % n
            hs = int(gmpy2.powmod(h, n, mpz(n) ** 2))
        else:
            check_djn_base(n, int(hs))
        self.spec = DjnSpec(n=n, hs=hs, exponent_bits=bits, window=window, p=int(p), q=int(q))

    @property
    def exponent_bits(self) -> int:
        return self.spec.exponent_bits

    def task(self) -> tuple:
        return djn_obfuscators, self.spec

    def warm_up(self) -> None:
        """Build the fixed-base tables now (they are built on first use otherwise)."""
        _djn_tables(self.spec)


#: beta is this many bits longer than the owner's DJN exponents: statistical distance <= sum_j |e_j| * 2^-100,
#: < 2^-57 for the default layout's largest product (2^16 terms of |e| <= 2^27); docs/he.md, section 5
PEER_DJN_SLACK_BITS = 100
#: the statistical distance 2^-this that peer DJN re-randomization keeps, whatever the exponents' sizes
PEER_DJN_DISTANCE_BITS = 56


def peer_djn_slack_bits(exponent_sum_bits: int) -> int:
    """Slack for peer DJN re-randomization of results whose exponents satisfy sum_j |e_j| < 2^exponent_sum_bits.

    The combined randomness exponent is |E| < 2^(l + exponent_sum_bits); a fresh beta of l + slack bits hides it
    to within 2^(exponent_sum_bits - slack), so slack = exponent_sum_bits + 56 keeps 2^-56 (never below the
    default PEER_DJN_SLACK_BITS).
    """
    return max(PEER_DJN_SLACK_BITS, int(exponent_sum_bits) + PEER_DJN_DISTANCE_BITS)

#: a published DJN base whose order divides lcm(1, ..., SMALL_ORDER_LIMIT) -- in particular any order up to
#: this limit -- is refused (one powmod with a ~1.5k-bit exponent at set-up)
SMALL_ORDER_LIMIT = 1024
_SMALL_ORDER_EXPONENT = math.lcm(*range(1, SMALL_ORDER_LIMIT + 1))


def check_djn_base(n: int, hs: int) -> None:
    """Refuse a published DJN base h_s that is trivially unfit to re-randomize under n (KeyFormatError).

    What a public-key holder can check cheaply: h_s is a unit mod n^2 (0 < h_s < n^2, gcd(h_s, n) = 1); h_s is
    not 1 mod n (then h_s = 1 + n t carries no randomness at all: h_s = 1 would leave a ciphertext unchanged,
    and 1 + n t with t != 0 would add beta t to the plaintext); h_s^2 != 1 (order <= 2: -1 = n^2 - 1, and the
    other square roots of 1); and h_s^L != 1 for L = lcm(1..1024) (every order up to 1024, and every order made
    of prime powers <= 1024). An honest base h^n with h = -x^2, x random, passes with overwhelming probability.
    What cannot be checked without the factorization: that h_s is an n-th residue at all (that is the DCR
    problem) and that the owner's ciphertexts really use it -- the semi-honest assumption of docs/he.md, section 5.
    """
    from vfl.he.errors import KeyFormatError
    n, hs = mpz(n), mpz(hs)
    n2 = n * n
    if not 0 < hs < n2 or gmpy2.gcd(hs, n) != 1:
        raise KeyFormatError("the peer's DJN base is not a unit modulo n^2 (need 0 < h_s < n^2 and gcd(h_s, n) = 1)")
    if hs % n == 1:
        raise KeyFormatError("the peer's DJN base is 1 mod n: h_s = 1 + n t carries no randomness (h_s = 1 would "
                             "return ciphertexts unchanged; t != 0 would shift plaintexts); refusing it")
    if hs * hs % n2 == 1:
        raise KeyFormatError("the peer's DJN base has order 2 (h_s^2 = 1 mod n^2, e.g. h_s = n^2 - 1): its powers "
                             "take only two values, so it cannot hide anything; refusing it")
    if gmpy2.powmod(hs, _SMALL_ORDER_EXPONENT, n2) == 1:
        raise KeyFormatError(f"the peer's DJN base has a small order (it divides lcm(1..{SMALL_ORDER_LIMIT})): its "
                             "powers take few values, so it cannot hide anything; refusing it")


class PeerDjnRandomness(RandomnessSource):
    """Re-randomization under a peer's key with the peer's published DJN base (see module docstring).

    The base is checked by :func:`check_djn_base` (KeyFormatError for 1, -1, order <= 2, small orders, ...).
    """
    kind = "peer_djn"

    def __init__(self, n: int, hs: int, owner_exponent_bits: int | None = None, window: int = 8,
                 slack_bits: int = PEER_DJN_SLACK_BITS):
        n = int(n)
        hs = int(hs)
        check_djn_base(n, hs)
        if slack_bits < PEER_DJN_SLACK_BITS:
            raise ValueError(f"peer DJN slack must be at least {PEER_DJN_SLACK_BITS} bits, got {slack_bits}")
        owner = owner_exponent_bits or (n.bit_length() + 1) // 2
        self.slack_bits = int(slack_bits)
        self.spec = DjnSpec(n=n, hs=hs, exponent_bits=owner + self.slack_bits, window=window)

    def task(self) -> tuple:
        return djn_obfuscators, self.spec

    def warm_up(self) -> None:
        _djn_tables(self.spec)


class FullRandomness(RandomnessSource):
    """Uniform r^n mod n^2: perfectly re-randomizes, even against the key owner."""
    kind = "full"

    def __init__(self, n: int):
        self.n = int(n)

    def task(self) -> tuple:
        return full_obfuscators, self.n

    def warm_up(self) -> None:
        pass


class RandomnessPool:
    """Obfuscators precomputed by a background thread, each handed out exactly once.

    The thread keeps up to `capacity` ready, computing `batch` at a time with the GIL released, so it runs on
    an idle core while the caller waits for the network or trains. :meth:`take` returns what is ready (possibly
    fewer than asked); the engine computes the rest on the spot.
    """

    def __init__(self, source: RandomnessSource, capacity: int, batch: int = 8):
        self.source = source
        self.capacity = int(capacity)
        self.batch = max(1, int(batch))
        self._ready: collections.deque = collections.deque()
        self._cond = threading.Condition()
        self._closed = False
        self._thread: threading.Thread | None = None
        self.produced = 0
        self.served = 0

    def start(self) -> None:
        with self._cond:
            if self._thread is None and not self._closed and self.capacity > 0:
                self._thread = threading.Thread(target=self._run, name="vfl-he-randomness", daemon=True)
                self._thread.start()

    def _run(self) -> None:
        while True:
            with self._cond:
                while not self._closed and len(self._ready) >= self.capacity:
                    self._cond.wait()
                if self._closed:
                    return
                want = min(self.batch, self.capacity - len(self._ready))
            fresh = self.source.generate(want)
            with self._cond:
                if self._closed:
                    return
                self._ready.extend(fresh)
                self.produced += len(fresh)
                self._cond.notify_all()

    def __len__(self) -> int:
        return len(self._ready)

    def take(self, count: int) -> list:
        out = []
        with self._cond:
            while self._ready and len(out) < count:
                out.append(self._ready.popleft())
            self.served += len(out)
            self._cond.notify_all()
        self.start()
        return out

    def wait_until(self, count: int, timeout: float | None = None) -> bool:
        """Block until at least `count` obfuscators are ready (for tests, benchmarks and node warm-up)."""
        self.start()
        with self._cond:
            return self._cond.wait_for(lambda: len(self._ready) >= min(count, self.capacity) or self._closed,
                                       timeout=timeout)

    def close(self) -> None:
        with self._cond:
            self._closed = True
            self._ready.clear()
            self._cond.notify_all()
        thread = self._thread
        if thread is not None and thread is not threading.current_thread():
            thread.join(timeout=30)
