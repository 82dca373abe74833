"""Wire format of ciphertexts: fixed-width big-endian bytes, validated on receipt.

A ciphertext c in Z*_{n^2} is sent as exactly w = ceil(bits(n^2) / 8) bytes, big-endian (512 bytes for a
2048-bit key); a list is the concatenation. On receipt every ciphertext must satisfy

    0 < c < n^2   and   gcd(c, n) = 1

(anything else is not an encryption under this key: c = 0 or a multiple of p or q could make decryption
leak or fail). The gcd test is batched: gcd(prod c_i mod n, n) = 1 iff every c_i is coprime to n, and only
on failure are the ciphertexts tested one by one to name the bad one. Length, count and size limits are
checked before anything is parsed. Every refusal is a :class:`MalformedCiphertextError` naming the index.

Sending refuses any ciphertext equal to 1 mod n: it has no encryption randomness (see
:func:`ciphertexts_to_bytes`) and must be re-randomized first.
"""
from __future__ import annotations

from typing import Any, Iterable, Sequence

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
    """Concatenated fixed-width big-endian encodings, for sending.

    Refuses values outside (0, n^2) and ciphertexts that carry no encryption randomness: c = (1 + n m) rho
    with rho = 1, recognisable as c = 1 mod n (multiplying by 0 gives c = 1; a matrix product with an all-zero
    row, or a plaintext added to one, gives 1 + n m). Such a ciphertext is a deterministic encoding of its
    plaintext (c = 1 + n m reveals m to anyone), so it must be re-randomized before it leaves the party
    (``engine.rerandomize`` / ``EncryptedTensor.rerandomize``). A properly randomized ciphertext is 1 mod n
    with probability 1 / phi(n).
    """
    n = _modulus(public_key)
    n2 = n * n
    width = ciphertext_width(public_key)
    out = bytearray()
    for i, c in enumerate(ciphertexts):
        c = int(c)
        if not 0 < c < n2:
            raise MalformedCiphertextError(f"ciphertext {i} is not in (0, n^2); refusing to send it", index=i)
        if c % n == 1:
            raise MalformedCiphertextError(
                f"ciphertext {i} carries no encryption randomness (c = 1 mod n: the result of a multiplication by 0, "
                "an all-zero matrix row, or a plaintext added to one); it would reveal its plaintext, so it is not "
                "sent -- re-randomize before sending (engine.rerandomize / EncryptedTensor.rerandomize)", index=i)
        out += c.to_bytes(width, "big")
    return bytes(out)


def ciphertexts_from_bytes(data: bytes, public_key: Any, count: int | None = None,
                           max_count: int = DEFAULT_MAX_COUNT) -> list:
    """Parse and validate ciphertexts; `count`, when given, is the exact number expected."""
    if not isinstance(data, (bytes, bytearray, memoryview)):
        raise MalformedCiphertextError(f"ciphertexts must be bytes, got {type(data).__name__}")
    data = bytes(data)
    n = _modulus(public_key)
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
    return check_ciphertexts((int.from_bytes(data[i * width:(i + 1) * width], "big") for i in range(got)), n)


def check_ciphertexts(ciphertexts: Iterable, public_key: Any, what: str = "ciphertext") -> list:
    """The values as mpz, refusing any that is not in Z*_{n^2}: 0 < c < n^2 and gcd(c, n) = 1.

    The gcd test is batched (gcd(prod c_i mod n, n)), then repeated one by one only to name the bad index.
    Raises :class:`MalformedCiphertextError` with `.index`.
    """
    n = _modulus(public_key)
    n2 = n * n
    out = []
    for i, c in enumerate(ciphertexts):
        c = mpz(c)
        if not 0 < c < n2:
            raise MalformedCiphertextError(f"{what} {i} is not in the range 0 < c < n^2", index=i)
        out.append(c)
    product = mpz(1)
    for c in out:
        product = product * c % n
    if out and gmpy2.gcd(product, n) != 1:
        for i, c in enumerate(out):
            if gmpy2.gcd(c, n) != 1:
                raise MalformedCiphertextError(f"{what} {i} shares a factor with n (gcd(c, n) != 1)", index=i)
    return out
