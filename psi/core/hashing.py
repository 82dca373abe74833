"""Canonical IDs and the salted hash-to-curve.

``hash_to_field``: SHA-512 over a domain-separated, length-prefixed encoding of (session salt, canonical ID),
read as a 512-bit little-endian integer and reduced mod p = 2^255 - 19 (statistical distance from uniform
< 2^-256). ``hash_to_curve`` then applies Elligator 2 (:func:`psi.core.curve25519.elligator2_u`): this is
RFC 9380's *encode_to_curve* shape (one field element, one map, NU) -- see docs/psi.md for why that is the
right choice for DH-PSI. Cofactor clearing happens in the first X25519 blinding (clamped scalar).

Encoding hashed, all lengths big-endian::

    SHA-512( len(DST):1 || DST || len(salt):2 || salt || len(id_utf8):8 || id_utf8 )
"""
from __future__ import annotations

import hashlib
from dataclasses import dataclass
from typing import Iterable, Sequence

import gmpy2

from psi.core.curve25519 import LOW_ORDER_ERRORS, P, POINT_BYTES, blind_one, elligator2_u, multiplier, u_to_bytes
from psi.errors import PsiInputError

DST = b"vfl-psi-v1:curve25519:SHA-512:ELL2_NU"
MAX_SALT_BYTES = 255


@dataclass(frozen=True)
class Canonicalization:
    """How an ID string is normalized before hashing. Both parties must use the same settings; the active
    party chooses them for the session."""

    strip: bool = True        # remove leading/trailing whitespace (str.strip())
    lowercase: bool = False   # str.lower()

    def apply(self, value: str) -> str:
        if self.strip:
            value = value.strip()
        if self.lowercase:
            value = value.lower()
        return value


def canonical_id(value, canon: Canonicalization, row: int | None = None) -> str:
    """The canonical form of one ID; raises PsiInputError naming the row for nulls, non-strings, empties."""
    where = f"row {row}" if row is not None else "ID"
    if isinstance(value, bytes):
        try:
            value = value.decode("utf-8")
        except UnicodeDecodeError:
            raise PsiInputError(f"{where}: ID bytes are not valid UTF-8: {value[:40]!r}") from None
    elif not isinstance(value, str):
        if value is None:
            raise PsiInputError(f"{where}: ID is missing (null)")
        raise PsiInputError(f"{where}: ID {value!r} is a {type(value).__name__}, expected a string")
    out = canon.apply(value)
    if not out:
        raise PsiInputError(f"{where}: ID {value!r} is empty after canonicalization")
    return out


def _prefix(salt: bytes):
    if len(salt) > MAX_SALT_BYTES:
        raise PsiInputError(f"salt is {len(salt)} bytes; at most {MAX_SALT_BYTES}")
    return hashlib.sha512(bytes([len(DST)]) + DST + len(salt).to_bytes(2, "big") + salt)


def hash_to_field(canonical: str, salt: bytes) -> int:
    data = canonical.encode("utf-8")
    h = _prefix(salt)
    h.update(len(data).to_bytes(8, "big"))
    h.update(data)
    return int.from_bytes(h.digest(), "little") % P


def hash_to_curve(canonical: str, salt: bytes) -> bytes:
    """The unblinded curve point of a canonical ID (never leaves its party; exposed for tests/docs)."""
    return u_to_bytes(elligator2_u(hash_to_field(canonical, salt)))


def hash_and_blind(ids: Sequence, salt: bytes, canon: Canonicalization, scalar: bytes,
                   rows: Iterable[int] | None = None, out_bytes: int = POINT_BYTES) -> bytes:
    """X25519(scalar, hash_to_curve(canonical(id), salt)) for every ID, concatenated (``out_bytes`` each).

    ``rows`` (the input row of each ID) only serves error messages. This is the per-ID hot loop of the
    protocol, so Elligator 2 is inlined, and the inversions 1/(1 + 2 r^2) of the whole batch share one
    modular inversion (Montgomery's trick: 3 multiplications per ID instead of an inversion each).
    """
    base = _prefix(salt)
    mpz, invert, legendre = gmpy2.mpz, gmpy2.invert, gmpy2.legendre
    p, a, neg_a = gmpy2.mpz(P), gmpy2.mpz(486662), gmpy2.mpz(P - 486662)
    frombytes = int.from_bytes
    strip, lower = canon.strip, canon.lowercase
    rows_list = list(rows) if rows is not None else None
    n = len(ids)
    # pass 1: canonical ID -> SHA-512 -> r -> d = 1 + 2 r^2, and the running products of the d's
    ds = [None] * n
    prefix = [None] * n
    acc = mpz(1)
    for i, value in enumerate(ids):
        if type(value) is str:
            s = value
            if strip:
                s = s.strip()
            if lower:
                s = s.lower()
            if not s:
                s = canonical_id(value, canon, rows_list[i] if rows_list is not None else None)
        else:
            s = canonical_id(value, canon, rows_list[i] if rows_list is not None else None)
        data = s.encode("utf-8")
        h = base.copy()
        h.update(len(data).to_bytes(8, "big"))
        h.update(data)
        r = mpz(frombytes(h.digest(), "little")) % p
        d = (2 * r * r + 1) % p
        if not d:              # 1 + 2 r^2 = 0 has no solution mod p (-1/2 is a non-square); kept for rigour
            d = mpz(1)
            ds[i] = 0
        else:
            ds[i] = d
        prefix[i] = acc
        acc = acc * d % p
    # pass 2 (backwards): 1/d from the shared inverse, x1 = -A/d, pick x1 or -x1 - A, blind
    inv = invert(acc, p) if n else acc
    mult = multiplier(scalar)
    out: list = [None] * n
    for i in range(n - 1, -1, -1):
        d = ds[i]
        if d:
            x = neg_a * (inv * prefix[i]) % p
            inv = inv * d % p
        else:
            x = neg_a
        if legendre(x * (x * (x + a) + 1) % p, p) < 0:
            x = neg_a - x
            if x < 0:
                x += p
        try:
            shared = mult(int(x).to_bytes(32, "little"))
        except LOW_ORDER_ERRORS:  # would need a hash output on one of ~8 special points: never in practice
            raise PsiInputError(f"ID at row {rows_list[i] if rows_list else i} hashes to a low-order point") from None
        out[i] = shared if out_bytes == POINT_BYTES else shared[:out_bytes]
    return b"".join(out)


def id_keys(ids: Sequence, canon: Canonicalization, rows: Iterable[int] | None = None) -> bytes:
    """An 8-byte BLAKE2b key of each canonical ID, concatenated; raises PsiInputError for an invalid ID.

    A party checks its whole input with these before any of its points leaves it: equal keys flag duplicate
    candidates (each is then confirmed on the IDs). They never leave the party.
    """
    rows_list = list(rows) if rows is not None else range(len(ids))
    blake = hashlib.blake2b
    return b"".join(blake(canonical_id(v, canon, r).encode("utf-8"), digest_size=8).digest()
                    for v, r in zip(ids, rows_list))


def blind_hashes_reference(ids: Sequence[str], salt: bytes, canon: Canonicalization, scalar: bytes) -> list[bytes]:
    """Slow, obviously-correct composition of the public functions (tests compare the hot loop to it)."""
    return [blind_one(scalar, hash_to_curve(canonical_id(v, canon), salt)) for v in ids]
