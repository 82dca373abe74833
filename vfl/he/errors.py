"""Errors of the packed Paillier engine. All derive from :class:`vfl.errors.CryptoError`.

Each message says what was refused and why, and names the index, slot or bound involved, so a caller can
act on it (raise the slot width, lower the precision, drop the peer that sent bad bytes).
"""
from __future__ import annotations

from vfl.errors import CryptoError

__all__ = [
    "CryptoError", "LayoutError", "SlotOverflowError", "MalformedCiphertextError", "KeyMismatchError", "KeyFormatError",
]


class LayoutError(CryptoError):
    """A slot layout does not fit the key's plaintext space, or a row does not fit its slots."""


class SlotOverflowError(CryptoError):
    """A decoded packed value fails its checksum, or has bits above its last slot: some slot overflowed."""


class MalformedCiphertextError(CryptoError):
    """Received ciphertext bytes are not a valid ciphertext under the key; `index` names the bad one."""

    def __init__(self, message: str, index: int | None = None):
        super().__init__(message)
        self.index = index


class KeyMismatchError(CryptoError):
    """Ciphertexts (or a ciphertext and a key) under different public keys were combined."""


class KeyFormatError(CryptoError):
    """A serialized key is malformed or inconsistent (n != p*q, composite factor, wrong size)."""
