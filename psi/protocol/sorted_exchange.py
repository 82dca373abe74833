"""The sorted DH exchange that counts common values between two parties without telling either which ones.

Used by the N-party cardinality mode between the active party A and P1 on 16-byte pseudorandom values
(A's c(x) = XOR_j o_j(x), P1's R(y)). It is the cardinality mode of the 2-party protocol applied to those
values treated as items: each value v is written as the text ``"vfl-psi-v2 card:" + hex(v)`` (domain
separated from real IDs) and hashed to the curve with the session salt. Each side sends H(v)^c (``BLINDED``,
c a fresh scalar of this exchange), applies its scalar to every point it receives, and returns the
resulting 16-byte values **sorted** (``DOUBLE``), so neither side can link a returned value to one of its
items. Each side then counts the values both lists share: |{c(x)} ∩ {R(y)}|, nothing else.
"""
from __future__ import annotations

from typing import Callable

import numpy as np

from psi.core import curve25519, setops
from psi.core.hashing import Canonicalization
from psi.errors import MalformedMessage, OutOfOrder
from psi.protocol.base import InStream, OwnStream, Party, chunk_count, peer_sized_array, point_errors
from psi.protocol.messages import Chunk, Stage
from psi.protocol.two_party import secure_permutation

PREFIX = "vfl-psi-v2 card:"
PLAIN = Canonicalization(strip=False, lowercase=False)   # the hex items are already canonical


class HexItems:
    """An ID source over (n, 16) uint8 values: item i is PREFIX + hex of value i (made per chunk)."""

    def __init__(self, values: np.ndarray):
        self.values = values

    def __len__(self) -> int:
        return len(self.values)

    def gather(self, rows: np.ndarray) -> list[str]:
        return [PREFIX + bytes(v).hex() for v in self.values[rows]]


class SortedExchange:
    """One side of the exchange with ``peer``. ``on_blinded``/``on_double`` take the peer's chunks;
    ``start(values)`` sends ours; ``on_count(count)`` is called once both directions are complete."""

    def __init__(self, party: Party, peer: str, salt: bytes, chunk: int, n_peer: int,
                 on_count: Callable[[int], None]):
        self.party = party
        self.peer = peer
        self.salt = salt
        self.chunk = chunk
        self.on_count = on_count
        self.scalar = curve25519.new_scalar()
        sid = party.session_id
        self.in_blinded = InStream(sid, peer, Stage.BLINDED, n_peer, chunk)
        # the peer's values, blinded by both, in its order
        self.z_peer = peer_sized_array((n_peer, 2), np.uint64, "values", peer, sid)
        self.peer_chunks = chunk_count(n_peer, chunk)
        self.peer_processed = 0
        self.returned = False
        self.own: OwnStream | None = None
        self.count: int | None = None

    # ------------------------------------------------------------------ our values
    def start(self, values: np.ndarray) -> None:
        n = len(values)
        self.in_double = InStream(self.party.session_id, self.peer, Stage.DOUBLE, n, self.chunk)
        self.z_own = np.zeros((n, 2), dtype=np.uint64)
        # a fresh order, so positions in this exchange relate to nothing else the peer has seen
        self.own = OwnStream(self.party, HexItems(values), secure_permutation(n), self.salt, PLAIN,
                             self.scalar, self.chunk, curve25519.POINT_BYTES, self._send, "blind values to count",
                             2 * self.party.engine.parallelism)
        self.own.pump()
        if self.peer_chunks == 0:
            self._return_sorted()
        self._maybe_count()

    def _send(self, index: int, offset: int, data: bytes) -> None:
        self.party.send(self.peer, Chunk(self.party.session_id, Stage.BLINDED, index, len(data) // 32, data))

    @property
    def started(self) -> bool:
        return self.own is not None

    # ------------------------------------------------------------------ the peer's values
    def on_blinded(self, msg: Chunk) -> None:
        offset = self.in_blinded.accept(msg.index, msg.count, len(msg.data))
        fut = self.party.engine.blind(self.scalar, msg.data, setops.VALUE_BYTES, validate=True)

        def done(data: bytes, offset=offset) -> None:
            self.z_peer[offset:offset + len(data) // 16] = setops.values_from_bytes(data)
            self.peer_processed += 1
            if self.peer_processed == self.peer_chunks:
                self._return_sorted()
            self._maybe_count()

        self.party.submit(point_errors(fut, self.in_blinded, msg.index, offset), done)

    def _return_sorted(self) -> None:
        """Return the peer's values sorted (a permutation that hides which of its items they belong to)."""
        values = self.z_peer[setops.sort_order(self.z_peer)]
        for j in range(self.peer_chunks):
            part = values[j * self.chunk:(j + 1) * self.chunk]
            self.party.send(self.peer, Chunk(self.party.session_id, Stage.DOUBLE, j, len(part),
                                             setops.values_to_bytes(part)))
        self.returned = True

    def on_double(self, msg: Chunk) -> None:
        if self.own is None or not self.own.done:
            raise OutOfOrder(f"session {self.party.session_id}: double-blinded values from {self.peer} arrived "
                             "before all of our values were sent")
        offset = self.in_double.accept(msg.index, msg.count, len(msg.data))
        values = setops.values_from_bytes(msg.data)
        self._check_sorted(msg.index, offset, values)
        self.z_own[offset:offset + msg.count] = values
        self._maybe_count()

    def _check_sorted(self, index: int, offset: int, values: np.ndarray) -> None:
        """The peer must return our values strictly ascending: repeats would inflate the count."""
        seq = values if offset == 0 else np.vstack([self.z_own[offset - 1][None], values])
        hi, lo = seq[:, 0], seq[:, 1]
        if not ((hi[1:] > hi[:-1]) | ((hi[1:] == hi[:-1]) & (lo[1:] > lo[:-1]))).all():
            raise MalformedMessage(f"session {self.party.session_id}: double-blinded chunk {index} from {self.peer} "
                                   "is not strictly ascending")

    def _maybe_count(self) -> None:
        if self.count is not None or self.own is None or not self.own.done or not self.in_double.complete:
            return
        if not (self.returned and self.in_blinded.complete):
            return
        self.count = setops.count_common(self.z_own, self.z_peer)
        self.z_own = self.z_peer = None
        self.on_count(self.count)
