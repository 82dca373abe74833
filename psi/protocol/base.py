"""The event loop every party runs, and the bulk-stream helpers the 2-party and N-party protocols share.

A party is single-threaded: one loop takes events from its inbox -- peer messages, and completions of the
compute tasks it submitted to the :class:`~psi.core.engine.Engine` -- and reacts. The heavy work runs in the
engine (other processes), so the loop keeps receiving, forwarding and sending while chunks are computed.
Every incoming message is checked: session id, message type for the current state, stage, chunk index
(consecutive from 0), item count (full chunks except the last) and byte length. Points are validated by
the core when they are blinded.
"""
from __future__ import annotations

import logging
import queue
import secrets
from collections import deque
from concurrent.futures import Future, InvalidStateError
from typing import Callable, Optional

import numpy as np

from psi.config import Progress
from psi.core.engine import Engine
from psi.core.spill import TEXT, Spill, bucket_bits, bucket_count, leading_bits
from psi.error_ids import internal_error_detail
from psi.errors import (InvalidPoint, MalformedMessage, OutOfOrder, PeerError, PsiError, PsiInputError,
                        SessionTimeout, TooLarge, WrongSession, clip)
from psi.protocol.link import EOF, Link
from psi.protocol.messages import Abort, Chunk, Message, Stage, WIDTH

log = logging.getLogger("psi")

STAGE_LABEL = {
    Stage.BLINDED: "blinded points", Stage.DOUBLE: "double-blinded values", Stage.QUERY: "OPRF queries",
    Stage.REPLY: "OPRF replies", Stage.OKVS: "OKVS cells", Stage.ALIGN: "alignment tags", Stage.KEY: "key",
}


def peer_safe_reason(exc: BaseException, me: str) -> str:
    """What we tell peers when we abort: never our IDs (input errors stay local), never a traceback.

    An exception psi did not raise on purpose may hold anything (a path, an ID): the peer gets an error id,
    and this party's log the exception under the same id (:mod:`psi.error_ids`).
    """
    if isinstance(exc, PsiInputError):
        return f"{me} aborted: its own input is invalid (details are reported to {me} only)"
    if isinstance(exc, PeerError):
        return f"{me} aborted because a peer failed: {exc}"
    if isinstance(exc, PsiError):
        return f"{me} aborted: {exc}"
    return f"{me} aborted: {internal_error_detail(exc, me, 'in a PSI session', log)}"


class Party:
    """Base class: the loop, task submission, message routing and failure handling."""

    def __init__(self, *, me: str, session_id: str, links: dict[str, Link], inbox: queue.Queue,
                 engine: Engine, progress: Optional[Progress], timeout: float):
        self.me = me
        self.session_id = session_id
        self.links = links
        self.inbox = inbox
        self.engine = engine
        self.progress = progress
        self.timeout = timeout
        self.finished = False
        self.result = None
        self._futures: set[Future] = set()

    # -------------------------------------------------------------- compute tasks
    def submit(self, fut: Future, on_result: Callable) -> None:
        self._futures.add(fut)
        fut.add_done_callback(lambda f: self.inbox.put((None, lambda: self._completed(f, on_result))))

    def _completed(self, fut: Future, on_result: Callable) -> None:
        self._futures.discard(fut)
        if not fut.cancelled():
            on_result(fut.result())   # a task's exception is raised here, in the loop

    # -------------------------------------------------------------- loop
    def start(self) -> None:
        raise NotImplementedError

    def handle(self, peer: str, msg: Message) -> None:
        raise NotImplementedError

    def send(self, peer: str, msg: Message) -> None:
        self.links[peer].send(msg)

    def peer_finished(self, peer: str) -> bool:
        """True once ``peer`` has sent its last message (closing its stream is then expected)."""
        return False

    def report(self, stage: str, done: int, total: int) -> None:
        if self.progress is not None:
            self.progress(stage, done, total)

    def run(self):
        try:
            self.start()
            while not self.finished:
                try:
                    peer, item = self.inbox.get(timeout=self.timeout)
                except queue.Empty:
                    raise SessionTimeout(f"session {self.session_id}: no progress at {self.me} for "
                                         f"{self.timeout:g} s") from None
                if peer is None:
                    item()
                elif item is EOF:
                    if peer in self.links and not self.peer_finished(peer):
                        raise PeerError(f"session {self.session_id}: {peer} closed the connection before the "
                                        "session finished", peer, "UNAVAILABLE")
                elif isinstance(item, BaseException):
                    raise item
                else:
                    self._route(peer, item)
            for link in self.links.values():
                link.close()
            return self.result
        except BaseException as exc:
            self._fail(exc)
            raise

    def _route(self, peer: str, msg: Message) -> None:
        if isinstance(msg, Abort):
            raise PeerError(f"session {self.session_id}: {peer} aborted [{msg.code}]: {msg.reason}", peer,
                            msg.code or "ABORTED")
        if msg.session_id != self.session_id:
            raise WrongSession(f"{type(msg).__name__} from {peer} names session {msg.session_id!r}, but this "
                               f"stream belongs to session {self.session_id!r}")
        self.handle(peer, msg)

    def _fail(self, exc: BaseException) -> None:
        for fut in list(self._futures):
            fut.cancel()
        self._futures.clear()
        code = getattr(exc, "grpc_code", "INTERNAL")
        reason = peer_safe_reason(exc, self.me)
        for name, link in self.links.items():
            if isinstance(exc, PeerError) and exc.peer == name:
                link.close()
                continue
            try:
                link.abort(self.session_id, code, reason)
            except Exception:  # the link may already be gone
                log.debug("abort to %s failed", name, exc_info=True)

    def unexpected(self, peer: str, msg: Message, state: str) -> OutOfOrder:
        what = type(msg).__name__
        if isinstance(msg, Chunk):
            what = f"{STAGE_LABEL.get(msg.stage, msg.stage)} chunk {msg.index}"
        return OutOfOrder(f"session {self.session_id}: {what} from {peer} is not allowed now ({state})")


class InStream:
    """Validates one incoming bulk stream: consecutive chunk indices, exact counts and byte lengths."""

    def __init__(self, session_id: str, peer: str, stage: Stage, total: int, chunk_size: int,
                 width: Optional[int] = None):
        self.session_id = session_id
        self.peer = peer
        self.stage = stage
        self.total = total
        self.chunk_size = chunk_size
        self.width = WIDTH[stage] if width is None else width
        self.next_index = 0
        self.received = 0

    @property
    def label(self) -> str:
        return f"session {self.session_id}: {STAGE_LABEL[self.stage]} from {self.peer}"

    @property
    def complete(self) -> bool:
        return self.received >= self.total

    def accept(self, index: int, count: int, nbytes: Optional[int]) -> int:
        """Check one chunk's header; return the item offset of its first item."""
        if self.complete:
            raise OutOfOrder(f"{self.label}: chunk {index} arrived after all {self.total} items")
        if index != self.next_index:
            raise OutOfOrder(f"{self.label}: chunk {index} arrived, expected chunk {self.next_index}")
        expected = min(self.chunk_size, self.total - self.received)
        if count != expected:
            raise MalformedMessage(f"{self.label}: chunk {index} has {count} items, expected {expected}")
        if nbytes is not None and nbytes != count * self.width:
            raise MalformedMessage(f"{self.label}: chunk {index} is {nbytes} bytes, expected {count} items x "
                                   f"{self.width} bytes = {count * self.width}")
        offset = self.received
        self.received += count
        self.next_index += 1
        return offset

    def point_error(self, exc: InvalidPoint, index: int, offset: int) -> InvalidPoint:
        where = f"point {exc.index} (item {offset + exc.index})" if exc.index >= 0 else "a point"
        return InvalidPoint(f"{self.label}: chunk {index}, {where}: {exc}", exc.index)


def peer_sized_array(shape: tuple[int, ...], dtype, what: str, peer: str, session_id: str) -> np.ndarray:
    """np.zeros for a buffer whose size a peer declared: an impossible size is a clear protocol error
    (RESOURCE_EXHAUSTED, naming the size) instead of a MemoryError deep in a session."""
    try:
        return np.zeros(shape, dtype=dtype)
    except (MemoryError, ValueError):
        nbytes = int(np.prod(shape, dtype=object)) * np.dtype(dtype).itemsize
        raise TooLarge(f"session {session_id}: {peer} declared {shape[0]:,} {what}; this party cannot allocate "
                       f"the {nbytes:,} bytes that needs") from None


def chunk_count(total: int, chunk_size: int) -> int:
    return (total + chunk_size - 1) // chunk_size


class ShuffledIds:
    """This party's IDs in a uniformly random order, built on disk in bounded memory.

    One pass over the IDs sends each (row, ID) to a bucket drawn at random (OS-seeded generator) in a
    :class:`~psi.core.spill.Spill`; :meth:`take` then reads the buckets one after another, each shuffled with
    :func:`secure_permutation`. A uniformly random bucket per item followed by a uniform shuffle of each bucket is a
    uniformly random permutation of all items, and only one bucket (about ``BUCKET_ITEMS`` IDs) is in memory at a
    time. With a single bucket (up to ``BUCKET_ITEMS`` IDs) the order is exactly ``secure_permutation(n)``.
    """

    def __init__(self, ids, spill: Spill, permutation: Callable[[int], np.ndarray],
                 per_bucket: Optional[int] = None):
        self.total = len(ids)
        self.permutation = permutation
        count = bucket_count(self.total, per_bucket)
        self.buckets = spill.buckets(count, {"row": np.int64, "id": TEXT})
        rng = np.random.Generator(np.random.PCG64(secrets.randbits(128)))
        for start, values in ids.chunks(CHECK_CHUNK):
            rows = np.arange(start, start + len(values), dtype=np.int64)
            which = rng.integers(0, count, size=len(values)) if count > 1 else 0
            self.buckets.add(which, {"row": rows, "id": list(values)})
        self.buckets.flush()
        self._next_bucket = 0
        self._rows = np.zeros(0, dtype=np.int64)
        self._values: list = []
        self._at = 0

    def __len__(self) -> int:
        return self.total

    def take(self, size: int) -> tuple[np.ndarray, list]:
        """The next ``size`` (row, ID) pairs of the random order (fewer at the end)."""
        rows, values = [], []
        wanted = size
        while wanted > 0:
            if self._at >= len(self._rows):
                if self._next_bucket >= self.buckets.count:
                    break
                self._load(self._next_bucket)
                self._next_bucket += 1
                continue
            end = min(len(self._rows), self._at + wanted)
            rows.append(self._rows[self._at:end])
            values += self._values[self._at:end]
            wanted -= end - self._at
            self._at = end
        return (np.concatenate(rows) if rows else np.zeros(0, dtype=np.int64)), values

    def _load(self, b: int) -> None:
        frame = self.buckets.read(b)
        self.buckets.drop(b)
        order = np.asarray(self.permutation(len(frame["row"])), dtype=np.int64)
        self._rows = frame["row"][order]
        self._values = [frame["id"][i] for i in order.tolist()]
        self._at = 0


class OwnStream:
    """Hashes and blinds this party's IDs chunk by chunk in a random row order, in parallel, and hands the
    results to ``emit(index, offset, data)`` strictly in order. At most ``window`` chunks are computing at
    once, so tasks for the peer's chunks never queue behind all of ours. ``task(ids, rows)``, if given,
    replaces hash-and-blind as the per-chunk computation (a Future of ``out_bytes`` per ID).

    The order is ``order`` (row numbers, with ``ids.gather``) or, for a set that need not fit in memory, a
    :class:`ShuffledIds` given as ``order``. With ``keep_rows`` the rows of every emitted chunk stay in
    :attr:`rows_of` until the caller pops them (when the peer returns that chunk).

    Flow control: with ``max_outstanding``, no new chunk is started while that many emitted chunks have not
    come back from the peer (see :meth:`acked`). A party that is faster than its peer therefore cannot pile
    up gigabytes of unprocessed points at the peer; it waits for it, which on a shared machine also leaves
    the CPU to the peer.
    """

    def __init__(self, party: Party, ids, order, salt: bytes, canon, scalar: bytes,
                 chunk_size: int, out_bytes: int, emit: Callable[[int, int, bytes], None], label: str,
                 window: int, max_outstanding: Optional[int] = None,
                 task: Optional[Callable[[list, list], Future]] = None, keep_rows: bool = False):
        self.party = party
        self.task = task
        self.ids = ids
        self.order = order
        self.salt = salt
        self.canon = canon
        self.scalar = scalar
        self.chunk_size = chunk_size
        self.out_bytes = out_bytes
        self.emit = emit
        self.label = label
        self.window = max(1, window)
        self.total = len(order)
        self.chunks = chunk_count(self.total, chunk_size)
        self.next_submit = 0
        self.next_emit = 0
        self.ready: dict[int, bytes] = {}
        self.inflight = 0
        self.max_outstanding = max_outstanding
        self.acknowledged = 0
        self.keep_rows = keep_rows
        self.rows_of: dict[int, np.ndarray] = {}

    @property
    def done(self) -> bool:
        return self.next_emit >= self.chunks

    def acked(self, chunks: int) -> None:
        """The peer has returned our first ``chunks`` chunks."""
        self.acknowledged = chunks
        self.pump()

    def _rows_and_ids(self, k: int) -> tuple[np.ndarray, list]:
        if isinstance(self.order, ShuffledIds):   # chunks are taken in order, k = 0, 1, ...
            return self.order.take(self.chunk_size)
        rows = self.order[k * self.chunk_size:(k + 1) * self.chunk_size]
        return rows, self.ids.gather(rows)

    def pump(self) -> None:
        while self.inflight < self.window and self.next_submit < self.chunks and (
                self.max_outstanding is None or self.next_submit - self.acknowledged < self.max_outstanding):
            k = self.next_submit
            self.next_submit += 1
            rows, values = self._rows_and_ids(k)
            if self.keep_rows:
                self.rows_of[k] = np.asarray(rows, dtype=np.int64)
            if self.task is not None:
                fut = self.task(values, rows.tolist())
            else:
                fut = self.party.engine.hash_and_blind(values, self.salt, self.canon, self.scalar,
                                                       rows.tolist(), self.out_bytes)
            self.inflight += 1
            self.party.submit(fut, lambda data, k=k: self._ready(k, data))

    def _ready(self, k: int, data: bytes) -> None:
        self.inflight -= 1
        self.ready[k] = data
        while self.next_emit in self.ready:
            j = self.next_emit
            chunk = self.ready.pop(j)
            offset = j * self.chunk_size
            self.next_emit += 1
            self.emit(j, offset, chunk)
            self.party.report(self.label, min(self.next_emit * self.chunk_size, self.total), self.total)
        self.pump()


#: IDs per task of the input check (canonicalize and hash only: cheap next to blinding)
CHECK_CHUNK = 1 << 16


def check_own_ids(engine, ids, canon) -> None:
    """Refuse this party's own invalid or duplicate IDs before any of its points leaves it.

    Checked at the end of the stream instead, a duplicate showed the peer two equal blinded points, and the
    chunks already exchanged let the peer match them against its own set: it named the duplicated ID and the
    aborted session's intersection. Now an invalid input aborts the session before the first point.
    Raises PsiInputError (null, empty, not a string; naming the row) or DuplicateIdError (naming the rows).

    Memory stays bounded: the 64-bit keys (a hash of each canonical ID) go to buckets on disk by their leading
    bits (:mod:`psi.core.spill`, under the source's ``spill_dir``), and each bucket is searched for equal keys alone.
    """
    from psi.core.hashing import canonical_id
    from psi.core.setops import duplicate_candidates
    from psi.errors import DuplicateIdError
    bits = bucket_bits(len(ids))
    with Spill(getattr(ids, "spill_dir", None), prefix="psi-check-") as spill:
        keys = spill.buckets(1 << bits, {"key": np.uint64, "row": np.int64})
        pending: deque = deque()   # at most 2 tasks per worker in flight: the IDs sent to them stay few in memory

        def collect() -> None:
            rows, fut = pending.popleft()
            data = np.frombuffer(fut.result(), dtype="<u8").astype(np.uint64)
            keys.add(leading_bits(data, bits), {"key": data, "row": rows})

        for start, values in ids.chunks(CHECK_CHUNK):
            rows = np.arange(start, start + len(values), dtype=np.int64)
            pending.append((rows, engine.id_keys(values, canon, rows.tolist())))
            if len(pending) >= 2 * engine.parallelism:
                collect()
        while pending:
            collect()
        keys.flush()
        for b in range(keys.count):
            frame = keys.read(b)
            keys.drop(b)
            for i, j in duplicate_candidates(frame["key"]):
                ri, rj = sorted((int(frame["row"][i]), int(frame["row"][j])))
                a, c = ids.gather(np.array([ri, rj], dtype=np.int64))
                ca, cc = canonical_id(a, canon, ri), canonical_id(c, canon, rj)
                if ca == cc:
                    raw = f" (as {clip(repr(a), 80)} and {clip(repr(c), 80)})" if a != c else ""
                    raise DuplicateIdError(f"duplicate ID {clip(repr(ca), 80)} at rows {ri} and {rj}{raw}: IDs must "
                                           "be unique after canonicalization")


def point_errors(fut, stream: InStream, index: int, offset: int):
    """A future whose InvalidPoint names the session, peer, stage, chunk and item."""
    out: Future = Future()

    def relay(f) -> None:
        if f.cancelled() or out.cancelled():
            out.cancel()
            return
        exc = f.exception()
        try:
            if isinstance(exc, InvalidPoint):
                out.set_exception(stream.point_error(exc, index, offset))
            elif exc is not None:
                out.set_exception(exc)
            else:
                out.set_result(f.result())
        except InvalidStateError:  # cancelled meanwhile (the session was aborted)
            pass

    fut.add_done_callback(relay)
    out.add_done_callback(lambda o: fut.cancel() if o.cancelled() else None)
    return out
