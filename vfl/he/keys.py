"""Paillier keys: phe's own key objects, generated, serialized and loaded in phe's (pheutil's) JWK format.

The engine never invents its own key type: a public key is a :class:`phe.paillier.PaillierPublicKey`
(n, g = n + 1, n^2) and a private key a :class:`phe.paillier.PaillierPrivateKey` (p, q). Keys written here
load with ``pheutil`` and with :func:`phe.paillier.PaillierPrivateKey` directly, and vice versa:

    public  {"kty": "DAJ", "alg": "PAI-GN1", "key_ops": ["encrypt"], "n": b64url(n), "kid": ...}
    private {"kty": "DAJ", "key_ops": ["decrypt"], "p": b64url(p), "q": b64url(q), "pub": <public>, ...}

Loading validates what it can: n odd, of an allowed size, not a perfect square, free of small factors; for a
private key also p * q = n, p != q and both p and q (probable) primes.
"""
from __future__ import annotations

import json
from typing import Any

import gmpy2
from phe import paillier
from phe.util import base64_to_int, int_to_base64

from vfl.he.errors import KeyFormatError

DEFAULT_KEY_BITS = 2048
#: 2048 is the default (112-bit security); 3072 gives 128-bit security. 1024 is for fast tests only.
ALLOWED_KEY_BITS = (1024, 2048, 3072, 4096)

PublicKey = paillier.PaillierPublicKey
PrivateKey = paillier.PaillierPrivateKey

_SMALL_PRIMORIAL = int(gmpy2.primorial(10_000))


def generate_keypair(bits: int = DEFAULT_KEY_BITS) -> tuple[PublicKey, PrivateKey]:
    """A fresh phe key pair whose modulus n has exactly `bits` bits."""
    if bits not in ALLOWED_KEY_BITS:
        raise KeyFormatError(f"key size {bits} bits is not supported; use one of {ALLOWED_KEY_BITS}")
    return paillier.generate_paillier_keypair(n_length=bits)


def check_modulus(n: int, bits: int | None = None) -> int:
    """Validate a public modulus received from elsewhere; returns it as an int.

    Checks: odd, bit length in ALLOWED_KEY_BITS (and equal to `bits` when given), not a perfect square,
    no prime factor below 10^4. A peer could still send a modulus it can factor: that only endangers what is
    encrypted under *its own* key, which the peer can decrypt anyway.
    """
    n = int(n)
    size = n.bit_length()
    if bits is not None and size != bits:
        raise KeyFormatError(f"public key modulus has {size} bits, expected {bits}")
    if size not in ALLOWED_KEY_BITS:
        raise KeyFormatError(f"public key modulus has {size} bits; supported sizes are {ALLOWED_KEY_BITS}")
    if n % 2 == 0 or gmpy2.is_square(n) or gmpy2.gcd(n, _SMALL_PRIMORIAL) != 1:
        raise KeyFormatError("public key modulus is not a valid Paillier modulus (even, square or small factor)")
    return n


def public_key_from_n(n: int, bits: int | None = None) -> PublicKey:
    """A phe public key for the modulus n (validated with :func:`check_modulus`)."""
    return paillier.PaillierPublicKey(check_modulus(n, bits))


def public_key_to_jwk(public_key: PublicKey, kid: str = "vfl Paillier public key") -> dict[str, Any]:
    return {"kty": "DAJ", "alg": "PAI-GN1", "key_ops": ["encrypt"], "n": int_to_base64(public_key.n), "kid": kid}


def private_key_to_jwk(private_key: PrivateKey, kid: str = "vfl Paillier private key") -> dict[str, Any]:
    return {"kty": "DAJ", "key_ops": ["decrypt"], "p": int_to_base64(private_key.p),
            "q": int_to_base64(private_key.q), "pub": public_key_to_jwk(private_key.public_key), "kid": kid}


def public_key_to_json(public_key: PublicKey) -> str:
    return json.dumps(public_key_to_jwk(public_key))


def private_key_to_json(private_key: PrivateKey) -> str:
    return json.dumps(private_key_to_jwk(private_key))


def _parse(text: str | bytes | dict, what: str) -> dict:
    if isinstance(text, dict):
        return text
    try:
        data = json.loads(text)
    except (ValueError, TypeError) as exc:
        raise KeyFormatError(f"{what}: not valid JSON ({exc})") from None
    if not isinstance(data, dict):
        raise KeyFormatError(f"{what}: expected a JSON object")
    return data


def _b64(data: dict, field: str, what: str) -> int:
    value = data.get(field)
    if not isinstance(value, str) or not value:
        raise KeyFormatError(f"{what}: field {field!r} is missing or not a base64url string")
    try:
        return base64_to_int(value)
    except (ValueError, TypeError) as exc:
        raise KeyFormatError(f"{what}: field {field!r} is not base64url ({exc})") from None


def public_key_from_json(text: str | bytes | dict, bits: int | None = None) -> PublicKey:
    """Load a public key written by :func:`public_key_to_json` or ``pheutil extract``."""
    data = _parse(text, "public key")
    if data.get("kty") != "DAJ" or data.get("alg", "PAI-GN1") != "PAI-GN1":
        raise KeyFormatError("public key: not a Paillier (kty DAJ, alg PAI-GN1) key")
    return public_key_from_n(_b64(data, "n", "public key"), bits)


def private_key_from_json(text: str | bytes | dict, bits: int | None = None) -> PrivateKey:
    """Load a private key written by :func:`private_key_to_json` or ``pheutil genpkey``."""
    data = _parse(text, "private key")
    if data.get("kty") != "DAJ" or not isinstance(data.get("pub"), dict):
        raise KeyFormatError("private key: not a Paillier (kty DAJ) private key with its 'pub' part")
    public_key = public_key_from_json(data["pub"], bits)
    p, q = _b64(data, "p", "private key"), _b64(data, "q", "private key")
    if p == q or p * q != public_key.n:
        raise KeyFormatError("private key: p * q does not equal the public modulus n (or p == q)")
    if not (gmpy2.is_prime(p, 40) and gmpy2.is_prime(q, 40)):
        raise KeyFormatError("private key: p or q is not prime")
    return paillier.PaillierPrivateKey(public_key, p, q)
