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

Memory is bounded whatever the set sizes: a party reads its IDs front to back in chunks (twice: the input check,
then the random send order, :class:`~psi.protocol.base.ShuffledIds`), and keeps what grows with the sets on disk
in an encrypted :class:`~psi.core.spill.Spill` (under the ID source's ``spill_dir``): the doubly-blinded values of
its own points with their rows, and those of the peer's points, each in buckets by their leading bits. The
intersection is then found bucket by bucket; since the buckets are ranges of values, it comes out in the agreed
order, and so do the result's rows, which stay on disk until read (:class:`~psi.config.PsiResult`).
"""
from __future__ import annotations

import hashlib
import secrets

import numpy as np

from psi.config import PsiResult
from psi.core import curve25519, setops
from psi.core.hashing import Canonicalization
from psi.core.spill import Spill, bucket_bits, free_bytes, leading_bits
from psi.errors import ConsistencyError, MalformedMessage, TooLarge
from psi.protocol.base import InStream, OwnStream, Party, ShuffledIds, check_own_ids, chunk_count, point_errors
from psi.protocol.messages import Chunk, Done, Hello, HelloReply, Mode, Stage

MAX_SET_SIZE = 1 << 40
MAX_OUTSTANDING_BYTES = 16 << 20     # own points sent but not yet returned by the peer (intersection mode)
#: disk bytes a party spills per ID of its peer's set (the doubly-blinded value, with room for the blocks' framing)
SPILL_BYTES_PER_PEER_ID = 32

LABEL_OWN = "blind own IDs"
LABEL_PEER = "blind peer points"
LABEL_BACK = "receive own results"

OWN_VALUES = {"hi": np.uint64, "lo": np.uint64, "row": np.int64}
PEER_VALUES = {"hi": np.uint64, "lo": np.uint64}


def secure_permutation(n: int) -> np.ndarray:
    """A uniformly random permutation of range(n) from OS randomness (the order our points are sent in)."""
    rng = np.random.Generator(np.random.PCG64(secrets.randbits(128)))
    return rng.permutation(n).astype(np.int64 if n >= 2**31 else np.int32)


def _values(frame: dict) -> np.ndarray:
    return np.stack([frame["hi"], frame["lo"]], axis=1) if len(frame["hi"]) else np.zeros((0, 2), dtype=np.uint64)


class TwoPartyRole(Party):
    def __init__(self, *, hello: Hello, active: bool, ids, **kw):
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
        self.spill: Spill | None = None

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
            self._check_room(self.n_peer)
            self.send(self.peer, HelloReply(self.session_id, self.n_own))
            self._begin()

    def _check_room(self, n_peer: int) -> None:
        """Refuse (RESOURCE_EXHAUSTED) a peer set whose values this party's disk cannot hold."""
        free = free_bytes(getattr(self.ids, "spill_dir", None))
        need = SPILL_BYTES_PER_PEER_ID * n_peer
        if need > free:
            raise TooLarge(f"session {self.session_id}: {self.peer} declared {n_peer:,} IDs; this party cannot "
                           f"allocate the {need:,} bytes that needs on its disk ({free:,} bytes free)")

    def _begin(self) -> None:
        self.state = "exchanging points"
        self.scalar = curve25519.new_scalar()
        self.spill = Spill(getattr(self.ids, "spill_dir", None), prefix="psi-session-")
        order = ShuffledIds(self.ids, self.spill, lambda n: secure_permutation(n))
        bits = self.value_bits = bucket_bits(max(self.n_own, self.n_peer))
        self.own_values = self.spill.buckets(1 << bits, OWN_VALUES)      # H(own)^(ab) and its row
        self.peer_values = self.spill.buckets(1 << bits, PEER_VALUES)    # H(peer)^(ab)
        self.in_blinded = InStream(self.session_id, self.peer, Stage.BLINDED, self.n_peer, self.chunk)
        self.in_double = InStream(self.session_id, self.peer, Stage.DOUBLE, self.n_own, self.chunk)
        self.peer_ready: dict[int, bytes] = {}
        self.peer_next_return = 0
        self.peer_processed = 0
        self.peer_chunks = chunk_count(self.n_peer, self.chunk)
        # In intersection mode the peer returns each of our chunks as soon as it has processed it, which
        # lets us bound how far ahead of the peer we run (memory at the peer); cardinality returns come last.
        intersection = self.mode == Mode.INTERSECTION
        outstanding = MAX_OUTSTANDING_BYTES // (32 * self.chunk) if intersection else None
        self.own = OwnStream(self, self.ids, order, self.hello.salt, self.canon, self.scalar, self.chunk,
                             curve25519.POINT_BYTES, self._send_own, LABEL_OWN, 2 * self.engine.parallelism,
                             max_outstanding=max(4 * self.engine.parallelism, outstanding) if outstanding else None,
                             keep_rows=intersection)
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
            self._check_room(self.n_peer)
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

        def done(data: bytes, index=msg.index) -> None:
            values = setops.values_from_bytes(data)
            self.peer_values.add(leading_bits(values[:, 0], self.value_bits), {"hi": values[:, 0], "lo": values[:, 1]})
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

    def _sorted_peer_values(self):
        """The peer's values in ascending order, a bucket at a time."""
        self.peer_values.flush()
        for b in range(self.peer_values.count):
            values = _values(self.peer_values.read(b))
            yield values[setops.sort_order(values)]

    def _return_sorted(self) -> None:
        """Cardinality mode: return the peer's values sorted, so it cannot tell which of its rows match."""
        index, carry = 0, np.zeros((0, 2), dtype=np.uint64)
        for values in self._sorted_peer_values():
            carry = np.concatenate([carry, values]) if len(carry) else values
            while len(carry) >= self.chunk:
                part, carry = carry[:self.chunk], carry[self.chunk:]
                self.send(self.peer, Chunk(self.session_id, Stage.DOUBLE, index, len(part),
                                           setops.values_to_bytes(part)))
                index += 1
        if len(carry):
            self.send(self.peer, Chunk(self.session_id, Stage.DOUBLE, index, len(carry), setops.values_to_bytes(carry)))
        self.peer_next_return = self.peer_chunks

    def _on_double(self, msg: Chunk) -> None:
        if self.mode == Mode.INTERSECTION and msg.index >= self.own.next_emit:
            raise self.unexpected(self.peer, msg, f"only {self.own.next_emit} own chunks were sent")
        if self.mode == Mode.CARDINALITY and not self.own.done:
            raise self.unexpected(self.peer, msg, "own points are still being sent")
        self.in_double.accept(msg.index, msg.count, len(msg.data))
        values = setops.values_from_bytes(msg.data)
        rows = self.own.rows_of.pop(msg.index) if self.mode == Mode.INTERSECTION else \
            np.full(len(values), -1, dtype=np.int64)
        self.own_values.add(leading_bits(values[:, 0], self.value_bits),
                            {"hi": values[:, 0], "lo": values[:, 1], "row": rows})
        self.report(LABEL_BACK, self.in_double.received, self.n_own)
        if self.mode == Mode.INTERSECTION:
            self.own.acked(self.in_double.next_index)
        self._maybe_finish()

    # ------------------------------------------------------------------ finish
    def _intersect(self) -> tuple[int, bytes, object]:
        """(count, digest, rows) of the intersection, bucket by bucket in ascending value (the agreed order): the
        common own rows go to a bucket file of the spill, in that order."""
        self.own_values.flush()
        self.peer_values.flush()
        rows = self.spill.buckets(1, {"row": np.int64}) if self.mode == Mode.INTERSECTION else None
        digest = hashlib.sha256()
        count = 0
        for b in range(self.own_values.count):
            own = self.own_values.read(b)
            self.own_values.drop(b)
            peer = _values(self.peer_values.read(b))
            self.peer_values.drop(b)
            own_values = _values(own)
            own_order = setops.sort_order(own_values)
            hits = setops.match_sorted(own_values[own_order], peer[setops.sort_order(peer)])
            common = own_order[hits]
            digest.update(setops.values_to_bytes(own_values[common]))
            count += len(common)
            if rows is not None:
                rows.add(0, {"row": own["row"][common]})
        if rows is not None:
            rows.flush()
        return count, digest.digest(), rows

    def _maybe_finish(self) -> None:
        if self.state != "exchanging points" and self.own_done is None:
            return
        if self.own_done is None:
            if not (self.own.done and self.in_double.complete and self.peer_next_return >= self.peer_chunks
                    and self.in_blinded.complete):
                return
            self.count, digest, self.rows = self._intersect()
            self.own_done = Done(self.session_id, self.count, digest)
            self.state = "confirming"
            self.send(self.peer, self.own_done)
        if self.peer_done is not None and not self.finished:
            if (self.peer_done.count, self.peer_done.digest) != (self.own_done.count, self.own_done.digest):
                raise ConsistencyError(f"session {self.session_id}: {self.peer} found {self.peer_done.count} common "
                                       f"IDs, {self.me} found {self.own_done.count} (or the values differ)")
            sizes = {self.me: self.n_own, self.peer: self.n_peer}
            # the result owns the spill from here: its rows stay on disk until read, and go with it
            self.result = PsiResult(party=self.me, session_id=self.session_id, mode=self.mode, size=self.count,
                                    set_sizes=sizes, rows=self.rows, id_source=self.ids,
                                    canonicalization=self.canon, spill=self.spill)
            self.spill = None
            self.finished = True

    def _fail(self, exc: BaseException) -> None:
        if self.spill is not None:   # first: the abort that follows ends the stream, and the session with it
            self.spill.close()
            self.spill = None
        super()._fail(exc)
