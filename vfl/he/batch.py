"""Ciphertext batches that carry the key they are under, and an engine view that returns them.

Two facts the protocol must never get wrong are held by types here rather than remembered at each call:

* **Which key.** A :class:`Ciphertexts` knows its modulus n. Every operation of :class:`KeyedEngine` checks
  that its inputs are under its own key and raises :class:`KeyMismatchError` otherwise, so the active party's
  ciphertexts cannot stand in for the passive party's by a typo (phe's ``EncryptedNumber`` refuses the same).
* **Whether it may leave the party.** A ciphertext sent to the key owner must carry fresh randomness: a
  product or a sum of a peer's ciphertexts would let the key owner learn more than its plaintext (the
  exponents, or a plaintext in the clear when an all-zero row gives c = 1 + n m). Only encryption and
  re-randomization make a :class:`Fresh` batch, and :func:`to_wire` encodes nothing else.
"""
from __future__ import annotations

from typing import Any, Iterator, Sequence

import numpy as np

from vfl.he.errors import CryptoError, KeyMismatchError
from vfl.he.wire import ciphertexts_from_bytes, ciphertexts_to_bytes


class Ciphertexts(Sequence):
    """An immutable batch of ciphertexts under the public key with modulus ``n``."""

    __slots__ = ("n", "_values")

    def __init__(self, n: int, values: Sequence):
        self.n = int(n)
        self._values = tuple(values)

    def __len__(self) -> int:
        return len(self._values)

    def __iter__(self) -> Iterator:
        return iter(self._values)

    def __getitem__(self, index):
        if isinstance(index, slice):  # a part of a batch is under the same key, and no fresher than the batch
            return type(self)(self.n, self._values[index])
        return self._values[index]

    @property
    def values(self) -> tuple:
        return self._values

    def __repr__(self) -> str:
        return f"{type(self).__name__}({len(self)} under n of {self.n.bit_length()} bits)"


class Fresh(Ciphertexts):
    """Ciphertexts straight from encryption or re-randomization: the only kind that may be sent.

    Made only by :class:`KeyedEngine` (``encrypt_ints``, ``rerandomize``) and by reordering fresh batches
    (:meth:`interleave`). What a peer sent is a plain :class:`Ciphertexts` (:func:`from_wire`): nothing a party
    received goes back out as it came.
    """

    __slots__ = ()

    @classmethod
    def interleave(cls, batches: Sequence["Fresh"], order: Sequence[tuple[int, int]]) -> "Fresh":
        """``Fresh([batches[b][i] for b, i in order])``: a reordering stays fresh, a derived batch never becomes so."""
        if not batches:
            raise ValueError("interleave: no batches")
        n = batches[0].n
        for b in batches:
            if not isinstance(b, Fresh):
                raise TypeError(f"interleave: {type(b).__name__} is not a Fresh batch")
            if b.n != n:
                raise KeyMismatchError("interleave: batches under different keys")
        return cls(n, [batches[b][i] for b, i in order])


def _same_key(n: int, batch: Any, what: str) -> Sequence:
    if not isinstance(batch, Ciphertexts):
        raise TypeError(f"{what}: expected a Ciphertexts batch, got {type(batch).__name__}")
    if batch.n != n:
        raise KeyMismatchError(f"{what}: ciphertexts under a key with n of {batch.n.bit_length()} bits "
                               f"(…{batch.n % 10**6:06d}) given to the engine of another key (…{n % 10**6:06d})")
    return batch.values


class KeyedEngine:
    """A PaillierEngine whose inputs and outputs are typed batches under its key.

    Works on the engine's raw lists underneath, so it costs nothing but the checks. Anything it does not wrap
    (``n``, ``public_key``, ``djn_base``, ``has_private_key``...) is the engine's own.
    """

    def __init__(self, engine):
        self.engine = engine
        self.n = int(engine.n)

    def __getattr__(self, name: str):
        return getattr(self.engine, name)

    def encrypt_ints(self, plaintexts: Sequence[int]) -> Fresh:
        return Fresh(self.n, self.engine.encrypt_ints(plaintexts))

    def rerandomize(self, ciphertexts: Ciphertexts) -> Fresh:
        return Fresh(self.n, self.engine.rerandomize(list(_same_key(self.n, ciphertexts, "rerandomize"))))

    def add_plain(self, ciphertexts: Ciphertexts, plaintexts: Sequence[int]) -> Ciphertexts:
        return Ciphertexts(self.n, self.engine.add_plain(list(_same_key(self.n, ciphertexts, "add_plain")),
                                                         plaintexts))

    def multiexp(self, bases: Ciphertexts, exponents: np.ndarray) -> Ciphertexts:
        return Ciphertexts(self.n, self.engine.multiexp(list(_same_key(self.n, bases, "multiexp")), exponents))

    def decrypt_ints(self, ciphertexts: Ciphertexts) -> list[int]:
        return self.engine.decrypt_ints(list(_same_key(self.n, ciphertexts, "decrypt")))


def to_wire(batch: Fresh) -> bytes:
    """The bytes of a batch that may leave the party; a derived batch is refused by its type."""
    if not isinstance(batch, Fresh):
        raise CryptoError(f"refusing to send {batch!r}: only fresh or re-randomized ciphertexts leave a party "
                          "(re-randomize a derived batch first)")
    return ciphertexts_to_bytes(batch.values, batch.n)


def from_wire(data: bytes, engine: KeyedEngine, count: int | None = None) -> Ciphertexts:
    """Ciphertexts under ``engine``'s key (exactly ``count`` if given), each checked to be in Z*_{n^2} (vfl.he.wire)."""
    return Ciphertexts(engine.n, ciphertexts_from_bytes(data, engine.n, count=count))
