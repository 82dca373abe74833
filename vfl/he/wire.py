"""Wire format of ciphertexts: fixed-width big-endian bytes, validated on receipt.

A ciphertext c in Z*_{n^2} is sent as exactly w = ceil(bits(n^2) / 8) bytes, big-endian (512 bytes for a
2048-bit key); a list is the concatenation. On receipt every ciphertext must satisfy

    0 < c < n^2   and   gcd(c, n) = 1

(anything else is not an encryption under this key: c = 0 or a multiple of p or q could make decryption
leak or fail). The gcd test is batched: gcd(prod c_i mod n, n) = 1 iff every c_i is coprime to n, and only
on failure are the ciphertexts tested one by one to name the bad one. Length, count and size limits are
checked before anything is parsed. Every refusal is a :class:`MalformedCiphertextError` naming the index.
"""
from __future__ import annotations

from typing import Any, Sequence

import gmpy2
from gmpy2 import mpz

from vfl.he.errors import MalformedCiphertextError

#: default largest number of ciphertexts accepted in one message (about 512 MiB at 2048 bits)
DEFAULT_MAX_COUNT = 1 << 20


def _modulus(public_key: Any) -> mpz:
    n = getattr(public_key, "n", public_key)
    return mpz(n)


def ciphertext_width(public_key: Any) -> int:
    """Bytes per ciphertext: the byte length of n^2."""
    n = _modulus(public_key)
    return ((n * n).bit_length() + 7) // 8


def ciphertexts_to_bytes(ciphertexts: Sequence, public_key: Any) -> bytes:
    """Concatenated fixed-width big-endian encodings (refuses values outside [1, n^2))."""
    n = _modulus(public_key)
    n2 = n * n
    width = ciphertext_width(public_key)
    out = bytearray()
    for i, c in enumerate(ciphertexts):
        c = int(c)
        if not 0 < c < n2:
            raise MalformedCiphertextError(f"ciphertext {i} is not in (0, n^2); refusing to send it", index=i)
        out += c.to_bytes(width, "big")
    return bytes(out)


def ciphertexts_from_bytes(data: bytes, public_key: Any, count: int | None = None,
                           max_count: int = DEFAULT_MAX_COUNT) -> list:
    """Parse and validate ciphertexts; `count`, when given, is the exact number expected."""
    if not isinstance(data, (bytes, bytearray, memoryview)):
        raise MalformedCiphertextError(f"ciphertexts must be bytes, got {type(data).__name__}")
    data = bytes(data)
    n = _modulus(public_key)
    n2 = n * n
    width = ciphertext_width(public_key)
    if len(data) % width:
        raise MalformedCiphertextError(
            f"ciphertext bytes: length {len(data)} is not a multiple of {width} (one {n.bit_length()}-bit-key "
            f"ciphertext); the last ciphertext, index {len(data) // width}, is truncated", index=len(data) // width)
    got = len(data) // width
    if count is not None and got != count:
        raise MalformedCiphertextError(f"expected {count} ciphertexts, got {got}",
                                       index=min(got, count))
    if got > max_count:
        raise MalformedCiphertextError(f"{got} ciphertexts exceed the limit of {max_count}", index=max_count)
    out = []
    for i in range(got):
        c = mpz(int.from_bytes(data[i * width:(i + 1) * width], "big"))
        if not 0 < c < n2:
            raise MalformedCiphertextError(f"ciphertext {i} is not in the range 0 < c < n^2", index=i)
        out.append(c)
    product = mpz(1)
    for c in out:
        product = product * c % n
    if out and gmpy2.gcd(product, n) != 1:
        for i, c in enumerate(out):
            if gmpy2.gcd(c, n) != 1:
                raise MalformedCiphertextError(f"ciphertext {i} shares a factor with n (gcd(c, n) != 1)", index=i)
    return out
