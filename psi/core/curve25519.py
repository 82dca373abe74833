"""Curve25519 pieces the PSI needs: Elligator 2 (u-coordinate), X25519 blinding and peer-point validation.

Points are 32-byte little-endian Montgomery u-coordinates (RFC 7748 §5), the encoding X25519 consumes and
produces. Blinding a point P with a secret 32-byte scalar k is ``X25519(k, P)``: RFC 7748 clamping makes the
effective scalar a multiple of 8, which clears the cofactor, and scalar multiplication commutes, so
``X25519(a, X25519(b, P)) == X25519(b, X25519(a, P))``. The field arithmetic here (Elligator 2, curve/twist
test) uses gmpy2.

The scalar multiplication itself is X25519 from a C library. Two interchangeable backends compute the
identical RFC 7748 function: OpenSSL through ``cryptography`` (always available), and libsodium's
``crypto_scalarmult`` through PyNaCl, used when installed because it skips ``cryptography``'s per-call key
objects (~2 us of the ~33 us per multiplication on the reference machine). ``PSI_X25519=cryptography``
forces the former. Both reject low-order inputs (all-zero result).
"""
from __future__ import annotations

import os

import gmpy2
import numpy as np
from cryptography.hazmat.primitives.asymmetric.x25519 import X25519PrivateKey, X25519PublicKey

from psi.errors import InvalidPoint

P = 2**255 - 19          # field prime
A = 486662               # Montgomery coefficient: v^2 = u^3 + A*u^2 + u
POINT_BYTES = 32
SCALAR_BYTES = 32

_P = gmpy2.mpz(P)
_A = gmpy2.mpz(A)
_NEG_A = gmpy2.mpz(P - A)
_legendre = gmpy2.legendre
_invert = gmpy2.invert


def elligator2_u(r: int) -> int:
    """RFC 9380 §6.7.1 ``map_to_curve_elligator2`` for curve25519 (J = A, K = 1, Z = 2), u-coordinate only.

    x1 = -A / (1 + 2 r^2)  (x1 = -A in the exceptional case 1 + 2 r^2 = 0, which cannot occur for this p
    because -1/2 is not a square, but is kept as the RFC specifies); the result is x1 if
    g(x1) = x1^3 + A x1^2 + x1 is a square, else x2 = -x1 - A (then g(x2) is a square). Either way the
    u-coordinate lies on the curve, never on its quadratic twist.
    """
    r = gmpy2.mpz(r)
    d = (2 * r * r + 1) % _P
    x1 = _NEG_A if d == 0 else (_NEG_A * _invert(d, _P)) % _P
    gx1 = (x1 * (x1 * (x1 + _A) + 1)) % _P
    if _legendre(gx1, _P) >= 0:          # is_square(): 0 counts as a square (RFC 9380 §4)
        return int(x1)
    return int((_NEG_A - x1) % _P)


def u_to_bytes(u: int) -> bytes:
    return int(u).to_bytes(POINT_BYTES, "little")


def u_from_bytes(b: bytes) -> int:
    return int.from_bytes(b, "little")


def is_on_curve(u: int) -> bool:
    """True when u^3 + A u^2 + u is a square mod p, i.e. u belongs to curve25519 rather than its twist."""
    u = gmpy2.mpz(u)
    return _legendre((u * (u * (u + _A) + 1)) % _P, _P) >= 0


# ----------------------------------------------------------------------------- scalars
def new_scalar() -> bytes:
    """A fresh secret blinding scalar (32 random bytes; X25519 clamps it when used)."""
    return os.urandom(SCALAR_BYTES)


ORDER = 2**252 + 27742317777372353535851937790883648493   # l, the prime order of the main subgroup


def clamp(scalar: bytes) -> bytes:
    """RFC 7748 §5 clamping: clear bits 0-2 and 255, set bit 254 (what X25519 does to every scalar)."""
    k = bytearray(scalar)
    k[0] &= 248
    k[31] &= 127
    k[31] |= 64
    return bytes(k)


def is_clamped(scalar: bytes) -> bool:
    """True when X25519's clamping leaves ``scalar`` unchanged (a multiple of 8 in [2^254, 2^255))."""
    return len(scalar) == SCALAR_BYTES and clamp(scalar) == scalar


def inverse_scalar_pair() -> tuple[bytes, bytes]:
    """(a, a_inv): two fresh X25519 scalars, both already clamped, with a * a_inv = 1 (mod l).

    Math. Every point H of curve25519 is H = H_l + H_8 with H_l in the prime-order subgroup (order l) and
    H_8 a point of order dividing 8. X25519(k, P) computes [k]P for the clamped k, a multiple of 8, so
    [k]H = [k]H_l: the torsion part vanishes. Hence, for any other scalar k (clamped, like every X25519 key),

        X25519(a_inv, X25519(k, X25519(a, H))) = [a_inv * k * a] H_l = [k] H_l = X25519(k, H),

    because a * a_inv = 1 (mod l) and multiplying a point of order l only depends on the scalar mod l. The
    unblinding works only because X25519 leaves both scalars exactly as chosen, so both must already be in
    clamped form (multiple of 8, bit 254 set, bit 255 clear).

    Generation: a_inv = clamp(32 random bytes) (never a multiple of l: 8l > 2^255); a0 = a_inv^-1 mod l;
    among the representatives a0 + j*l (j = 0..15) take the one in [2^254, 2^255) divisible by 8, if any
    (l is odd, so exactly one j in every 8 consecutive ones gives a multiple of 8; the interval holds about
    4 representatives, so about half of the draws succeed), else draw again. As with any clamped X25519
    key, a is uniform on a set of about l/4 residues mod l (~250 bits of entropy).
    """
    while True:
        inv = clamp(os.urandom(SCALAR_BYTES))
        a0 = pow(int.from_bytes(inv, "little"), -1, ORDER)
        for j in range(16):
            a = a0 + j * ORDER
            if a >= 2**255:
                break
            if a >= 2**254 and a % 8 == 0:
                return a.to_bytes(SCALAR_BYTES, "little"), inv


_KEY_CACHE: dict[bytes, X25519PrivateKey] = {}


def private_key(scalar: bytes) -> X25519PrivateKey:
    key = _KEY_CACHE.get(scalar)
    if key is None:
        if len(_KEY_CACHE) > 64:
            _KEY_CACHE.clear()
        key = _KEY_CACHE[scalar] = X25519PrivateKey.from_private_bytes(scalar)
    return key


def _openssl_multiplier(scalar: bytes):
    exchange = private_key(scalar).exchange
    from_bytes = X25519PublicKey.from_public_bytes
    return lambda point: exchange(from_bytes(point))


def _sodium_multiplier(scalar: bytes):
    scalarmult = _sodium_scalarmult
    return lambda point: scalarmult(scalar, point)


_sodium_scalarmult = None
_LowOrder: tuple = (ValueError,)
BACKEND = "cryptography"
if os.environ.get("PSI_X25519", "").lower() not in ("cryptography", "openssl"):
    try:
        import nacl.bindings as _nacl_bindings
        import nacl.exceptions as _nacl_exceptions
        _sodium_scalarmult = _nacl_bindings.crypto_scalarmult
        _LowOrder = (ValueError, _nacl_exceptions.RuntimeError)
        BACKEND = "libsodium"
    except ImportError:  # PyNaCl is optional
        pass


def multiplier(scalar: bytes):
    """A function point -> X25519(scalar, point) (32 bytes) for one scalar; raises one of LOW_ORDER_ERRORS
    for a low-order point."""
    return _sodium_multiplier(scalar) if _sodium_scalarmult is not None else _openssl_multiplier(scalar)


LOW_ORDER_ERRORS = _LowOrder


def blind_one(scalar: bytes, point: bytes) -> bytes:
    """X25519(scalar, point); raises InvalidPoint for a low-order point (all-zero result, RFC 7748 §6.1)."""
    try:
        return multiplier(scalar)(point)
    except LOW_ORDER_ERRORS:
        raise InvalidPoint("low-order point (X25519 result is all zero)") from None


# ----------------------------------------------------------------------------- validation of peer points
# Byte patterns of u in [p, 2^255): byte 31 == 0x7f, bytes 1..30 == 0xff, byte 0 >= 0xed.
def check_points(points: np.ndarray) -> None:
    """Validate an (n, 32) uint8 array of peer points; raise InvalidPoint naming the first bad index.

    Checks, in order of cost: bit 255 clear, canonical (u < p), on the curve and not the twist. Low-order
    points are caught by :func:`blind_points` (their X25519 result is all zero).
    """
    if points.ndim != 2 or points.shape[1] != POINT_BYTES:
        raise InvalidPoint(f"points must be {POINT_BYTES} bytes each, got shape {points.shape}")
    if len(points) == 0:
        return
    high = points[:, 31]
    bad = np.flatnonzero(high & 0x80)
    if bad.size:
        raise InvalidPoint("bit 255 is set (not a canonical u-coordinate)", int(bad[0]))
    noncanon = (high == 0x7F) & (points[:, 0] >= 0xED) & np.all(points[:, 1:31] == 0xFF, axis=1)
    bad = np.flatnonzero(noncanon)
    if bad.size:
        raise InvalidPoint("u-coordinate is not reduced modulo 2^255-19", int(bad[0]))
    raw = points.tobytes()
    frombytes = int.from_bytes
    mpz, legendre = gmpy2.mpz, _legendre
    for i in range(len(points)):
        u = mpz(frombytes(raw[32 * i:32 * i + 32], "little"))
        if legendre((u * (u * (u + _A) + 1)) % _P, _P) < 0:
            raise InvalidPoint("point is on the quadratic twist, not on curve25519", i)


def blind_points(scalar: bytes, data: bytes, out_bytes: int = POINT_BYTES, validate: bool = True) -> bytes:
    """Apply ``scalar`` to every 32-byte point in ``data``; return the concatenated (truncated) results.

    With ``validate`` (every point that came from a peer), each point is checked first; a bad point raises
    InvalidPoint whose ``index`` is its position in ``data``.
    """
    if len(data) % POINT_BYTES:
        raise InvalidPoint(f"{len(data)} bytes is not a whole number of {POINT_BYTES}-byte points")
    n = len(data) // POINT_BYTES
    if validate:
        check_points(np.frombuffer(data, dtype=np.uint8).reshape(n, POINT_BYTES))
    mult = multiplier(scalar)
    try:
        if out_bytes == POINT_BYTES:
            return b"".join([mult(data[32 * i:32 * i + 32]) for i in range(n)])
        return b"".join([mult(data[32 * i:32 * i + 32])[:out_bytes] for i in range(n)])
    except LOW_ORDER_ERRORS:
        pass
    for i in range(n):  # find which point it was
        try:
            mult(data[32 * i:32 * i + 32])
        except LOW_ORDER_ERRORS:
            raise InvalidPoint("low-order point (X25519 result is all zero)", i) from None
    raise InvalidPoint("low-order point (X25519 result is all zero)")
