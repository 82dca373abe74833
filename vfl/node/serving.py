"""The node's online scoring (docs/serving.md): the models its config registers, who may score, rate limits, audit.

At the active node, `score(who, model, ids)` answers the Score RPC: the caller was authorized by the service
(vfl/node/services.py), here it is rate-limited per identity, every request goes to the audit log with its ID
count, and the model's `ActiveScorer` does the work. At a passive node, `handle(request, caller)` answers the
active party's OpenScoring and ScoreRows: only the party a model was trained with may open a session for it, its
calls are rate-limited and audited the same way, and an error about this node's own files reaches the peer as an
error id only.

Models are loaded on first use (and by a warm-up thread at start), each from its exported directory or from a
finished training job of this node; a model whose files changed since export is refused with the reason, and the
node keeps serving everything else.
"""
from __future__ import annotations

import logging
import shutil
import tempfile
import threading
import time
from contextlib import contextmanager
from pathlib import Path
from typing import Iterator

from psi.error_ids import logged_error_id
from vfl.errors import ConfigError, DataError, NotFound, PermissionDenied, TooManyRequests, VflError, status_of
from vfl.job.limits import RateLimiter
from vfl.job.serving import ActiveScorer, IdScore, PassiveScorer
from vfl.protocol.messages import OpenScoring, ScoreRows
from vfl.transport.party_link import GrpcPartyLink

log = logging.getLogger("vfl.serving")

#: the longest one scoring call to a passive party may take, waiting for a reconnecting channel included (a request
#: is a few ciphertexts, well under a second; a session's set-up, with its key check and [U]_A, a second or two)
SCORE_CALL_SECONDS = 10.0
#: how long the warm-up at start keeps trying to open the sessions of the active node's models
WARM_UP_SECONDS = 60.0


def limit_key(who: str) -> str:
    """The name a caller has in serving.rate_limits: a client's certificate identity, a peer's name, or self."""
    return who.split(":", 1)[1] if who.startswith("user:") else who


class NodeServing:
    def __init__(self, node):
        self.node = node
        self.config = node.config.serving
        rates = {who: (r.ids_per_second, r.burst) for who, r in self.config.rate_limits.items()}
        self.limiter = RateLimiter(self.config.rate_limit.ids_per_second, self.config.rate_limit.burst, rates)
        self._lock = threading.Lock()
        self._scorers: dict[str, ActiveScorer | PassiveScorer] = {}
        self._sessions: dict[str, tuple[PassiveScorer, str]] = {}     # session -> (scorer, the peer that opened it)
        self._stop = threading.Event()

    # ---------------------------------------------------------------- models
    def scorer(self, name: str) -> ActiveScorer | PassiveScorer:
        entry = self.config.models.get(name)
        if entry is None:
            raise NotFound(f"no model named {name!r} is served by {self.node.config.party!r} "
                           f"(its node config's serving.models: {sorted(self.config.models) or 'none'})")
        with self._lock:
            if name not in self._scorers:
                self._scorers[name] = self._load(entry)
            return self._scorers[name]

    def _load(self, entry) -> ActiveScorer | PassiveScorer:
        from vfl.data.online import InMemoryTable
        from vfl.models.served import load_served_part
        config = self.node.config
        with self._exported(entry) as directory:
            part = load_served_part(directory, self.node.models(), config.party)
        table = dataset = None
        if entry.table is not None:
            dataset = self.node.dataset(entry.table)
            table = InMemoryTable(dataset, part.schema, part.canonical_id)
        log.info("serving model %s (job %s, %s part%s)", entry.name, part.job_id, part.role,
                 f", {len(table)} rows in online table {entry.table!r}" if table is not None else "")
        if part.role == "active":
            links = {peer: GrpcPartyLink(peer, self.node.channel(peer), self.node.call_metadata(),
                                         timeout=min(SCORE_CALL_SECONDS, config.timeouts.call_seconds),
                                         wait_for_ready=True)
                     for peer in part.passives}
            return ActiveScorer(entry.name, part, table, dataset.id_format if dataset else None, links,
                                self.config.max_ids, self.config.micro_batch)
        if table is None:
            raise ConfigError(f"serving.models.{entry.name}.table: a passive party's model needs its online table "
                              "(a dataset of this node with the features of the IDs it scores)")
        return PassiveScorer(entry.name, part, table, self.config.missing_ids, self.config.max_ids,
                             config.policy.min_key_bits)

    @contextmanager
    def _exported(self, entry) -> Iterator[Path]:
        """The model's exported directory; a registered job is exported to a temporary one first."""
        if entry.path is not None:
            yield entry.path
            return
        from vfl.job.export import export_part
        tmp = Path(tempfile.mkdtemp(prefix=f"vfl-serve-{entry.name}-"))
        try:
            yield export_part(self.node.config.job_dir(entry.job), tmp / "part")
        finally:
            shutil.rmtree(tmp, ignore_errors=True)

    def warm_up(self) -> threading.Thread:
        """Load every model now (a broken one is logged, the others serve), and open the active node's sessions."""
        def run() -> None:
            deadline = time.monotonic() + WARM_UP_SECONDS
            pending = list(self.config.models)
            while pending and not self._stop.is_set():
                for name in list(pending):
                    try:
                        scorer = self.scorer(name)
                        if isinstance(scorer, ActiveScorer):
                            scorer.open()
                        pending.remove(name)
                    except VflError as exc:
                        if status_of(exc) != "UNAVAILABLE" or time.monotonic() > deadline:
                            log.warning("serving model %s: %s", name, exc)
                            pending.remove(name)
                self._stop.wait(2.0)
        thread = threading.Thread(target=run, name="vfl-serving-warm-up", daemon=True)
        thread.start()
        return thread

    # ---------------------------------------------------------------- active node: Score
    def score(self, who: str, model: str, ids: list[str]) -> tuple[list[str], list[IdScore]]:
        """(the model's outputs, a result per ID) for an authorized caller; every request is audited."""
        audit = self.node.audit
        try:
            scorer = self.scorer(model)
            if not isinstance(scorer, ActiveScorer):
                raise PermissionDenied(f"{self.node.config.party!r} is a passive party of model {model!r}: "
                                       f"score it at its active party {scorer.part.active!r}")
            self._charge(who, len(ids), "score")
            results = scorer.score(ids)
        except Exception as exc:
            audit.record(who, "score refused", model=model, ids=len(ids), status=status_of(exc),
                         reason=str(exc)[:300])
            raise
        audit.record(who, "score", model=model, ids=len(ids), scored=sum(r.status == "ok" for r in results))
        return scorer.outputs, results

    def _charge(self, who: str, count: int, what: str) -> None:
        wait = self.limiter.take(limit_key(who), count)
        if wait > 0:
            rate, burst = self.limiter.limits(limit_key(who))
            raise TooManyRequests(f"{what}: rate limit of {limit_key(who)!r} reached ({rate:g} IDs per second, "
                                  f"bursts of {burst:g}); retry in {wait:.2f} s" +
                                  (" with fewer IDs per request" if count > burst else ""))

    # ---------------------------------------------------------------- passive node: the active party's calls
    def handle(self, request, caller: str):
        if isinstance(request, OpenScoring):
            return self._open(request, caller)
        if isinstance(request, ScoreRows):
            return self._score_rows(request, caller)
        raise TypeError(f"not a scoring request: {type(request).__name__}")

    def _model_for(self, model_id: str, caller: str) -> PassiveScorer:
        """The served model of training job `model_id` that `caller` is the active party of."""
        broken = []
        for name in self.config.models:
            try:
                scorer = self.scorer(name)
            except (DataError, ConfigError) as exc:   # one broken model does not stop the others
                broken.append((name, exc))
                continue
            if isinstance(scorer, PassiveScorer) and scorer.part.job_id == model_id and scorer.part.active == caller:
                return scorer
        for name, exc in broken[:1]:
            with self._own_errors(f"serving model {name!r}"):
                raise exc
        raise NotFound(f"{self.node.config.party!r} serves no model of training job {model_id!r} for {caller!r}")

    def _open(self, request: OpenScoring, caller: str):
        try:
            scorer = self._model_for(request.model_id, caller)
            reply, session = scorer.open_session(request)
        except Exception as exc:
            self.node.audit.record(caller, "scoring session refused", model_job=request.model_id,
                                   status=status_of(exc))
            raise
        with self._lock:
            self._sessions = {s: owner for s, owner in self._sessions.items() if s in owner[0].sessions}
            self._sessions[session] = (scorer, caller)
        self.node.audit.record(caller, "scoring session opened", model=scorer.name, model_job=request.model_id)
        return reply

    def _score_rows(self, request: ScoreRows, caller: str):
        scorer, opener = self._sessions.get(request.session, (None, None))
        if scorer is None or opener != caller:
            self.node.audit.record(caller, "score refused", status="NOT_FOUND", reason="unknown scoring session")
            raise NotFound(f"no scoring session {request.session[:40]!r} of {caller!r} here (the node restarted, or "
                           "a newer session replaced it): open a new one")
        try:
            reply, count, found = scorer.score_rows(request, lambda n: self._charge(caller, n, "score rows"))
        except Exception as exc:
            self.node.audit.record(caller, "score refused", model=scorer.name, status=status_of(exc))
            raise
        self.node.audit.record(caller, "score", model=scorer.name, ids=count, scored=found)
        return reply

    @contextmanager
    def _own_errors(self, what: str) -> Iterator[None]:
        """A problem with this node's own files or config reaches the peer as an error id; the detail is logged."""
        try:
            yield
        except (DataError, ConfigError) as exc:
            error_id = logged_error_id(exc, self.node.config.party, what, log, kind="serving error")
            raise type(exc)(f"{what}: party {self.node.config.party!r} cannot serve it (error id {error_id}); "
                            "details are in that node's log") from None

    def close(self) -> None:
        self._stop.set()
        with self._lock:
            scorers, self._scorers = list(self._scorers.values()), {}
        for scorer in scorers:
            scorer.close()
