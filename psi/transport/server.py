"""The passive side: a ``psi.v1.Psi`` servicer that any ``grpc.Server`` can mount.

    servicer = add_psi_service(server, id_provider, on_result=callback)

``id_provider(hello, peer) -> IDs`` is called for each new session with the checked hello (session id,
parameters, ``hello.metadata`` such as a job id) and the caller's verified identity; it authorizes the peer
and chooses the dataset (raise :class:`psi.errors.PermissionDenied` to refuse). Results go to
``on_result(session_id, PsiResult)`` and can be fetched with :meth:`PsiServicer.wait_result`.

Failures are reported to the caller as the RPC status (INVALID_ARGUMENT for malformed messages and invalid
points, FAILED_PRECONDITION for messages out of order, ALREADY_EXISTS for a reused session id, ...); a
failed session never affects other sessions or the server.
"""
from __future__ import annotations

import collections
import logging
import queue
import threading
import time
from dataclasses import dataclass
from typing import Callable, Optional, Sequence

import grpc

from psi.config import PsiResult
from psi.core.engine import Engine
from psi.error_ids import fit_status_detail, internal_error_detail
from psi.identity import certificate_names
from psi.errors import (OutOfOrder, PeerError, PermissionDenied, ProtocolError, PsiConfigError, PsiError,
                        SessionExists, SessionTimeout)
from psi.protocol.base import peer_safe_reason
from psi.protocol.messages import Hello
from psi.protocol.session import check_hello, run_passive
from psi.transport import psi_pb2_grpc as pb_grpc
from psi.transport.codec import decode
from psi.transport.links import ServerLink, Unresumable, is_resume, resume_envelope

log = logging.getLogger("psi.server")


@dataclass(frozen=True)
class PeerInfo:
    """Who called: the identities of its verified TLS client certificate (see :func:`certificate_names`;
    empty without TLS)."""

    names: tuple[str, ...]
    address: str

    @property
    def authenticated(self) -> bool:
        return bool(self.names)

    def __contains__(self, name: str) -> bool:
        return name in self.names


def peer_info(context: grpc.ServicerContext) -> PeerInfo:
    auth = context.auth_context() or {}
    names = certificate_names([v.decode() for v in auth.get("x509_subject_alternative_name", [])],
                              [v.decode() for v in auth.get("x509_common_name", [])])
    return PeerInfo(tuple(names), context.peer() or "")


IdProvider = Callable[[Hello, PeerInfo], Sequence]
ResultCallback = Callable[[str, PsiResult], None]
ErrorCallback = Callable[[str, BaseException], None]
ProgressFactory = Callable[[Hello], Optional[Callable[[str, int, int], None]]]


def _status(exc: BaseException) -> grpc.StatusCode:
    return getattr(grpc.StatusCode, getattr(exc, "grpc_code", "INTERNAL"), grpc.StatusCode.INTERNAL)


class _Record:
    def __init__(self) -> None:
        self.done = threading.Event()
        self.result: Optional[PsiResult] = None
        self.error: Optional[BaseException] = None


class _Live:
    """A session running at this server: its link (which a resumed stream reattaches), who began it, its outcome."""

    def __init__(self, link: ServerLink, names: tuple[str, ...]):
        self.link = link
        self.names = names
        self.outcome: dict = {}


class PsiServicer(pb_grpc.PsiServicer):
    """``resume_seconds``: how long a session whose stream broke waits for its client to reattach it (0: it fails
    at once, as before resumable sessions)."""

    def __init__(self, id_provider: IdProvider, *, on_result: Optional[ResultCallback] = None,
                 on_error: Optional[ErrorCallback] = None, engine: Optional[Engine] = None,
                 workers: Optional[int] = None, timeout: float = 300.0, keep: int = 256,
                 progress: Optional[ProgressFactory] = None, resume_seconds: float = 0.0):
        self.id_provider = id_provider
        self.on_result = on_result
        self.on_error = on_error
        self._own_engine = engine is None
        self.engine = engine or Engine(workers)
        self.timeout = timeout
        self.progress = progress
        self._keep = keep
        self._lock = threading.Lock()
        self._started = threading.Condition(self._lock)
        self._records: "collections.OrderedDict[tuple[str, str], _Record]" = collections.OrderedDict()
        self._live: dict[tuple[str, str], _Live] = {}
        self.resume_seconds = resume_seconds
        self._seen: "collections.OrderedDict[tuple[str, str], None]" = collections.OrderedDict()

    # ------------------------------------------------------------------ results
    def _find(self, session_id: str, party: Optional[str]) -> Optional[_Record]:
        keys = [k for k in self._records if k[0] == session_id and (party is None or k[1] == party)]
        if len(keys) > 1:
            raise PsiConfigError(f"session {session_id} has several parties on this server ({[k[1] for k in keys]}); "
                                 "name the party")
        return self._records[keys[0]] if keys else None

    def wait_result(self, session_id: str, timeout: Optional[float] = None, party: Optional[str] = None) -> PsiResult:
        """Block until session ``session_id`` has finished here; return its result or raise its error.

        ``party`` selects the passive party when one server serves several of a session's parties."""
        end = None if timeout is None else time.monotonic() + timeout
        with self._lock:
            while (record := self._find(session_id, party)) is None:
                remaining = None if end is None else end - time.monotonic()
                if remaining is not None and remaining <= 0:
                    raise SessionTimeout(f"session {session_id} did not start within {timeout:g} s")
                self._started.wait(remaining)
        remaining = None if end is None else max(0.0, end - time.monotonic())
        if not record.done.wait(remaining):
            raise SessionTimeout(f"session {session_id} did not finish within {timeout:g} s")
        if record.error is not None:
            raise record.error
        return record.result

    def sessions(self) -> list[str]:
        with self._lock:
            return list(dict.fromkeys(k[0] for k in self._records))

    def _reserve(self, session_id: str, party: str) -> _Record:
        key = (session_id, party)
        with self._lock:
            if key in self._seen:
                raise SessionExists(f"session id {session_id!r} was already used on this server (for {party!r})")
            self._seen[key] = None
            while len(self._seen) > 100 * self._keep:
                self._seen.popitem(last=False)
            record = self._records[key] = _Record()
            self._started.notify_all()
            while len(self._records) > self._keep:
                old_id, old = next(iter(self._records.items()))
                if not old.done.is_set():
                    break
                self._records.popitem(last=False)
            return record

    # ------------------------------------------------------------------ the RPC
    def Session(self, request_iterator, context):
        try:
            first = next(request_iterator)
        except StopIteration:
            return
        except grpc.RpcError:
            return
        if is_resume(first):
            yield from self._resume(first, request_iterator, context)
            return
        try:
            hello = decode(first)
            if not isinstance(hello, Hello):
                raise OutOfOrder(f"session {hello.session_id}: the first message must be a hello, "
                                 f"got {type(hello).__name__}")
            check_hello(hello)
            peer = peer_info(context)
            record = self._reserve(hello.session_id, hello.recipient)
        except PsiError as exc:
            log.info("PSI session refused: %s", exc)
            context.abort(_status(exc), fit_status_detail(str(exc)))
            return
        try:
            ids = self.id_provider(hello, peer)
            if ids is None:
                raise PermissionDenied(f"session {hello.session_id}: no dataset for this session")
        except PsiError as exc:
            self._finish(hello.session_id, record, None, exc)
            context.abort(_status(exc), fit_status_detail(str(exc)))
            return
        except Exception as exc:  # the host's provider failed: its text stays in this party's log
            detail = internal_error_detail(exc, hello.recipient,
                                           f"in the PSI id provider for session {hello.session_id}", log)
            self._finish(hello.session_id, record, None, exc)
            context.abort(grpc.StatusCode.FAILED_PRECONDITION,
                          f"session {hello.session_id}: the serving party could not provide its IDs ({detail})")
            return

        inbox: queue.Queue = queue.Queue()
        active = hello.parties[0]
        link = ServerLink(request_iterator, active, inbox, resume_seconds=self.resume_seconds, alive=context.is_active)
        context.add_callback(lambda: link.stream_ended(0, PeerError(
            f"session {hello.session_id}: the connection to {active} ended", active, "CANCELLED")))
        live = _Live(link, peer.names)
        key = (hello.session_id, hello.recipient)
        with self._lock:
            self._live[key] = live

        def party() -> None:
            try:
                progress = self.progress(hello) if self.progress else None
                live.outcome["result"] = run_passive(link, inbox, hello, ids, engine=self.engine, progress=progress,
                                                     timeout=self.timeout)
            except BaseException as exc:
                live.outcome["error"] = exc
            finally:
                with self._lock:
                    self._live.pop(key, None)
                error = live.outcome.get("error")
                if error is not None:
                    log.info("PSI session %s failed: %s", hello.session_id, error)
                self._finish(hello.session_id, record, live.outcome.get("result"), error)
                link.close()  # ends the stream: its handler reports the outcome as its status

        threading.Thread(target=party, name=f"psi-{hello.session_id}", daemon=True).start()
        yield from link.responses(0, 0)
        self._report(context, live, 0, hello.recipient)

    def _resume(self, first, request_iterator, context):
        """A client reattaches a session whose stream broke (psi/transport/links.py): the same caller, the same
        session, and this party still holds everything the client missed; else the call is refused."""
        resume = first.resume
        sid = first.session_id
        with self._lock:
            live = self._live.get((sid, resume.recipient))
        if live is None:
            context.abort(grpc.StatusCode.NOT_FOUND, fit_status_detail(
                f"session {sid[:80]}: nothing to resume at {resume.recipient[:80]}: the session ended here, or "
                "never began"))
            return
        if peer_info(context).names != live.names:
            context.abort(grpc.StatusCode.PERMISSION_DENIED, f"session {sid}: only the party that began it may "
                                                             "resume it")
            return
        try:
            generation, received = live.link.attach(request_iterator, resume.received, alive=context.is_active)
        except Unresumable as exc:
            context.abort(grpc.StatusCode.FAILED_PRECONDITION, f"session {sid} cannot be resumed: {exc}")
            return
        log.info("PSI session %s resumed by %s (it had received %d envelopes, this party %d)", sid,
                 list(live.names) or "an uncertified peer", resume.received, received)
        context.add_callback(lambda: live.link.stream_ended(generation, PeerError(
            f"session {sid}: the connection to {live.link.peer} ended", live.link.peer, "CANCELLED")))
        yield resume_envelope(sid, resume.recipient, received)
        yield from live.link.responses(resume.received, generation)
        self._report(context, live, generation, resume.recipient)

    @staticmethod
    def _report(context, live: "_Live", generation: int, recipient: str) -> None:
        """The session's stream ended: if it is over (not handed to a newer stream), its error is this RPC's status."""
        if live.link.generation != generation:
            return
        error = live.outcome.get("error")
        if error is not None:
            details = str(error) if isinstance(error, ProtocolError) else peer_safe_reason(error, recipient)
            context.abort(_status(error), fit_status_detail(details))

    def _finish(self, session_id: str, record: _Record, result, error) -> None:
        record.result, record.error = result, error
        record.done.set()
        try:
            if error is None and self.on_result is not None:
                self.on_result(session_id, result)
            elif error is not None and self.on_error is not None:
                self.on_error(session_id, error)
        except Exception:
            log.exception("PSI result callback failed for session %s", session_id)

    def close(self) -> None:
        if self._own_engine:
            self.engine.close()


def add_psi_service(server: grpc.Server, id_provider: IdProvider, **kwargs) -> PsiServicer:
    """Mount the PSI service on an existing (not yet started) ``grpc.Server``; returns the servicer."""
    servicer = PsiServicer(id_provider, **kwargs)
    pb_grpc.add_PsiServicer_to_server(servicer, server)
    return servicer
