"""Two-party ECDH PSI. Both roles run the same symmetric exchange after the hello:

1. A -> P ``Hello`` (session, salt, canonicalization, mode, |X|, chunk size);  P -> A ``HelloReply`` (|Y|).
2. Each party streams ``BLINDED`` chunks: H(id)^k of its own IDs in a fresh random order (A: H(x)^a,
   P: H(y)^b).
3. Each party applies its key to every ``BLINDED`` chunk it receives and streams the result back as
   ``DOUBLE`` chunks, truncated to 16 bytes: in the order received (intersection mode) or sorted by value
   (cardinality mode, so the owner cannot link them to its rows).
4. Each party now holds the doubly-blinded values of both sets and computes the intersection locally; the
   agreed order is ascending doubly-blinded value. ``Done`` (count, digest) confirms both got the same.

Steps 2 and 3 overlap: a received chunk is processed as soon as it arrives, while own chunks continue.
"""
from __future__ import annotations

import secrets

import numpy as np

from psi.config import PsiResult
from psi.core import curve25519, setops
from psi.core.hashing import Canonicalization
from psi.errors import ConsistencyError, MalformedMessage
from psi.protocol.base import InStream, OwnStream, Party, check_own_ids, chunk_count, peer_sized_array, point_errors
from psi.protocol.ids import IdSource
from psi.protocol.messages import Chunk, Done, Hello, HelloReply, Mode, Stage

MAX_SET_SIZE = 1 << 40
MAX_OUTSTANDING_BYTES = 16 << 20     # own points sent but not yet returned by the peer (intersection mode)

LABEL_OWN = "blind own IDs"
LABEL_PEER = "blind peer points"
LABEL_BACK = "receive own results"


def secure_permutation(n: int) -> np.ndarray:
    """A uniformly random permutation of range(n) from OS randomness (the order our points are sent in)."""
    rng = np.random.Generator(np.random.PCG64(secrets.randbits(128)))
    return rng.permutation(n).astype(np.int64 if n >= 2**31 else np.int32)


class TwoPartyRole(Party):
    def __init__(self, *, hello: Hello, active: bool, ids: IdSource, **kw):
        super().__init__(**kw)
        self.hello = hello
        self.active = active
        self.ids = ids
        self.peer = next(iter(self.links))
        self.mode = hello.mode
        self.canon = Canonicalization(hello.strip, hello.lowercase)
        self.chunk = hello.chunk_size
        self.n_own = len(ids)
        self.n_peer = None if active else hello.size
        self.state = "hello"
        self.peer_done: Done | None = None
        self.own_done: Done | None = None

    # ------------------------------------------------------------------ start
    def start(self) -> None:
        # Own IDs are checked before any own point leaves: a bad input aborts the session, and the peer learns
        # only that this party's input is invalid (after the hello, so the abort reaches a session)
        if self.active:
            self.send(self.peer, self.hello)
            check_own_ids(self.engine, self.ids, self.canon)
            self.state = "waiting for the hello reply"
        else:
            check_own_ids(self.engine, self.ids, self.canon)
            self.send(self.peer, HelloReply(self.session_id, self.n_own))
            self._begin()

    def _begin(self) -> None:
        self.state = "exchanging points"
        self.scalar = curve25519.new_scalar()
        self.order = secure_permutation(self.n_own)
        self.z_own = np.zeros((self.n_own, 2), dtype=np.uint64)     # H(own)^(ab), in our send order
        # H(peer)^(ab), in the peer's send order
        self.z_peer = peer_sized_array((self.n_peer, 2), np.uint64, "IDs", self.peer, self.session_id)
        self.in_blinded = InStream(self.session_id, self.peer, Stage.BLINDED, self.n_peer, self.chunk)
        self.in_double = InStream(self.session_id, self.peer, Stage.DOUBLE, self.n_own, self.chunk)
        self.peer_ready: dict[int, bytes] = {}
        self.peer_next_return = 0
        self.peer_processed = 0
        self.peer_chunks = chunk_count(self.n_peer, self.chunk)
        # In intersection mode the peer returns each of our chunks as soon as it has processed it, which
        # lets us bound how far ahead of the peer we run (memory at the peer); cardinality returns come last.
        outstanding = MAX_OUTSTANDING_BYTES // (32 * self.chunk) if self.mode == Mode.INTERSECTION else None
        self.own = OwnStream(self, self.ids, self.order, self.hello.salt, self.canon, self.scalar, self.chunk,
                             curve25519.POINT_BYTES, self._send_own, LABEL_OWN, 2 * self.engine.parallelism,
                             max_outstanding=max(4 * self.engine.parallelism, outstanding) if outstanding else None)
        self.own.pump()
        self._maybe_finish()

    def _send_own(self, index: int, offset: int, data: bytes) -> None:
        self.send(self.peer, Chunk(self.session_id, Stage.BLINDED, index, len(data) // 32, data))

    def peer_finished(self, peer: str) -> bool:
        return self.peer_done is not None

    # ------------------------------------------------------------------ messages
    def handle(self, peer: str, msg) -> None:
        if isinstance(msg, HelloReply) and self.active and self.state.startswith("waiting"):
            if not 0 <= msg.size <= MAX_SET_SIZE:
                raise MalformedMessage(f"session {self.session_id}: {peer} reports an invalid set size {msg.size}")
            self.n_peer = msg.size
            self._begin()
        elif isinstance(msg, Chunk) and self.state == "exchanging points" and msg.stage == Stage.BLINDED:
            self._on_blinded(msg)
        elif isinstance(msg, Chunk) and self.state == "exchanging points" and msg.stage == Stage.DOUBLE:
            self._on_double(msg)
        elif isinstance(msg, Done) and self.own_done is not None and self.peer_done is None:
            self.peer_done = msg
            self._maybe_finish()
        else:
            raise self.unexpected(peer, msg, self.state)

    def _on_blinded(self, msg: Chunk) -> None:
        offset = self.in_blinded.accept(msg.index, msg.count, len(msg.data))
        fut = self.engine.blind(self.scalar, msg.data, setops.VALUE_BYTES, validate=True)

        def done(data: bytes, index=msg.index, offset=offset) -> None:
            self.z_peer[offset:offset + len(data) // 16] = setops.values_from_bytes(data)
            self.peer_processed += 1
            self.report(LABEL_PEER, min(self.peer_processed * self.chunk, self.n_peer), self.n_peer)
            if self.mode == Mode.INTERSECTION:
                self.peer_ready[index] = data
                while self.peer_next_return in self.peer_ready:
                    j = self.peer_next_return
                    out = self.peer_ready.pop(j)
                    self.send(self.peer, Chunk(self.session_id, Stage.DOUBLE, j, len(out) // 16, out))
                    self.peer_next_return += 1
            elif self.peer_processed == self.peer_chunks:
                self._return_sorted()
            self._maybe_finish()

        self.submit(point_errors(fut, self.in_blinded, msg.index, offset), done)

    def _return_sorted(self) -> None:
        """Cardinality mode: return the peer's values sorted, so it cannot tell which of its rows match."""
        values = self.z_peer[setops.sort_order(self.z_peer)]
        for j in range(self.peer_chunks):
            part = values[j * self.chunk:(j + 1) * self.chunk]
            self.send(self.peer, Chunk(self.session_id, Stage.DOUBLE, j, len(part), setops.values_to_bytes(part)))
        self.peer_next_return = self.peer_chunks

    def _on_double(self, msg: Chunk) -> None:
        if self.mode == Mode.INTERSECTION and msg.index >= self.own.next_emit:
            raise self.unexpected(self.peer, msg, f"only {self.own.next_emit} own chunks were sent")
        if self.mode == Mode.CARDINALITY and not self.own.done:
            raise self.unexpected(self.peer, msg, "own points are still being sent")
        offset = self.in_double.accept(msg.index, msg.count, len(msg.data))
        self.z_own[offset:offset + msg.count] = setops.values_from_bytes(msg.data)
        self.report(LABEL_BACK, self.in_double.received, self.n_own)
        if self.mode == Mode.INTERSECTION:
            self.own.acked(self.in_double.next_index)
        self._maybe_finish()

    # ------------------------------------------------------------------ finish
    def _maybe_finish(self) -> None:
        if self.state != "exchanging points" and self.own_done is None:
            return
        if self.own_done is None:
            if not (self.own.done and self.in_double.complete and self.peer_next_return >= self.peer_chunks
                    and self.in_blinded.complete):
                return
            # Sort both sides (dropping each unsorted array as soon as its sorted copy exists, to bound
            # memory at 10M IDs), then look our sorted values up in the peer's.
            peer_sorted = self.z_peer[setops.sort_order(self.z_peer)]
            self.z_peer = None
            own_order = setops.sort_order(self.z_own)
            own_sorted = self.z_own[own_order]
            self.z_own = None
            hits = setops.match_sorted(own_sorted, peer_sorted)
            del peer_sorted
            common = own_order[hits]              # our stream positions, ascending blinded value
            values = own_sorted[hits]
            del own_sorted, own_order
            self.rows = self.order[common].astype(np.int64) if self.mode == Mode.INTERSECTION else None
            self.count = len(common)
            self.own_done = Done(self.session_id, self.count, setops.digest(values))
            self.state = "confirming"
            self.send(self.peer, self.own_done)
        if self.peer_done is not None and not self.finished:
            if (self.peer_done.count, self.peer_done.digest) != (self.own_done.count, self.own_done.digest):
                raise ConsistencyError(f"session {self.session_id}: {self.peer} found {self.peer_done.count} common "
                                       f"IDs, {self.me} found {self.own_done.count} (or the values differ)")
            sizes = {self.me: self.n_own, self.peer: self.n_peer}
            self.result = PsiResult(party=self.me, session_id=self.session_id, mode=self.mode, size=self.count,
                                    set_sizes=sizes, rows=self.rows, id_source=self.ids,
                                    canonicalization=self.canon)
            self.finished = True
