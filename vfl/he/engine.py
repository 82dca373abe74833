"""The raw packed-Paillier engine: vectorized operations on lists of ciphertexts (gmpy2 mpz) under one key.

Standard Paillier with g = n + 1 (the ciphertexts are phe's, and phe's PaillierPrivateKey decrypts them):

    Enc(m; rho)   = (1 + n m) * rho           mod n^2,   rho = fresh random n-th residue (see randomness.py)
    Dec(c)        = CRT of  L_p(c^(p-1) mod p^2) h_p mod p  and  L_q(c^(q-1) mod q^2) h_q mod q,
                    L_p(x) = (x - 1) / p,  h_p = L_p(g^(p-1) mod p^2)^-1 mod p               (phe's formulas)
    add(c1, c2)   = c1 c2                     mod n^2    -> m1 + m2
    add_plain     = c (1 + n m)               mod n^2    -> m1 + m  (no exponentiation: g^m = 1 + n m)
    mul_scalar    = c^k, or (c^-1)^|k| for k < 0         -> k m    (never a huge exponent n - |k|)
    multiexp      = prod_j c_j^(E_ij)                    -> sum_j E_ij m_j   (multiexp.py)
    rerandomize   = c * rho                   mod n^2    -> same m, fresh randomness

Plaintexts are integers mod n; :meth:`PaillierEngine.decrypt_ints` returns them centered in (-n/2, n/2].
This layer does no overflow tracking: the caller packs with vfl.he.packing, whose checksum slot catches
an overflow at decryption.

Which randomness: an engine holding the private key uses DJN short-exponent fixed-base randomness (fast).
An engine with only a peer's public key uses, when given the owner's published DJN base (``djn_base=``, what
the job runtime does), :class:`PeerDjnRandomness` -- h_s^beta with beta 100 bits longer than the owner's
exponents, statistically hiding the computation from the key owner if the owner is semi-honest; without a
base, uniform r^n (optionally precomputed by a background pool), which hides it unconditionally. See
docs/he.md, section 5.
"""
from __future__ import annotations

import threading
import weakref
from dataclasses import dataclass
from typing import Any, Sequence

import gmpy2
import numpy as np
from gmpy2 import mpz

from vfl.he import ifma
from vfl.he import multiexp as me
from vfl.he.errors import CryptoError, KeyMismatchError
from vfl.he.keys import DEFAULT_KEY_BITS, PrivateKey, PublicKey, generate_keypair, public_key_from_n
from vfl.he.parallel import get_executor, split
from vfl.he.randomness import DjnRandomness, FullRandomness, PeerDjnRandomness, RandomnessPool
from vfl.he.wire import check_ciphertexts

#: below this many items an operation is not split across workers (the split would cost more than it saves)
MIN_PARALLEL_ITEMS = 4


# ------------------------------------------------------------------------------------------ worker tasks

@dataclass(frozen=True)
class _CrtSpec:
    p: int
    q: int


_CRT_CACHE: dict[_CrtSpec, tuple] = {}
_CRT_LOCK = threading.Lock()


def _crt_params(spec: _CrtSpec) -> tuple:
    params = _CRT_CACHE.get(spec)
    if params is None:
        with _CRT_LOCK:
            p, q = mpz(spec.p), mpz(spec.q)
            p2, q2 = p * p, q * q
            n = p * q
            g = n + 1
            hp = gmpy2.invert((gmpy2.powmod(g, p - 1, p2) - 1) // p, p)
            hq = gmpy2.invert((gmpy2.powmod(g, q - 1, q2) - 1) // q, q)
            params = (p, q, p2, q2, hp, hq, gmpy2.invert(p, q), n)
            if len(_CRT_CACHE) > 8:
                _CRT_CACHE.pop(next(iter(_CRT_CACHE)))
            _CRT_CACHE[spec] = params
    return params


def crt_decrypt(spec: _CrtSpec, ciphertexts: list) -> list:
    """Residues m in [0, n) of the ciphertexts (a worker task; the exponentiations release the GIL).

    The two exponentiations per ciphertext run eight at a time on AVX-512 IFMA where available (vfl.he.ifma),
    with gmpy2 otherwise: the same integers either way.
    """
    p, q, p2, q2, hp, hq, p_inv, n = _crt_params(spec)
    xp = ifma.powmod_list(ciphertexts, p - 1, p2)
    xq = ifma.powmod_list(ciphertexts, q - 1, q2)
    out = []
    for a, b in zip(xp, xq):
        mp = (a - 1) // p * hp % p
        mq = (b - 1) // q * hq % q
        out.append(mp + (mq - mp) * p_inv % q * p)
    return out


def powmod_list(bases: list, exponent: int, modulus: int) -> list:
    """[b^e mod m] (a worker task)."""
    return gmpy2.powmod_base_list(bases, mpz(exponent), mpz(modulus))


def mul_scalars_task(ciphertexts: list, scalars: list, modulus: int) -> list:
    """[c^k] for per-element signed scalars; negatives already turned into (inverse, |k|) by the caller."""
    m = mpz(modulus)
    return [gmpy2.powmod(c, k, m) for c, k in zip(ciphertexts, scalars)]


def comb_task(bases: list, digits: np.ndarray, c: int, modulus: int) -> tuple[list, list]:
    return me.comb_partial(bases, digits, c, modulus)


def pippenger_task(bases: list, inv_bases: list | None, digits: np.ndarray, c: int, modulus: int) -> list:
    return me.pippenger_outputs(bases, inv_bases, digits, c, modulus)


def direct_task(bases: list, exponents: np.ndarray, modulus: int) -> tuple[list, list]:
    return me.direct_partial(bases, exponents, modulus)


# ------------------------------------------------------------------------------------------ engine

class PaillierEngine:
    """Vectorized Paillier operations under one phe public key (and optionally its private key).

    Args:
      public_key: a phe ``PaillierPublicKey``.
      private_key: its ``PaillierPrivateKey`` (decryption, CRT speed-ups, DJN randomness), or None.
      workers: cores to use; 1 runs everything on the calling thread with no pool at all.
      backend: "thread", "process" (spawn) or "auto" (see parallel.py).
      randomness: "auto" (DJN with the private key, else full), "djn" (needs the private key) or "full".
      pool_size: obfuscators a background thread keeps ready (0 = no pool). Default: 0 for DJN (it is cheap
        already), 256 for full randomness. The pool thread starts on first use or with :meth:`prefill`.
      djn_base: with the private key, the DJN base h_s to use (a key holder that received the key from another
        holds the same base, so every ciphertext under the key carries randomness from the one published base);
        without it, the owner's published base for peer DJN re-randomization.
      executor: where the chunks run (anything with ``workers`` and ``map(fn, arg_list)``, e.g. a compute
        backend's); default: :func:`vfl.he.parallel.get_executor` with `workers` and `backend`. Tasks that need
        the private key (decryption, DJN randomness under one's own key) carry p and q, so an executor that
        moves arguments through shared storage must not be given an engine holding a private key.
    """

    def __init__(self, public_key: PublicKey, private_key: PrivateKey | None = None, *, workers: int = 1,
                 backend: str = "auto", randomness: str = "auto", pool_size: int | None = None,
                 djn_base: int | None = None, djn_slack_bits: int | None = None, executor=None):
        if private_key is not None and private_key.public_key.n != public_key.n:
            raise KeyMismatchError("the private key does not belong to this public key")
        self.public_key = public_key
        self.private_key = private_key
        self.n = mpz(public_key.n)
        self.nsquare = self.n * self.n
        self.key_bits = int(self.n.bit_length())
        self.half_n = self.n // 2
        self.executor = executor if executor is not None else get_executor(workers, backend)
        self.workers = self.executor.workers
        if randomness == "auto":
            randomness = "djn" if private_key is not None else ("peer_djn" if djn_base else "full")
        if randomness == "djn":
            if private_key is None:
                raise CryptoError("DJN short-exponent randomness is only safe under one's own key (it needs the "
                                  "private key); use randomness='full' under a peer's key")
            self.randomness = DjnRandomness(int(self.n), private_key.p, private_key.q, hs=djn_base)
        elif randomness == "peer_djn":
            if not djn_base:
                raise CryptoError("peer DJN randomness needs the key owner's published DJN base")
            self.randomness = (PeerDjnRandomness(int(self.n), int(djn_base)) if djn_slack_bits is None else
                               PeerDjnRandomness(int(self.n), int(djn_base), slack_bits=djn_slack_bits))
        elif randomness == "full":
            self.randomness = FullRandomness(int(self.n))
        else:
            raise ValueError(f"unknown randomness {randomness!r}; use 'auto', 'djn' or 'full'")
        if pool_size is None:
            pool_size = 0 if randomness in ("djn", "peer_djn") else 256
        self.pool = RandomnessPool(self.randomness, pool_size) if pool_size > 0 else None
        if self.pool is not None:  # stop the pool thread when the engine is garbage-collected
            weakref.finalize(self, self.pool.close)
        self._crt = _CrtSpec(int(private_key.p), int(private_key.q)) if private_key is not None else None

    # --- construction
    @classmethod
    def generate(cls, bits: int = DEFAULT_KEY_BITS, **kwargs: Any) -> "PaillierEngine":
        """A fresh key pair and an engine holding both keys."""
        public_key, private_key = generate_keypair(bits)
        return cls(public_key, private_key, **kwargs)

    @classmethod
    def from_n(cls, n: int, bits: int | None = None, **kwargs: Any) -> "PaillierEngine":
        """A public-only engine for a peer's modulus (validated)."""
        return cls(public_key_from_n(n, bits), None, **kwargs)

    @property
    def djn_base(self) -> int | None:
        """h_s, published by the key owner so peers can re-randomize cheaply (see randomness.py)."""
        return int(self.randomness.spec.hs) if isinstance(self.randomness, DjnRandomness) else None

    @property
    def has_private_key(self) -> bool:
        return self.private_key is not None

    def __repr__(self) -> str:
        return (f"PaillierEngine({self.key_bits}-bit, private={self.has_private_key}, workers={self.workers}, "
                f"randomness={self.randomness.kind})")

    def close(self) -> None:
        """Stop the background randomness pool (the shared worker pool lives until interpreter exit)."""
        if self.pool is not None:
            self.pool.close()

    def __enter__(self) -> "PaillierEngine":
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()

    def _chunked(self, fn, items: list, make_args) -> list:
        if self.executor.workers == 1 or len(items) < MIN_PARALLEL_ITEMS:
            return self.executor.map(fn, [make_args(items)])[0]
        parts = self.executor.map(fn, [make_args(items[a:b]) for a, b in split(len(items), self.executor.workers)])
        return [x for part in parts for x in part]

    # --- randomness
    def obfuscators(self, count: int) -> list:
        """`count` fresh random n-th residues rho mod n^2 (from the pool first, then computed)."""
        got = self.pool.take(count) if self.pool is not None else []
        if len(got) < count:
            got.extend(self.randomness.generate(count - len(got), self.executor))
        return got

    def prefill(self, count: int | None = None, timeout: float | None = None) -> bool:
        """Start the background pool and wait until `count` (default: all) obfuscators are ready."""
        if self.pool is None:
            self.randomness.warm_up()
            return True
        return self.pool.wait_until(self.pool.capacity if count is None else count, timeout)

    def keep_ready(self, count: int) -> None:
        """Keep `count` obfuscators precomputed by a background thread from now on (a long-lived session under
        this key, e.g. online scoring, then pays for none of them on its request path)."""
        if self.pool is None and count > 0:
            self.pool = RandomnessPool(self.randomness, count)
            weakref.finalize(self, self.pool.close)
        if self.pool is not None:
            self.pool.start()

    # --- encryption / decryption
    def encrypt_ints(self, plaintexts: Sequence[int]) -> list:
        """Enc(m) = (1 + n m) rho mod n^2 for integers m (reduced mod n; negatives allowed)."""
        plaintexts = list(plaintexts)
        rhos = self.obfuscators(len(plaintexts))
        n, n2 = self.n, self.nsquare
        return [(n * (mpz(m) % n) + 1) * r % n2 for m, r in zip(plaintexts, rhos)]

    def check_ciphertexts(self, ciphertexts: Sequence, what: str = "ciphertext") -> list:
        """The ciphertexts as mpz, refusing any that is not in Z*_{n^2}: 0 < c < n^2 and gcd(c, n) = 1.

        Anything else is no encryption under this key: CRT decryption of c = 0 or of a multiple of p or q
        returns an arbitrary number. Raises :class:`MalformedCiphertextError` naming the first bad index.
        """
        return check_ciphertexts(ciphertexts, self.n, what)

    def decrypt_ints(self, ciphertexts: Sequence, centered: bool = True) -> list[int]:
        """Plaintexts by CRT decryption: centered in (-n/2, n/2] (default) or residues in [0, n).

        Every ciphertext is checked first (:meth:`check_ciphertexts`: 0 < c < n^2, gcd(c, n) = 1).
        """
        if self._crt is None:
            raise CryptoError("decryption needs the private key; this engine holds only a public key")
        cts = self.check_ciphertexts(ciphertexts)
        out = self._chunked(crt_decrypt, cts, lambda chunk: (self._crt, chunk))
        if not centered:
            return [int(m) for m in out]
        n, half = self.n, self.half_n
        return [int(m - n) if m > half else int(m) for m in out]

    # --- homomorphic operations
    def add(self, a: Sequence, b: Sequence) -> list:
        """[a_i + b_i] = a_i b_i mod n^2."""
        if len(a) != len(b):
            raise ValueError(f"add: {len(a)} and {len(b)} ciphertexts")
        n2 = self.nsquare
        return [x * y % n2 for x, y in zip(a, b)]

    def add_plain(self, ciphertexts: Sequence, plaintexts: Sequence[int]) -> list:
        """[m_i + k_i] = c_i (1 + n k_i) mod n^2 (cheap: no exponentiation, no randomness)."""
        if len(ciphertexts) != len(plaintexts):
            raise ValueError(f"add_plain: {len(ciphertexts)} ciphertexts and {len(plaintexts)} plaintexts")
        n, n2 = self.n, self.nsquare
        return [c * (n * (mpz(k) % n) + 1) % n2 for c, k in zip(ciphertexts, plaintexts)]

    def negate(self, ciphertexts: Sequence) -> list:
        """[-m] = c^-1 mod n^2 (one batch inversion)."""
        return me.batch_invert([mpz(c) for c in ciphertexts], self.nsquare)

    def sub(self, a: Sequence, b: Sequence) -> list:
        """[a_i - b_i] = a_i b_i^-1 mod n^2."""
        return self.add(a, self.negate(b))

    def mul_scalar(self, ciphertexts: Sequence, scalars: int | Sequence[int]) -> list:
        """[k m]: c^k for k >= 0, (c^-1)^|k| for k < 0 (one scalar for all, or one per ciphertext)."""
        cts = [mpz(c) for c in ciphertexts]
        n2 = self.nsquare
        if isinstance(scalars, (int, np.integer)) or type(scalars).__name__ == "mpz":
            k = int(scalars)
            if k == 0:
                return [mpz(1)] * len(cts)
            if k < 0:
                cts, k = self.negate(cts), -k
            if k == 1:
                return cts
            return self._chunked(powmod_list, cts, lambda chunk: (chunk, k, n2))
        ks = [int(k) for k in scalars]
        if len(ks) != len(cts):
            raise ValueError(f"mul_scalar: {len(cts)} ciphertexts and {len(ks)} scalars")
        neg = [i for i, k in enumerate(ks) if k < 0]
        if neg:
            inv = me.batch_invert([cts[i] for i in neg], n2)
            for i, c in zip(neg, inv):
                cts[i], ks[i] = c, -ks[i]
        pairs = list(zip(cts, ks))
        return self._chunked(mul_scalars_task, pairs,
                             lambda chunk: ([c for c, _ in chunk], [k for _, k in chunk], n2))

    def rerandomize(self, ciphertexts: Sequence) -> list:
        """Same plaintexts, fresh randomness: c rho mod n^2."""
        rhos = self.obfuscators(len(ciphertexts))
        n2 = self.nsquare
        return [mpz(c) * r % n2 for c, r in zip(ciphertexts, rhos)]

    def multiexp(self, bases: Sequence, exponents: Any, algorithm: str | None = None,
                 window: int | None = None) -> list:
        """out[i] = prod_j bases[j]^(E[i, j]) mod n^2 for a signed integer matrix E [outputs, bases].

        The algorithm and window come from :func:`vfl.he.multiexp.plan` unless given. With several workers,
        the comb method splits the *bases* (each worker builds its own tables and returns partial products,
        multiplied here), the bucket method splits the *outputs*.
        """
        bases = [mpz(b) for b in bases]
        E = np.asarray(exponents)
        if E.ndim != 2 or E.shape[1] != len(bases):
            raise ValueError(f"multiexp: exponent matrix of shape {E.shape} does not match {len(bases)} bases")
        if E.dtype != object and E.dtype.kind not in "iub":
            raise ValueError(f"multiexp: exponents must be integers, got dtype {E.dtype}")
        I, J = E.shape
        if I == 0:
            return []
        if J == 0:
            return [mpz(1)] * I
        n2 = self.nsquare
        if algorithm is not None:
            chosen = me.plan(E, windows=(window,) if window else tuple(range(2, 11)), algorithms=(algorithm,))
        else:
            chosen = me.plan(E)
        workers = self.executor.workers
        if chosen.algorithm == "pippenger":
            inv = me.batch_invert(bases, n2) if (chosen.digits < 0).any() else None
            ranges = split(I, workers) if workers > 1 and I >= 2 else [(0, I)]
            parts = self.executor.map(pippenger_task, [(bases, inv, chosen.digits[:, a:b, :], chosen.window, n2)
                                                       for a, b in ranges])
            return [mpz(1) if v is None else v for part in parts for v in part]
        ranges = split(J, workers) if workers > 1 and J >= 2 else [(0, J)]
        if chosen.algorithm == "comb":
            parts = self.executor.map(comb_task, [(bases[a:b], np.ascontiguousarray(chosen.digits[:, :, a:b]),
                                                   chosen.window, n2) for a, b in ranges])
        else:
            parts = self.executor.map(direct_task, [(bases[a:b], E[:, a:b], n2) for a, b in ranges])
        pos = me.multiply_partials([p for p, _ in parts], n2)
        neg = me.multiply_partials([q for _, q in parts], n2)
        return me.combine(pos, neg, n2)

    # --- wire
    def to_bytes(self, ciphertexts: Sequence) -> bytes:
        from vfl.he.wire import ciphertexts_to_bytes
        return ciphertexts_to_bytes(ciphertexts, self.public_key)

    def from_bytes(self, data: bytes, count: int | None = None, **kwargs: Any) -> list:
        from vfl.he.wire import ciphertexts_from_bytes
        return ciphertexts_from_bytes(data, self.public_key, count=count, **kwargs)


# ------------------------------------------------------------------------------------------ job runtime hooks

def new_private_ops(key_bits: int = DEFAULT_KEY_BITS, workers: int = 1, **kwargs: Any) -> PaillierEngine:
    """A fresh key pair and its engine (decryption, DJN randomness) -- what vfl.job.crypto calls."""
    return PaillierEngine.generate(key_bits, workers=workers, **kwargs)


def new_public_ops(n: int, workers: int = 1, bits: int | None = None, **kwargs: Any) -> PaillierEngine:
    """An engine for a peer's modulus n: with `djn_base=` the owner's published DJN base, cheap statistical
    re-randomization; without it, full-length randomness with a background pool."""
    return PaillierEngine.from_n(n, bits, workers=workers, **kwargs)
