"""Online scoring runtimes: one served model at the active party (`ActiveScorer`) and at a passive one
(`PassiveScorer`).

Like the job runtimes they speak typed messages over a `PartyLink` and leave the crypto to the protocol
(vfl/protocol/scoring.py); unlike a job they live as long as the node and keep what every request reuses: the
loaded model part, its online feature table, and a session per passive party ([U]_A encrypted once, obfuscators
precomputed). Who may score, rate limits and the audit log are the node's (vfl/node/serving.py).

The serving keys live in the node process with serial engines: a request is a few ciphertexts, far too little to
cut into chunks for other processes or a cluster, and concurrent requests already run on the node's threads
(gmpy2 releases the GIL).
"""
from __future__ import annotations

import json
import logging
import secrets
import threading
from collections import OrderedDict
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Callable, Mapping, Sequence

import numpy as np

from vfl.data.columns import Where
from vfl.data.ids import IdFormat
from vfl.data.online import FeatureLookup
from vfl.errors import DataError, NotFound, PeerCallError, Unavailable
from vfl.models.served import ActivePart, PassivePart
from vfl.protocol.layout import Layout
from vfl.protocol.link import PartyLink
from vfl.protocol.messages import (MAX_ID_CHARS, ROW_SCORED, ROW_UNKNOWN, ROW_UNAVAILABLE, OpenScoring,
                                   OpenScoringReply, ScoreRows, ScoreRowsReply, decode_ids, encode_ids)
from vfl.protocol.schemes import paillier
from vfl.protocol.scoring import PRECOMPUTED, ScoringActiveHalf, ScoringPassiveHalf, check_open, open_reply

log = logging.getLogger("vfl.serving")

#: the status of one scored ID, as a caller of Score sees it
OK, UNKNOWN_ID, UNAVAILABLE, INVALID_ID = "ok", "unknown_id", "unavailable", "invalid_id"
#: sessions a passive party keeps per model (a new one from the same active party replaces the oldest)
MAX_SESSIONS = 4


def serving_compute():
    """Serial engines in this process for the serving keys (see the module docstring)."""
    from vfl.compute.local import LocalCompute
    return LocalCompute(1)


def layout_of(part, peer: str) -> Layout:
    return Layout.from_json(json.dumps(part.layouts[peer]).encode())


@dataclass(frozen=True)
class IdScore:
    id: str                              # as the caller wrote it
    status: str                          # OK, UNKNOWN_ID, UNAVAILABLE or INVALID_ID
    scores: tuple[float, ...] = ()       # ActivePart.outputs, when OK
    detail: str = ""                     # why not, when not OK


# ------------------------------------------------------------------------------------------ micro-batching

class _Pending:
    def __init__(self, ids: list[str]):
        self.ids = ids
        self.ready = threading.Event()
        self.lead = False
        self.results: list[IdScore] | None = None
        self.error: BaseException | None = None


class MicroBatcher:
    """Concurrent requests of one model share one call to each passive party.

    No request waits for others: one that arrives while no batch runs is sent at once; the requests that arrive
    while a batch is under way are sent together as the next batch (whole requests, up to `max_ids` IDs), by the
    first of them. Under load the parties then handle a few large calls instead of many small ones, and the
    packing puts several rows into each ciphertext.
    """

    def __init__(self, run: Callable[[list[str]], list[IdScore]], max_ids: int):
        self.run, self.max_ids = run, max_ids
        self._lock = threading.Lock()
        self._queue: list[_Pending] = []
        self._busy = False
        self.batches = 0

    def submit(self, ids: list[str]) -> list[IdScore]:
        me = _Pending(ids)
        with self._lock:
            self._queue.append(me)
            lead = not self._busy
            self._busy = True
        if not lead:
            me.ready.wait()
            if not me.lead:
                return self._outcome(me)
        self._lead()
        return self._outcome(me)

    @staticmethod
    def _outcome(me: _Pending) -> list[IdScore]:
        if me.error is not None:
            raise me.error
        return me.results

    def _take(self) -> list[_Pending]:
        with self._lock:
            batch, size = [], 0
            while self._queue and (not batch or size + len(self._queue[0].ids) <= self.max_ids):
                batch.append(self._queue.pop(0))
                size += len(batch[-1].ids)
            return batch

    def _lead(self) -> None:
        batch = self._take()
        try:
            results = self.run([i for p in batch for i in p.ids])
            start = 0
            for p in batch:
                p.results, start = results[start:start + len(p.ids)], start + len(p.ids)
        except BaseException as exc:  # noqa: BLE001 - every request of the batch gets the batch's error
            for p in batch:
                p.error = exc
        finally:
            self.batches += 1
            with self._lock:
                following = self._queue[0] if self._queue else None
                self._busy = following is not None
            if following is not None:
                following.lead = True
                following.ready.set()
            for p in batch:
                p.ready.set()


# ------------------------------------------------------------------------------------------ active party

class ActiveScorer:
    """One served model at the active party: its part, its own online table, a session with each passive party."""

    def __init__(self, name: str, part: ActivePart, table: FeatureLookup | None, id_format: IdFormat | None,
                 links: Mapping[str, PartyLink], max_ids: int, micro_batch: bool = True):
        if part.feature_dim and table is None:
            raise DataError(f"serving.models.{name}.table: model {name!r} uses {part.feature_dim} features of this "
                            "party, so it needs this party's online table (a dataset of this node)")
        self.name, self.part, self.table, self.id_format = name, part, table, id_format
        self.links = dict(links)
        self.max_ids = max_ids
        self.layouts = {peer: layout_of(part, peer) for peer in part.passives}
        self._lock = threading.Lock()
        self._key = None
        self._sessions: dict[str, tuple[str, ScoringActiveHalf, int]] = {}   # peer -> (session, half, max_ids)
        self._calls = ThreadPoolExecutor(max_workers=max(1, len(part.passives)) * 4,
                                         thread_name_prefix=f"score-{name}")
        self.batcher = MicroBatcher(self._score_batch, max_ids) if micro_batch else None

    @property
    def outputs(self) -> list[str]:
        return self.part.outputs

    def open(self) -> None:
        """This model's serving key and a session with every passive party (once; again after a lost session)."""
        with self._lock:
            if self._key is None:
                self._key = paillier.new_key(next(iter(self.layouts.values())).key_bits, serving_compute())
            for peer in self.part.passives:
                if peer not in self._sessions:
                    self._open(peer)

    def _open(self, peer: str) -> None:
        half = ScoringActiveHalf(peer, self.layouts[peer], self.part.shares[peer], self._key)
        try:
            reply: OpenScoringReply = self.links[peer].call(half.open_request(self.part.job_id))
        except PeerCallError as exc:
            raise Unavailable(f"model {self.name!r}: party {peer!r} did not open a scoring session: {exc.code}: "
                              f"{exc.detail}") from None
        self._sessions[peer] = (reply.session, half, max(1, reply.max_ids))
        log.info("model %s: scoring session with %s open", self.name, peer)

    def _reopen(self, peer: str, stale: str) -> None:
        with self._lock:
            if self._sessions.get(peer, (None,))[0] == stale:
                del self._sessions[peer]
                self._open(peer)

    def score(self, ids: Sequence[str]) -> list[IdScore]:
        ids = list(ids)
        if not 0 < len(ids) <= self.max_ids:
            raise DataError(f"score: {len(ids)} IDs in one request (allowed 1..{self.max_ids}, node config "
                            "serving.max_ids)")
        return self.batcher.submit(ids) if self.batcher is not None else self._score_batch(ids)

    # ---------------------------------------------------------------- one batch
    def _agreed(self, raw: str, i: int) -> str:
        """An ID in the form the parties agreed on: this party's id_format, then PSI's canonicalization."""
        if not isinstance(raw, str) or not raw.strip() or len(raw) > MAX_ID_CHARS:
            raise DataError(f"an ID must be a non-empty string of at most {MAX_ID_CHARS} characters")
        value = self.id_format.one(raw, Where("request", "id"), i) if self.id_format is not None else raw
        value = self.part.canonical_id(value)
        if not value:
            raise DataError("the ID is empty after canonicalization")
        return value

    def _score_batch(self, ids: list[str]) -> list[IdScore]:
        if self._key is None or len(self._sessions) < len(self.part.passives):
            self.open()
        results: list[IdScore | None] = [None] * len(ids)
        agreed: dict[int, str] = {}
        for i, raw in enumerate(ids):
            try:
                agreed[i] = self._agreed(raw, i)
            except DataError as exc:
                results[i] = IdScore(str(raw)[:MAX_ID_CHARS], INVALID_ID, detail=str(exc))
        own = self._own_rows(agreed, ids, results)
        wanted = list(dict.fromkeys(agreed[i] for i in own))   # each ID once, to every passive party
        replies = dict(zip(self.part.passives, self._calls.map(lambda peer: self._ask(peer, wanted),
                                                               self.part.passives))) if wanted else {}
        scored = [i for i in own if all(replies[p][0][agreed[i]] is None for p in self.part.passives)]
        for i in own:
            if i not in scored:
                status, detail = next(replies[p][0][agreed[i]] for p in self.part.passives
                                      if replies[p][0][agreed[i]] is not None)
                results[i] = IdScore(ids[i], status, detail=detail)
        if scored:
            zs = [np.stack([replies[p][1][agreed[i]] for i in scored]) for p in self.part.passives]
            x = None if own[scored[0]] is None else np.stack([own[i] for i in scored])
            scores = self.part.predict(zs, x)
            for i, row in zip(scored, scores):
                results[i] = IdScore(ids[i], OK, tuple(float(v) for v in row))
        return results

    def _own_rows(self, agreed: dict[int, str], ids: list[str], results: list) -> dict[int, np.ndarray | None]:
        """This party's feature row of every valid ID it holds (None for all when the model uses none here)."""
        if not agreed:
            return {}
        if self.table is None:
            return {i: None for i in agreed}
        order = list(agreed)
        x, found = self.table.lookup([agreed[i] for i in order])
        out = {}
        for k, i in enumerate(order):
            if found[k]:
                out[i] = x[k]
            else:
                results[i] = IdScore(ids[i], UNKNOWN_ID, detail=f"{self.part.party} (the active party) holds no row "
                                                                "for this ID")
        return out

    def _ask(self, peer: str, wanted: list[str]) -> tuple[dict[str, tuple | None], dict[str, np.ndarray]]:
        """Score `wanted` at `peer`: (ID -> None if scored, else (status, detail)), (ID -> z_P row)."""
        reasons: dict[str, tuple | None] = {}
        zs: dict[str, np.ndarray] = {}
        limit = self._sessions[peer][2]
        for start in range(0, len(wanted), limit):
            chunk = wanted[start:start + limit]
            status, z = self._ask_chunk(peer, chunk)
            rows = iter(z)
            for value, code in zip(chunk, status):
                if code == ROW_SCORED:
                    reasons[value], zs[value] = None, next(rows)
                elif code == ROW_UNKNOWN:
                    reasons[value] = (UNKNOWN_ID, f"{peer} holds no row for this ID")
                else:
                    reasons[value] = (UNAVAILABLE, f"{peer} did not score this ID")
        return reasons, zs

    def _ask_chunk(self, peer: str, chunk: list[str]) -> tuple[np.ndarray, np.ndarray]:
        for attempt in (1, 2):
            session, half, _ = self._sessions[peer]
            try:
                reply: ScoreRowsReply = self.links[peer].call(ScoreRows(session=session, ids=encode_ids(chunk)))
                return half.decode(reply, len(chunk))
            except PeerCallError as exc:
                if exc.code == "NOT_FOUND" and attempt == 1:   # the peer restarted: its sessions are gone
                    log.info("model %s: %s lost its scoring session (%s); opening a new one", self.name, peer,
                             exc.detail)
                    self._reopen(peer, session)
                    continue
                raise Unavailable(f"model {self.name!r}: party {peer!r} could not score: {exc.code}: "
                                  f"{exc.detail}") from None
        raise AssertionError("unreachable")

    def close(self) -> None:
        self._calls.shutdown(wait=False)
        key, self._key = self._key, None
        if key is not None:
            key.close()


# ------------------------------------------------------------------------------------------ passive party

class PassiveScorer:
    """One served model at a passive party: its part, its online table, the sessions its active party opened."""

    def __init__(self, name: str, part: PassivePart, table: FeatureLookup, missing_ids: str, max_ids: int,
                 min_key_bits: int, precompute: int = PRECOMPUTED):
        self.name, self.part, self.table = name, part, table
        self.missing_code = ROW_UNKNOWN if missing_ids == "reveal" else ROW_UNAVAILABLE
        self.max_ids, self.min_key_bits, self.precompute = max_ids, min_key_bits, precompute
        self.layout = layout_of(part, part.active)
        self._lock = threading.Lock()
        self.sessions: OrderedDict[str, ScoringPassiveHalf] = OrderedDict()

    def open_session(self, request: OpenScoring) -> tuple[OpenScoringReply, str]:
        check_open(request, self.layout, self.min_key_bits)
        half = ScoringPassiveHalf(request, self.layout, self.part.shares[self.part.active], serving_compute(),
                                  self.precompute)
        session = secrets.token_hex(16)
        with self._lock:
            self.sessions[session] = half
            while len(self.sessions) > MAX_SESSIONS:
                _, old = self.sessions.popitem(last=False)
                old.close()
        return open_reply(session, self.max_ids), session

    def score_rows(self, request: ScoreRows, charge: Callable[[int], None] | None = None
                   ) -> tuple[ScoreRowsReply, int, int]:
        """The reply, the number of IDs asked and of IDs scored; `charge(count)` may refuse the request first."""
        half = self.sessions.get(request.session)
        if half is None:
            raise NotFound(f"model {self.name!r}: no scoring session {request.session[:40]!r} here (the node "
                           "restarted, or a newer session replaced it): open a new one")
        ids = decode_ids(request.ids, self.max_ids)
        if charge is not None:
            charge(len(ids))
        x, found = self.table.lookup([self.part.canonical_id(i) for i in ids])
        h = self.part.activations(x[found]) if found.any() else np.zeros((0, self.layout.d))
        status = np.where(found, ROW_SCORED, self.missing_code)
        return half.reply(status, h), len(ids), int(found.sum())

    def close(self) -> None:
        with self._lock:
            for half in self.sessions.values():
                half.close()
            self.sessions.clear()
