"""N-party PSI (the active party A plus passives P1..Pm, m >= 2) over a star: passives talk only to A.

Design: OPRF + oblivious key-value store (OKVS) + XOR zero-sharing, semi-honest, A colluding with no
passive. Nobody learns anything about the others' non-common IDs beyond the set sizes. The math of each
piece is in :mod:`psi.core.oprf`, :mod:`psi.core.okvs` and
:func:`psi.core.curve25519.inverse_scalar_pair`; docs/psi.md has the message table and who learns what.

1. A -> Pj ``Hello``; Pj -> A ``HelloReply`` (|Yj|, ephemeral key); A -> all ``Roster`` (sizes, keys).
   P1 draws the passives' key t and sends it to every other passive as ``Sealed(KEY)`` (end-to-end,
   :mod:`psi.core.seal`); A only relays it.
2. A -> every Pj ``QUERY``: X25519(a, H(x)) in A's random order. Pj -> A ``REPLY``: its OPRF key k_j
   applied, chunk by chunk in the order received. A removes a (a * a_inv = 1 mod l): F_j(x) =
   X25519(k_j, H(x)), and derives tag_j(x), mask_j(x).
3. Pj computes for its own y: tag_j(y), mask_j(y) and its zero-share s_j(y) (XOR over all passives = 0,
   or R(y) in cardinality mode), and sends ``Table`` + ``OKVS``: a table encoding tag_j(y) -> s_j(y) XOR
   mask_j(y). ``Table`` names the attempt whose public seed the table uses; encoding fails at attempt 0
   with probability below 2^-40 (:mod:`psi.core.okvs`), so the attempt is 0 except with negligible
   probability and says nothing about Pj's IDs; later attempts remain only as a fallback.
4. A decodes o_j(x) = Decode(T_j, tag_j(x)) XOR mask_j(x) for every x and j. Intersection mode: x is common
   iff XOR_j o_j(x) = 0. A -> Pj ``Count``, ``ALIGN`` (tag_j of each common x, ascending tag_1(x)) and
   ``Done`` (digest of the ordered common IDs); Pj maps tags to rows, checks the digest, answers ``Done``.
   Cardinality mode: XOR_j o_j(x) = R(x) exactly for common x; A and P1 count the matches between
   {XOR_j o_j(x)} and {R(y) : y in Y1} with the sorted DH exchange (``BLINDED``/``DOUBLE``, see
   :mod:`psi.protocol.sorted_exchange`); A -> Pj ``Count``; Pj -> A ``Done``.
"""
from __future__ import annotations

import hashlib
import os
from dataclasses import replace

import numpy as np

from psi.config import PsiResult, check_party_name
from psi.core import curve25519, okvs, setops
from psi.core.hashing import Canonicalization, canonical_id
from psi.core.oprf import okvs_seed
from psi.core.seal import EphemeralKey
from psi.errors import ConsistencyError, MalformedMessage
from psi.protocol.base import InStream, OwnStream, Party, check_own_ids, chunk_count, peer_sized_array, point_errors
from psi.protocol.ids import IdSource
from psi.protocol.messages import Chunk, Count, Done, Hello, HelloReply, Mode, Roster, Sealed, Stage, Table
from psi.protocol.sorted_exchange import SortedExchange
from psi.protocol.two_party import MAX_OUTSTANDING_BYTES, MAX_SET_SIZE, secure_permutation

SEAL_TAG = 16          # ChaCha20-Poly1305 tag bytes
HALF = 16              # tag, mask, share and OKVS cell widths
DIGEST_DST = b"vfl-psi-v2 common ids"


def ids_digest(session_id: str, salt: bytes, canonical_ids: list[str]) -> bytes:
    """SHA-256 over the session id, the salt and the common canonical IDs in the agreed order, each
    length-prefixed: every party computes it from its own rows, so equal digests confirm equal results."""
    h = hashlib.sha256(bytes([len(DIGEST_DST)]) + DIGEST_DST)
    for part in (session_id.encode(), salt):
        h.update(len(part).to_bytes(2, "big") + part)
    for c in canonical_ids:
        data = c.encode("utf-8")
        h.update(len(data).to_bytes(8, "big") + data)
    return h.digest()


def canonical_rows(ids: IdSource, rows: np.ndarray, canon: Canonicalization) -> list[str]:
    raw = ids.gather(rows) if len(rows) else []
    return [canonical_id(v, canon, int(r)) for v, r in zip(raw, rows)]


def send_chunks(party: Party, peer: str, stage: Stage, data: np.ndarray, per: int) -> None:
    """Send the rows of a 2-D uint8 array as consecutive chunks of ``per`` items."""
    for k in range(chunk_count(len(data), per)):
        part = data[k * per:(k + 1) * per]
        party.send(peer, Chunk(party.session_id, stage, k, len(part), np.ascontiguousarray(part).tobytes()))


def check_count(session_id: str, who: str, count: int, sizes: dict) -> int:
    limit = min(sizes.values())
    if not 0 <= count <= limit:
        raise MalformedMessage(f"session {session_id}: {who} reports {count} common IDs, more than the smallest "
                               f"set ({limit})")
    return count


class MultiActive(Party):
    """The active party A: queries every passive's OPRF, decodes their OKVS tables, finds the intersection."""

    def __init__(self, *, hello_template: Hello, ids: IdSource, **kw):
        super().__init__(**kw)
        self.template = hello_template
        self.ids = ids
        self.mode = hello_template.mode
        self.canon = Canonicalization(hello_template.strip, hello_template.lowercase)
        self.chunk = hello_template.chunk_size
        self.salt = hello_template.salt
        self.passives = list(hello_template.parties[1:])
        self.first = self.passives[0]
        self.n_own = len(ids)
        self.sizes: dict[str, int] = {self.me: self.n_own}
        self.keys: dict[str, bytes] = {}
        self.state = "waiting for hello replies"
        self.done_from: dict[str, Done] = {}
        self.decoded = False

    def start(self) -> None:
        for p in self.passives:
            self.send(p, replace(self.template, recipient=p))
        check_own_ids(self.engine, self.ids, self.canon)  # before any query point leaves (see two_party)

    def peer_finished(self, peer: str) -> bool:
        return peer in self.done_from

    def handle(self, peer: str, msg) -> None:
        card = self.mode == Mode.CARDINALITY
        stage = msg.stage if isinstance(msg, Chunk) else None
        if isinstance(msg, HelloReply) and self.state == "waiting for hello replies" and peer not in self.keys:
            self._on_hello_reply(peer, msg)
        elif isinstance(msg, Sealed) and self.state == "running":
            self._relay(peer, msg)
        elif stage == Stage.REPLY and self.state == "running":
            self._on_reply(peer, msg)
        elif isinstance(msg, Table) and self.state == "running" and peer not in self.tables:
            self._on_table(peer, msg)
        elif stage == Stage.OKVS and self.state == "running" and peer in self.in_okvs:
            self._on_okvs(peer, msg)
        elif stage == Stage.BLINDED and card and peer == self.first and self.state in ("running", "counting") \
                and self._okvs_complete(peer):
            self.exchange.on_blinded(msg)
        elif stage == Stage.DOUBLE and card and peer == self.first and self.state == "counting":
            self.exchange.on_double(msg)
        elif isinstance(msg, Done) and self.state == "confirming" and peer not in self.done_from:
            self._on_done(peer, msg)
        else:
            raise self.unexpected(peer, msg, self.state)

    # ------------------------------------------------------------------ set-up
    def _on_hello_reply(self, peer: str, msg: HelloReply) -> None:
        if not 0 <= msg.size <= MAX_SET_SIZE:
            raise MalformedMessage(f"session {self.session_id}: {peer} reports an invalid set size {msg.size}")
        if len(msg.ephemeral_key) != 32:
            raise MalformedMessage(f"session {self.session_id}: {peer}'s ephemeral key is "
                                   f"{len(msg.ephemeral_key)} bytes, expected 32")
        self.sizes[peer] = msg.size
        self.keys[peer] = msg.ephemeral_key
        if len(self.keys) == len(self.passives):
            self._begin()

    def _begin(self) -> None:
        self.state = "running"
        for p in self.passives:
            self.send(p, Roster(self.session_id, dict(self.sizes), dict(self.keys)))
        self.a, self.a_inv = curve25519.inverse_scalar_pair()
        self.order = secure_permutation(self.n_own)
        # per passive, in our send order: tag_j(x) || mask_j(x), filled as its replies are unblinded
        self.fin = {p: np.zeros((self.n_own, 2 * HALF), dtype=np.uint8) for p in self.passives}
        self.fin_done = {p: 0 for p in self.passives}
        self.in_reply = {p: InStream(self.session_id, p, Stage.REPLY, self.n_own, self.chunk) for p in self.passives}
        self.tables: dict[str, Table] = {}
        self.in_okvs: dict[str, InStream] = {}
        self.cells: dict[str, np.ndarray] = {}
        self.key_relayed: set[str] = set()
        if self.mode == Mode.CARDINALITY:
            self.exchange = SortedExchange(self, self.first, self.salt, self.chunk, self.sizes[self.first],
                                           self._on_card_count)
        # Flow control as in the 2-party protocol: every passive holds at most this many unreturned chunks.
        par = self.engine.parallelism
        outstanding = max(4 * par, MAX_OUTSTANDING_BYTES // (32 * self.chunk))
        self.own = OwnStream(self, self.ids, self.order, self.salt, self.canon, self.a, self.chunk, 32,
                             self._send_query, "blind own IDs", 2 * par, max_outstanding=outstanding)
        self.own.pump()

    def _send_query(self, index: int, offset: int, data: bytes) -> None:
        for p in self.passives:      # the same blinded list to every passive
            self.send(p, Chunk(self.session_id, Stage.QUERY, index, len(data) // 32, data))

    def _relay(self, peer: str, msg: Sealed) -> None:
        """Forward P1's sealed key to another passive (once each); A cannot read it."""
        if msg.sender != peer:
            raise MalformedMessage(f"session {self.session_id}: sealed message from {peer} claims sender {msg.sender!r}")
        if not (msg.stage == Stage.KEY and peer == self.first and msg.recipient in self.passives
                and msg.recipient != self.first and msg.recipient not in self.key_relayed):
            raise self.unexpected(peer, msg, f"sealed {Stage(msg.stage).name} from {peer} to {msg.recipient!r} "
                                             "is not relayed")
        if (msg.index, msg.count, len(msg.ciphertext)) != (0, 1, 32 + SEAL_TAG):
            raise MalformedMessage(f"session {self.session_id}: sealed key for {msg.recipient} from {peer} is "
                                   f"malformed (chunk {msg.index}, {msg.count} items, {len(msg.ciphertext)} bytes)")
        self.key_relayed.add(msg.recipient)
        self.send(msg.recipient, msg)

    # ------------------------------------------------------------------ OPRF replies and OKVS tables
    def _on_reply(self, peer: str, msg: Chunk) -> None:
        if msg.index >= self.own.next_emit:
            raise self.unexpected(peer, msg, f"only {self.own.next_emit} query chunks were sent")
        stream = self.in_reply[peer]
        offset = stream.accept(msg.index, msg.count, len(msg.data))
        self.own.acked(min(s.next_index for s in self.in_reply.values()))
        fut = self.engine.unblind_derive(self.a_inv, msg.data, self.session_id, peer)

        def done(data: bytes, peer=peer, offset=offset) -> None:
            n = len(data) // (2 * HALF)
            self.fin[peer][offset:offset + n] = np.frombuffer(data, dtype=np.uint8).reshape(n, 2 * HALF)
            self.fin_done[peer] += n
            self.report(f"OPRF of {peer}", self.fin_done[peer], self.n_own)
            self._maybe_decode()

        self.submit(point_errors(fut, stream, msg.index, offset), done)

    def _on_table(self, peer: str, msg: Table) -> None:
        n = self.sizes[peer]
        expected = okvs.table_cells(n, msg.attempt) if 0 <= msg.attempt < okvs.MAX_ATTEMPTS else None
        if msg.cells != expected:
            raise MalformedMessage(f"session {self.session_id}: {peer} announces an OKVS table of {msg.cells} cells "
                                   f"at attempt {msg.attempt}; for {n} IDs it must have {expected} cells "
                                   f"(attempts 0..{okvs.MAX_ATTEMPTS - 1})")
        self.tables[peer] = msg
        self.in_okvs[peer] = InStream(self.session_id, peer, Stage.OKVS, msg.cells, self.chunk)
        self.cells[peer] = peer_sized_array((msg.cells, HALF), np.uint8, "OKVS cells", peer, self.session_id)

    def _on_okvs(self, peer: str, msg: Chunk) -> None:
        offset = self.in_okvs[peer].accept(msg.index, msg.count, len(msg.data))
        self.cells[peer][offset:offset + msg.count] = np.frombuffer(msg.data, dtype=np.uint8).reshape(-1, HALF)
        self._maybe_decode()

    def _okvs_complete(self, peer: str) -> bool:
        return peer in self.in_okvs and self.in_okvs[peer].complete

    # ------------------------------------------------------------------ decoding
    def _maybe_decode(self) -> None:
        if self.decoded or not self.own.done:
            return
        if any(self.fin_done[p] < self.n_own or not self._okvs_complete(p) for p in self.passives):
            return
        self.decoded = True
        total = np.zeros((self.n_own, HALF), dtype=np.uint8)
        for p in self.passives:
            seed = okvs_seed(self.session_id, p, self.tables[p].attempt)
            total ^= okvs.decode(self.cells.pop(p), self.fin[p][:, :HALF], seed) ^ self.fin[p][:, HALF:]
        self.report("decode", 1, 1)
        if self.mode == Mode.INTERSECTION:
            self._align(np.flatnonzero(~total.any(axis=1)))
        else:
            self.fin = None
            self.state = "counting"
            self.exchange.start(total)      # XOR_j o_j(x): R(x) for common x, random otherwise

    def _align(self, common: np.ndarray) -> None:
        """Intersection mode: order the common items by tag_1 and tell every passive its tags."""
        tags1 = setops.values_from_bytes(np.ascontiguousarray(self.fin[self.first][common, :HALF]).tobytes())
        common = common[setops.sort_order(tags1)]
        self.count = len(common)
        self.rows = self.order[common].astype(np.int64)
        self.common_ids = canonical_rows(self.ids, self.rows, self.canon)
        self.digest = ids_digest(self.session_id, self.salt, self.common_ids)
        self.state = "confirming"
        for p in self.passives:
            self.send(p, Count(self.session_id, self.count))
            send_chunks(self, p, Stage.ALIGN, self.fin[p][common, :HALF], self.chunk)
            self.send(p, Done(self.session_id, self.count, self.digest))
        self.fin = None

    def _on_card_count(self, count: int) -> None:
        self.count = count
        self.rows, self.common_ids, self.digest = None, None, b""
        self.state = "confirming"
        for p in self.passives:
            self.send(p, Count(self.session_id, count))

    def _on_done(self, peer: str, msg: Done) -> None:
        if (msg.count, msg.digest) != (self.count, self.digest):
            raise ConsistencyError(f"session {self.session_id}: {peer} confirms {msg.count} common IDs, {self.me} "
                                   f"found {self.count} (or the common IDs differ)")
        self.done_from[peer] = msg
        if len(self.done_from) == len(self.passives):
            self.result = PsiResult(party=self.me, session_id=self.session_id, mode=self.mode, size=self.count,
                                    set_sizes=self.sizes, rows=self.rows, id_source=self.ids,
                                    canonicalization=self.canon, ids=self.common_ids)
            self.finished = True


class MultiPassive(Party):
    """A passive party Pj: answers A's OPRF queries and sends an OKVS of its own IDs' tagged shares."""

    def __init__(self, *, hello: Hello, ids: IdSource, **kw):
        super().__init__(**kw)
        self.hello = hello
        self.ids = ids
        self.mode = hello.mode
        self.canon = Canonicalization(hello.strip, hello.lowercase)
        self.chunk = hello.chunk_size
        self.active = hello.parties[0]
        self.passives = list(hello.parties[1:])
        self.first = self.passives[0]
        self.index = self.passives.index(self.me) + 1      # j, 1-based: fixes this party's zero-share
        self.m = len(self.passives)
        self.is_first = self.me == self.first
        self.card = self.mode == Mode.CARDINALITY
        self.n_own = len(ids)
        self.state = "waiting for the roster"
        self.t: bytes | None = None
        self.own: OwnStream | None = None
        self.table_sent = False
        self.exchange: SortedExchange | None = None

    def start(self) -> None:
        check_own_ids(self.engine, self.ids, self.canon)  # before any own value leaves this party
        self.eph = EphemeralKey()
        self.send(self.active, HelloReply(self.session_id, self.n_own, self.eph.public))

    def handle(self, peer: str, msg) -> None:
        stage = msg.stage if isinstance(msg, Chunk) else None
        running = self.state == "running"
        if peer != self.active:
            raise self.unexpected(peer, msg, "passives only talk to the active party")
        if isinstance(msg, Roster) and self.state == "waiting for the roster":
            self._on_roster(msg)
        elif isinstance(msg, Sealed) and running and msg.stage == Stage.KEY and not self.is_first and self.t is None:
            self._on_key(msg)
        elif stage == Stage.QUERY and running:
            self._on_query(msg)
        elif stage == Stage.BLINDED and running and self.exchange is not None and self.table_sent:
            self.exchange.on_blinded(msg)
        elif stage == Stage.DOUBLE and running and self.exchange is not None and self.exchange.started:
            self.exchange.on_double(msg)
        elif isinstance(msg, Count) and running and self._ready_for_count():
            self._on_count(msg)
        elif stage == Stage.ALIGN and self.state == "aligning":
            self._on_align(msg)
        elif isinstance(msg, Done) and self.state == "confirming":
            self._on_active_done(msg)
        else:
            raise self.unexpected(peer, msg, self.state)

    # ------------------------------------------------------------------ set-up
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
        self.k = curve25519.new_scalar()            # our OPRF key: never leaves this party
        n_active = self.sizes[self.active]
        self.in_query = InStream(self.session_id, self.active, Stage.QUERY, n_active, self.chunk)
        self.query_chunks = chunk_count(n_active, self.chunk)
        self.reply_ready: dict[int, bytes] = {}
        self.reply_next = 0
        if self.card and self.is_first:
            self.exchange = SortedExchange(self, self.active, self.hello.salt, self.chunk, n_active,
                                           self._on_card_count)
        if self.is_first:
            self.t = os.urandom(32)
            for p in self.passives[1:]:
                ch = self.eph.channel(self.me, p, msg.keys[p], self.session_id)
                self.send(self.active, Sealed(self.session_id, Stage.KEY, self.me, p, 0, 1,
                                              ch.seal(Stage.KEY, 0, 1, self.t)))
            self._start_own()
        else:
            self.channel = self.eph.channel(self.me, self.first, msg.keys[self.first], self.session_id)

    def _on_key(self, msg: Sealed) -> None:
        if (msg.sender, msg.recipient, msg.index, msg.count) != (self.first, self.me, 0, 1):
            raise MalformedMessage(f"session {self.session_id}: sealed key names sender {msg.sender!r}, recipient "
                                   f"{msg.recipient!r}, chunk {msg.index}, count {msg.count}")
        t = self.channel.open(Stage.KEY, 0, 1, msg.ciphertext)
        if len(t) != 32:
            raise MalformedMessage(f"session {self.session_id}: the passives' key from {self.first} is {len(t)} bytes")
        self.t = t
        self._start_own()

    # ------------------------------------------------------------------ OPRF replies
    def _on_query(self, msg: Chunk) -> None:
        offset = self.in_query.accept(msg.index, msg.count, len(msg.data))
        fut = self.engine.blind(self.k, msg.data, 32, validate=True)

        def done(data: bytes, index=msg.index) -> None:
            self.reply_ready[index] = data
            while self.reply_next in self.reply_ready:     # back in the order received, as soon as ready
                j = self.reply_next
                out = self.reply_ready.pop(j)
                self.send(self.active, Chunk(self.session_id, Stage.REPLY, j, len(out) // 32, out))
                self.reply_next += 1
            self.report("answer OPRF queries", min(self.reply_next * self.chunk, self.in_query.total),
                        self.in_query.total)

        self.submit(point_errors(fut, self.in_query, msg.index, offset), done)

    # ------------------------------------------------------------------ own IDs -> OKVS
    def _start_own(self) -> None:
        self.order = secure_permutation(self.n_own)
        width = 3 * HALF if self.exchange is not None else 2 * HALF     # tag || value (|| R for the exchange)
        self.entries = np.zeros((self.n_own, width), dtype=np.uint8)
        engine, salt = self.engine, self.hello.salt
        total_in_share = self.card and self.index == self.m
        emit_total = self.exchange is not None

        def task(ids: list, rows: list):
            return engine.passive_entries(ids, salt, self.canon, self.k, rows, self.session_id, self.me, self.t,
                                          self.index, self.m, total_in_share, emit_total)

        self.own = OwnStream(self, self.ids, self.order, salt, self.canon, self.k, self.chunk, width,
                             self._store_own, "OPRF own IDs", 2 * engine.parallelism, task=task)
        self.own.pump()
        if self.own.done:           # no IDs at all
            self._own_complete()

    def _store_own(self, index: int, offset: int, data: bytes) -> None:
        n = len(data) // self.entries.shape[1]
        self.entries[offset:offset + n] = np.frombuffer(data, dtype=np.uint8).reshape(n, -1)
        if self.own.done:
            self._own_complete()

    def _own_complete(self) -> None:
        keys = np.ascontiguousarray(self.entries[:, :HALF])
        values = np.ascontiguousarray(self.entries[:, HALF:2 * HALF])
        self.submit(self.engine.okvs_encode(keys, values, self.session_id, self.me), self._send_table)

    def _send_table(self, encoded: tuple[int, bytes]) -> None:
        attempt, table = encoded
        cells = np.frombuffer(table, dtype=np.uint8).reshape(-1, HALF)
        self.send(self.active, Table(self.session_id, attempt, len(cells)))
        send_chunks(self, self.active, Stage.OKVS, cells, self.chunk)
        self.table_sent = True
        self.report("send OKVS", 1, 1)
        tags = setops.values_from_bytes(np.ascontiguousarray(self.entries[:, :HALF]).tobytes())
        self.tag_order = setops.sort_order(tags)      # for mapping ALIGN tags to our rows
        self.tags_sorted = tags[self.tag_order]
        if self.exchange is not None:
            self.exchange.start(np.ascontiguousarray(self.entries[:, 2 * HALF:]))
        self.entries = None

    # ------------------------------------------------------------------ cardinality (P1 only)
    def _on_card_count(self, count: int) -> None:
        self.report("count", 1, 1)

    # ------------------------------------------------------------------ result
    def _ready_for_count(self) -> bool:
        replied = self.in_query.complete and self.reply_next == self.query_chunks
        counted = self.exchange is None or self.exchange.count is not None
        return self.table_sent and replied and counted

    def _on_count(self, msg: Count) -> None:
        self.count = check_count(self.session_id, self.active, msg.count, self.sizes)
        if self.exchange is not None and self.count != self.exchange.count:
            raise ConsistencyError(f"session {self.session_id}: {self.active} reports {self.count} common IDs, "
                                   f"{self.me} counted {self.exchange.count}")
        if self.card:
            self._finish(None, b"", None)
            return
        self.positions = np.zeros(self.count, dtype=np.int64)
        self.in_align = InStream(self.session_id, self.active, Stage.ALIGN, self.count, self.chunk)
        self.last_tag: np.ndarray | None = None
        self.state = "aligning" if self.count else "confirming"

    def _on_align(self, msg: Chunk) -> None:
        offset = self.in_align.accept(msg.index, msg.count, len(msg.data))
        query = setops.values_from_bytes(msg.data)
        found = setops.lookup(self.tags_sorted, query)
        missing = np.flatnonzero(found < 0)
        if missing.size:
            raise MalformedMessage(f"session {self.session_id}: alignment chunk {msg.index} from {self.active}, item "
                                   f"{offset + int(missing[0])}: a tag that matches none of {self.me}'s IDs")
        if self.is_first:
            self._check_ascending(msg.index, query)
        self.positions[offset:offset + msg.count] = self.tag_order[found]
        if self.in_align.complete:
            if len(np.unique(self.positions)) != len(self.positions):
                raise MalformedMessage(f"session {self.session_id}: alignment from {self.active} names one of "
                                       f"{self.me}'s IDs twice")
            self.state = "confirming"

    def _check_ascending(self, index: int, query: np.ndarray) -> None:
        """P1 knows the agreed order (ascending tag_1): its tags must arrive strictly ascending."""
        seq = query if self.last_tag is None else np.vstack([self.last_tag[None], query])
        hi, lo = seq[:, 0], seq[:, 1]
        ascending = (hi[1:] > hi[:-1]) | ((hi[1:] == hi[:-1]) & (lo[1:] > lo[:-1]))
        if not ascending.all():
            raise MalformedMessage(f"session {self.session_id}: alignment chunk {index} from {self.active} is not in "
                                   "the agreed order")
        self.last_tag = query[-1]

    def _on_active_done(self, msg: Done) -> None:
        rows = self.order[self.positions].astype(np.int64)
        common = canonical_rows(self.ids, rows, self.canon)
        digest = ids_digest(self.session_id, self.hello.salt, common)
        if (msg.count, msg.digest) != (self.count, digest):
            raise ConsistencyError(f"session {self.session_id}: {self.active} found {msg.count} common IDs, "
                                   f"{self.me} {self.count} (or the common IDs differ)")
        self._finish(rows, digest, common)

    def _finish(self, rows, digest: bytes, common) -> None:
        self.send(self.active, Done(self.session_id, self.count, digest))
        self.result = PsiResult(party=self.me, session_id=self.session_id, mode=self.mode, size=self.count,
                                set_sizes=self.sizes, rows=rows, id_source=self.ids, canonicalization=self.canon,
                                ids=common)
        self.finished = True


def check_parties(parties) -> None:
    if len(parties) != len(set(parties)):
        raise MalformedMessage(f"party names must be distinct: {list(parties)}")
    for p in parties:
        check_party_name(p)
