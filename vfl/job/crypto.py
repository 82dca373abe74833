"""The job runtime's view of the Paillier engine: fresh keys per job, ops under a key, wire bytes.

Keys are generated per job and live only in memory and, for resumable checkpoints, nowhere else: a
resumed job draws fresh keys, because every ciphertext is per batch.
"""
from __future__ import annotations

from typing import Sequence

from vfl.errors import ProtocolError


def new_private_ops(key_bits: int, workers: int):
    """A fresh key pair with its private operations (decrypt) and public operations."""
    from vfl import he
    return he.new_private_ops(key_bits, workers=workers)


def public_ops_from_bytes(n_bytes: bytes, djn_base: bytes, key_bits: int, workers: int,
                          exponent_sum_bits: int | None = None):
    """The peer's public key, with its published DJN base for cheap, statistically safe re-randomization.

    `exponent_sum_bits` bounds sum_j |e_j| of the products this party re-randomizes under the key
    (Layout.exponent_sum_bits); the re-randomization exponent grows with it so that its hiding stays 2^-56.
    """
    from vfl import he
    if len(n_bytes) * 8 < key_bits - 8 or len(n_bytes) * 8 > key_bits + 8:
        raise ProtocolError(f"setup: peer public key has {len(n_bytes) * 8} bits, the job requires {key_bits}")
    n = int.from_bytes(n_bytes, "big")
    if n % 2 == 0 or n.bit_length() not in range(key_bits - 1, key_bits + 1):
        raise ProtocolError("setup: peer public key is not a valid Paillier modulus of the agreed size")
    hs = int.from_bytes(djn_base, "big")
    if not 0 < hs < n * n:
        raise ProtocolError("setup: peer DJN base is missing or out of range")
    try:
        slack = None if exponent_sum_bits is None else he.peer_djn_slack_bits(exponent_sum_bits)
        return he.new_public_ops(n, workers=workers, djn_base=hs, djn_slack_bits=slack)
    except (ValueError, he.CryptoError) as exc:
        raise ProtocolError(f"setup: peer public key refused: {exc}") from None


def public_key_bytes(ops) -> bytes:
    n = int(ops.n)
    return n.to_bytes((n.bit_length() + 7) // 8, "big")


def djn_base_bytes(ops) -> bytes:
    hs = int(ops.djn_base)
    return hs.to_bytes((hs.bit_length() + 7) // 8, "big")


def to_bytes(ops, ciphertexts: Sequence) -> bytes:
    from vfl import he
    return he.ciphertexts_to_bytes(ciphertexts, ops.public_key)


def from_bytes(ops, data: bytes, count: int, what: str) -> list:
    from vfl import he
    try:
        return he.ciphertexts_from_bytes(data, ops.public_key, count=count)
    except Exception as exc:  # the engine's validation errors become protocol errors naming the message
        raise ProtocolError(f"{what}: {exc}") from None
