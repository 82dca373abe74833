"""N-party ECDH PSI (the active party A plus passives P1..Pm, m >= 2) over a star: passives talk only to A.

Keys: A holds s. The passives share t, which A never learns: P1 (the *comparer*) draws t and sends it to
every other passive sealed end-to-end (X25519 + HKDF + ChaCha20-Poly1305, see :mod:`psi.core.seal`); A
only relays ciphertext. P2 is the *helper*.

1. A -> Pj ``Hello``; Pj -> A ``HelloReply`` (|Yj|, ephemeral key); A -> all ``Roster`` (sizes, keys).
2. P1 -> A -> Pj ``Sealed(KEY)``: t.
3. Pj -> A ``PASSIVE_T``: H(y)^t in Pj's random order. A applies s, shuffles with a permutation rho_j it
   keeps, and sends ``PASSIVE_TS`` (list = Pj, 16-byte values) to P1.
4. A -> P2 ``ACTIVE_S``: H(x)^s in A's random order. P2 applies t and sends ``Sealed(ACTIVE_ST)`` to P1,
   relayed by A, which therefore never sees H(x)^(st) and cannot compare its own IDs with any passive's.
5. P1 intersects A's list and the m shuffled passive lists (all under the key st) and sends ``Count`` and,
   in intersection mode, ``MATCH``: for each common item (ascending value) its index in A's list and in
   each shuffled list. P1 cannot link any value to an ID or row: it does not know s, A's order is random
   and the passive lists were shuffled by A.
6. A maps the indices to its rows (its order) and to each passive's send positions (rho_j), and sends each
   Pj ``Count`` and ``ALIGN`` (its positions, in the agreed order). Pj maps them to rows and confirms with
   ``Done``.
"""
from __future__ import annotations

import numpy as np

from psi.config import PsiResult, check_party_name
from psi.core import curve25519, setops
from psi.core.hashing import Canonicalization
from psi.core.seal import EphemeralKey
from psi.errors import ConsistencyError, MalformedMessage
from psi.protocol.base import InStream, OwnStream, Party, chunk_count, point_errors
from psi.protocol.ids import IdSource
from psi.protocol.messages import Chunk, Count, Done, Hello, HelloReply, Mode, Roster, Sealed, Stage
from psi.protocol.two_party import MAX_SET_SIZE, secure_permutation

TAG = 16   # ChaCha20-Poly1305 tag bytes


def _pack_u64(a: np.ndarray) -> bytes:
    return np.ascontiguousarray(a, dtype="<u8").tobytes()


def _unpack_u64(data: bytes) -> np.ndarray:
    return np.frombuffer(data, dtype="<u8").astype(np.int64)


class MultiActive(Party):
    def __init__(self, *, hello_template: Hello, ids: IdSource, **kw):
        super().__init__(**kw)
        self.template = hello_template
        self.ids = ids
        self.mode = hello_template.mode
        self.canon = Canonicalization(hello_template.strip, hello_template.lowercase)
        self.chunk = hello_template.chunk_size
        self.passives = list(hello_template.parties[1:])
        self.comparer, self.helper = self.passives[0], self.passives[1]
        self.n_own = len(ids)
        self.sizes: dict[str, int] = {self.me: self.n_own}
        self.keys: dict[str, bytes] = {}
        self.state = "hello"
        self.done_from: dict[str, Done] = {}

    def start(self) -> None:
        from dataclasses import replace
        for p in self.passives:
            self.send(p, replace(self.template, recipient=p))
        self.state = "waiting for hello replies"

    def peer_finished(self, peer: str) -> bool:
        return peer in self.done_from

    def handle(self, peer: str, msg) -> None:
        if isinstance(msg, HelloReply) and self.state.startswith("waiting for hello") and peer not in self.keys:
            if not 0 <= msg.size <= MAX_SET_SIZE:
                raise MalformedMessage(f"session {self.session_id}: {peer} reports an invalid set size {msg.size}")
            if len(msg.ephemeral_key) != 32:
                raise MalformedMessage(f"session {self.session_id}: {peer}'s ephemeral key is "
                                       f"{len(msg.ephemeral_key)} bytes, expected 32")
            self.sizes[peer] = msg.size
            self.keys[peer] = msg.ephemeral_key
            if len(self.keys) == len(self.passives):
                self._begin()
        elif isinstance(msg, Chunk) and self.state == "running" and msg.stage == Stage.PASSIVE_T:
            self._on_passive_t(peer, msg)
        elif isinstance(msg, Sealed) and self.state == "running":
            self._relay(peer, msg)
        elif isinstance(msg, Count) and self.state == "running" and peer == self.comparer and self._all_sent():
            self._on_count(msg)
        elif isinstance(msg, Chunk) and self.state == "receiving matches" and msg.stage == Stage.MATCH \
                and peer == self.comparer:
            self._on_match(msg)
        elif isinstance(msg, Done) and self.state == "confirming" and peer not in self.done_from:
            if msg.count != self.count:
                raise ConsistencyError(f"session {self.session_id}: {peer} confirms {msg.count} common IDs, "
                                       f"expected {self.count}")
            self.done_from[peer] = msg
            if len(self.done_from) == len(self.passives):
                self._finish()
        else:
            raise self.unexpected(peer, msg, self.state)

    # ------------------------------------------------------------------ running
    def _begin(self) -> None:
        self.state = "running"
        for p in self.passives:
            self.send(p, Roster(self.session_id, dict(self.sizes), dict(self.keys)))
        self.scalar = curve25519.new_scalar()
        self.order = secure_permutation(self.n_own)
        self.in_t = {p: InStream(self.session_id, p, Stage.PASSIVE_T, self.sizes[p], self.chunk) for p in self.passives}
        self.w = {p: np.zeros((self.sizes[p], 16), dtype=np.uint8) for p in self.passives}
        self.w_done = {p: 0 for p in self.passives}
        self.rho: dict[str, np.ndarray] = {}
        self.ts_sent: set[str] = set()
        # relays: the key from the comparer to each other passive; A's list from the helper to the comparer
        self.key_relayed: set[str] = set()
        self.in_st = InStream(self.session_id, self.helper, Stage.ACTIVE_ST, self.n_own, self.chunk,
                              width=16)
        self.own = OwnStream(self, self.ids, self.order, self.template.salt, self.canon, self.scalar, self.chunk,
                             32, self._send_own, "blind own IDs", 2 * self.engine.parallelism)
        self.own.pump()
        for p in self.passives:
            if self.sizes[p] == 0:
                self._send_shuffled(p)

    def _send_own(self, index: int, offset: int, data: bytes) -> None:
        self.send(self.helper, Chunk(self.session_id, Stage.ACTIVE_S, index, len(data) // 32, data))
        if self.own.done:
            self.own.check_duplicates(self.canon)
            self.own.keys = None

    def _on_passive_t(self, peer: str, msg: Chunk) -> None:
        stream = self.in_t[peer]
        offset = stream.accept(msg.index, msg.count, len(msg.data))
        fut = self.engine.blind(self.scalar, msg.data, 16, validate=True)

        def done(data: bytes, peer=peer, offset=offset) -> None:
            n = len(data) // 16
            self.w[peer][offset:offset + n] = np.frombuffer(data, dtype=np.uint8).reshape(n, 16)
            self.w_done[peer] += n
            self.report(f"blind {peer}'s points", self.w_done[peer], self.sizes[peer])
            if self.w_done[peer] == self.sizes[peer]:
                self._send_shuffled(peer)

        self.submit(point_errors(fut, stream, msg.index, offset), done)

    def _send_shuffled(self, peer: str) -> None:
        rho = secure_permutation(self.sizes[peer])
        self.rho[peer] = rho
        shuffled = self.w.pop(peer)[rho]
        for j in range(chunk_count(len(shuffled), self.chunk)):
            part = shuffled[j * self.chunk:(j + 1) * self.chunk]
            self.send(self.comparer, Chunk(self.session_id, Stage.PASSIVE_TS, j, len(part), part.tobytes(), list=peer))
        self.ts_sent.add(peer)

    def _relay(self, peer: str, msg: Sealed) -> None:
        if msg.sender != peer:
            raise MalformedMessage(f"session {self.session_id}: sealed message from {peer} claims sender {msg.sender!r}")
        if msg.stage == Stage.KEY and peer == self.comparer and msg.recipient in self.passives \
                and msg.recipient != self.comparer and msg.recipient not in self.key_relayed:
            if (msg.index, msg.count, len(msg.ciphertext)) != (0, 1, 32 + TAG):
                raise MalformedMessage(f"session {self.session_id}: sealed key for {msg.recipient} from {peer} "
                                       f"is malformed (chunk {msg.index}, {msg.count} items, {len(msg.ciphertext)} bytes)")
            self.key_relayed.add(msg.recipient)
        elif msg.stage == Stage.ACTIVE_ST and peer == self.helper and msg.recipient == self.comparer:
            self.in_st.accept(msg.index, msg.count, len(msg.ciphertext) - TAG)
        else:
            raise self.unexpected(peer, msg, f"sealed {Stage(msg.stage).name} from {peer} to {msg.recipient!r} "
                                             "is not relayed")
        self.send(msg.recipient, msg)

    def _all_sent(self) -> bool:
        return self.own.done and len(self.ts_sent) == len(self.passives) and self.in_st.complete

    def _on_count(self, msg: Count) -> None:
        limit = min(self.sizes.values())
        if not 0 <= msg.count <= limit:
            raise MalformedMessage(f"session {self.session_id}: comparer reports {msg.count} common IDs, more than "
                                   f"the smallest set ({limit})")
        self.count = msg.count
        if self.mode == Mode.INTERSECTION and msg.count > 0:
            width = 8 * (1 + len(self.passives))
            self.in_match = InStream(self.session_id, self.comparer, Stage.MATCH, msg.count,
                                     max(1, min(self.chunk, (2 << 20) // width)), width=width)
            self.match = np.zeros((msg.count, 1 + len(self.passives)), dtype=np.int64)
            self.state = "receiving matches"
        else:
            self.match = np.zeros((0, 1 + len(self.passives)), dtype=np.int64)
            self._align()

    def _on_match(self, msg: Chunk) -> None:
        offset = self.in_match.accept(msg.index, msg.count, len(msg.data))
        part = _unpack_u64(msg.data).reshape(msg.count, -1)
        limits = np.array([self.n_own] + [self.sizes[p] for p in self.passives])
        if np.any(part >= limits) or np.any(part < 0):
            raise MalformedMessage(f"session {self.session_id}: match chunk {msg.index} from {self.comparer} has an "
                                   "index outside its list")
        self.match[offset:offset + msg.count] = part
        if self.in_match.complete:
            self._align()

    def _align(self) -> None:
        self.state = "confirming"
        intersection = self.mode == Mode.INTERSECTION
        self.rows = self.order[self.match[:, 0]].astype(np.int64) if intersection else None
        for j, p in enumerate(self.passives, start=1):
            self.send(p, Count(self.session_id, self.count))
            if intersection and self.count:
                positions = self.rho[p][self.match[:, j]]
                for k in range(chunk_count(self.count, self.chunk)):
                    part = positions[k * self.chunk:(k + 1) * self.chunk]
                    self.send(p, Chunk(self.session_id, Stage.ALIGN, k, len(part), _pack_u64(part)))

    def _finish(self) -> None:
        self.result = PsiResult(party=self.me, session_id=self.session_id, mode=self.mode, size=self.count,
                                set_sizes=self.sizes, rows=self.rows, id_source=self.ids, canonicalization=self.canon)
        self.finished = True


class MultiPassive(Party):
    def __init__(self, *, hello: Hello, ids: IdSource, **kw):
        super().__init__(**kw)
        self.hello = hello
        self.ids = ids
        self.mode = hello.mode
        self.canon = Canonicalization(hello.strip, hello.lowercase)
        self.chunk = hello.chunk_size
        self.active = hello.parties[0]
        self.passives = list(hello.parties[1:])
        self.comparer, self.helper = self.passives[0], self.passives[1]
        self.role = "comparer" if self.me == self.comparer else "helper" if self.me == self.helper else "member"
        self.n_own = len(ids)
        self.state = "waiting for the roster"
        self.t: bytes | None = None
        self.own: OwnStream | None = None
        self.pending_s: list[tuple[Chunk, int]] = []

    def start(self) -> None:
        self.eph = EphemeralKey()
        self.send(self.active, HelloReply(self.session_id, self.n_own, self.eph.public))

    def handle(self, peer: str, msg) -> None:
        if peer != self.active:
            raise self.unexpected(peer, msg, "passives only talk to the active party")
        if isinstance(msg, Roster) and self.state == "waiting for the roster":
            self._on_roster(msg)
        elif isinstance(msg, Sealed) and self.state == "running" and msg.stage == Stage.KEY \
                and self.role != "comparer" and self.t is None:
            self._on_key(msg)
        elif isinstance(msg, Chunk) and self.state == "running" and msg.stage == Stage.ACTIVE_S \
                and self.role == "helper":
            self._on_active_s(msg)
        elif isinstance(msg, Chunk) and self.state == "running" and msg.stage == Stage.PASSIVE_TS \
                and self.role == "comparer":
            self._on_ts(msg)
        elif isinstance(msg, Sealed) and self.state == "running" and msg.stage == Stage.ACTIVE_ST \
                and self.role == "comparer":
            self._on_st(msg)
        elif isinstance(msg, Count) and self.state == "running" and self._own_sent():
            self._on_count(msg)
        elif isinstance(msg, Chunk) and self.state == "aligning" and msg.stage == Stage.ALIGN:
            self._on_align(msg)
        else:
            raise self.unexpected(peer, msg, self.state)

    def _own_sent(self) -> bool:
        if self.own is None or not self.own.done:
            return False
        if self.role == "comparer":
            return self.compared
        if self.role == "helper":
            return self.in_s.complete and self.st_next == self.in_s.next_index
        return True

    # ------------------------------------------------------------------ setup
    def _on_roster(self, msg: Roster) -> None:
        names = [self.active] + self.passives
        if set(msg.sizes) != set(names) or set(msg.keys) != set(self.passives):
            raise MalformedMessage(f"session {self.session_id}: roster names {sorted(msg.sizes)} / {sorted(msg.keys)} "
                                   f"do not match the parties {names}")
        if msg.sizes[self.me] != self.n_own or msg.keys[self.me] != self.eph.public:
            raise MalformedMessage(f"session {self.session_id}: roster misstates {self.me}'s size or key")
        if msg.sizes[self.active] != self.hello.size:
            raise MalformedMessage(f"session {self.session_id}: roster size of {self.active} differs from its hello")
        for p, n in msg.sizes.items():
            if not 0 <= n <= MAX_SET_SIZE:
                raise MalformedMessage(f"session {self.session_id}: roster reports an invalid size {n} for {p}")
        self.sizes = dict(msg.sizes)
        self.state = "running"
        if self.role == "comparer":
            self.t = curve25519.new_scalar()
            self.channels = {p: self.eph.channel(self.me, p, msg.keys[p], self.session_id)
                             for p in self.passives if p != self.me}
            for p, ch in self.channels.items():
                self.send(self.active, Sealed(self.session_id, Stage.KEY, self.me, p, 0, 1, ch.seal(Stage.KEY, 0, 1, self.t)))
            self.in_ts = {p: InStream(self.session_id, self.active, Stage.PASSIVE_TS, self.sizes[p], self.chunk, list_name=p)
                          for p in self.passives}
            self.ts = {p: np.zeros((self.sizes[p], 2), dtype=np.uint64) for p in self.passives}
            self.in_st = InStream(self.session_id, self.helper, Stage.ACTIVE_ST, self.sizes[self.active], self.chunk, width=16)
            self.st = np.zeros((self.sizes[self.active], 2), dtype=np.uint64)
            self.compared = False
            self._start_own()
            self._maybe_compare()
        else:
            self.channel = self.eph.channel(self.me, self.comparer, msg.keys[self.comparer], self.session_id)
            if self.role == "helper":
                self.in_s = InStream(self.session_id, self.active, Stage.ACTIVE_S, self.sizes[self.active], self.chunk)
                self.st_ready: dict[int, bytes] = {}
                self.st_next = 0

    def _on_key(self, msg: Sealed) -> None:
        if (msg.sender, msg.recipient, msg.index, msg.count) != (self.comparer, self.me, 0, 1):
            raise MalformedMessage(f"session {self.session_id}: sealed key names sender {msg.sender!r}, recipient "
                                   f"{msg.recipient!r}, chunk {msg.index}, count {msg.count}")
        t = self.channel.open(Stage.KEY, 0, 1, msg.ciphertext)
        if len(t) != 32:
            raise MalformedMessage(f"session {self.session_id}: the passives' key from {self.comparer} is {len(t)} bytes")
        self.t = t
        self._start_own()
        for chunk, offset in self.pending_s:
            self._blind_s(chunk, offset)
        self.pending_s.clear()

    def _start_own(self) -> None:
        self.order = secure_permutation(self.n_own)
        self.own = OwnStream(self, self.ids, self.order, self.hello.salt, self.canon, self.t, self.chunk, 32,
                             self._send_own, "blind own IDs", 2 * self.engine.parallelism)
        self.own.pump()

    def _send_own(self, index: int, offset: int, data: bytes) -> None:
        self.send(self.active, Chunk(self.session_id, Stage.PASSIVE_T, index, len(data) // 32, data))
        if self.own.done:
            self.own.check_duplicates(self.canon)
            self.own.keys = None

    # ------------------------------------------------------------------ helper: A's list, t applied, sealed to P1
    def _on_active_s(self, msg: Chunk) -> None:
        offset = self.in_s.accept(msg.index, msg.count, len(msg.data))
        if self.t is None:
            self.pending_s.append((msg, offset))
        else:
            self._blind_s(msg, offset)

    def _blind_s(self, msg: Chunk, offset: int) -> None:
        fut = self.engine.blind(self.t, msg.data, 16, validate=True)

        def done(data: bytes, index=msg.index) -> None:
            self.st_ready[index] = data
            while self.st_next in self.st_ready:
                j = self.st_next
                out = self.st_ready.pop(j)
                n = len(out) // 16
                ct = self.channel.seal(Stage.ACTIVE_ST, j, n, out)
                self.send(self.active, Sealed(self.session_id, Stage.ACTIVE_ST, self.me, self.comparer, j, n, ct))
                self.st_next += 1
                self.report("blind active party's points", min(self.st_next * self.chunk, self.in_s.total),
                            self.in_s.total)

        self.submit(point_errors(fut, self.in_s, msg.index, offset), done)

    # ------------------------------------------------------------------ comparer
    def _on_ts(self, msg: Chunk) -> None:
        stream = self.in_ts.get(msg.list)
        if stream is None:
            raise MalformedMessage(f"session {self.session_id}: ts-blinded list {msg.list!r} is not a passive party")
        offset = stream.accept(msg.index, msg.count, len(msg.data))
        self.ts[msg.list][offset:offset + msg.count] = setops.values_from_bytes(msg.data)
        self._maybe_compare()

    def _on_st(self, msg: Sealed) -> None:
        if (msg.sender, msg.recipient) != (self.helper, self.me):
            raise MalformedMessage(f"session {self.session_id}: sealed values from {msg.sender!r} to "
                                   f"{msg.recipient!r} reached {self.me}")
        offset = self.in_st.accept(msg.index, msg.count, len(msg.ciphertext) - TAG)
        plain = self.channels[self.helper].open(Stage.ACTIVE_ST, msg.index, msg.count, msg.ciphertext)
        self.st[offset:offset + msg.count] = setops.values_from_bytes(plain)
        self._maybe_compare()

    def _maybe_compare(self) -> None:
        if self.compared or not self.in_st.complete or not all(s.complete for s in self.in_ts.values()):
            return
        lists = [self.st] + [self.ts[p] for p in self.passives]
        match = setops.match_many(lists)
        self.compared = True
        self.ts = self.st = None
        self.send(self.active, Count(self.session_id, len(match)))
        if self.mode == Mode.INTERSECTION and len(match):
            width = 8 * match.shape[1]
            per = max(1, min(self.chunk, (2 << 20) // width))
            for k in range(chunk_count(len(match), per)):
                part = match[k * per:(k + 1) * per]
                self.send(self.active, Chunk(self.session_id, Stage.MATCH, k, len(part), _pack_u64(part)))
        self.report("compare", 1, 1)

    # ------------------------------------------------------------------ everyone: result
    def _on_count(self, msg: Count) -> None:
        limit = min(self.sizes.values())
        if not 0 <= msg.count <= limit:
            raise MalformedMessage(f"session {self.session_id}: {self.active} reports {msg.count} common IDs, more "
                                   f"than the smallest set ({limit})")
        self.count = msg.count
        if self.mode == Mode.INTERSECTION and msg.count:
            self.in_align = InStream(self.session_id, self.active, Stage.ALIGN, msg.count, self.chunk)
            self.positions = np.zeros(msg.count, dtype=np.int64)
            self.state = "aligning"
        else:
            self.positions = np.zeros(0, dtype=np.int64)
            self._finish()

    def _on_align(self, msg: Chunk) -> None:
        offset = self.in_align.accept(msg.index, msg.count, len(msg.data))
        part = _unpack_u64(msg.data)
        if np.any(part >= self.n_own) or np.any(part < 0):
            raise MalformedMessage(f"session {self.session_id}: alignment chunk {msg.index} names a position outside "
                                   f"{self.me}'s {self.n_own} IDs")
        self.positions[offset:offset + msg.count] = part
        if self.in_align.complete:
            if len(np.unique(self.positions)) != len(self.positions):
                raise MalformedMessage(f"session {self.session_id}: alignment names a position twice")
            self._finish()

    def _finish(self) -> None:
        rows = self.order[self.positions].astype(np.int64) if self.mode == Mode.INTERSECTION else None
        self.send(self.active, Done(self.session_id, self.count))
        self.result = PsiResult(party=self.me, session_id=self.session_id, mode=self.mode, size=self.count,
                                set_sizes=self.sizes, rows=rows, id_source=self.ids, canonicalization=self.canon)
        self.finished = True


def check_parties(parties) -> None:
    if len(parties) != len(set(parties)):
        raise MalformedMessage(f"party names must be distinct: {list(parties)}")
    for p in parties:
        check_party_name(p)
