"""gRPC links: the client end (active party) and the server end (passive party) of one ``Session`` stream.

Both decode incoming envelopes on a reader thread and post them to the party's inbox; sending only appends the
message to the link's log, which gRPC drains (the request iterator on the client, the response generator on the
server), so the party's loop never blocks on the network.

**Resumable sessions.** With ``resume_seconds`` > 0 a session outlives its stream. When the stream breaks (a cut
link, a stalled one that keepalive closed, a peer stopped for a while), the client opens a new ``Session`` call whose
first envelope is a ``Resume`` (the session, and how many envelopes it received); the server reattaches the
session's link to it, answers with its own count, and each side sends again from its log what the other did not
get. The parties' loops never notice: no message is lost, none arrives twice, and the session's keys and state never
leave the party that holds them. A server whose session lost its stream waits ``resume_seconds`` for the client to
come back before it fails the session; a client tries to reattach for as long. What can be sent again is bounded
(``MAX_REPLAY_BYTES`` per direction); past it the session still runs but can no longer be resumed.
"""
from __future__ import annotations

import queue
import threading
import time
from typing import Callable, Iterator, Optional

import grpc

from psi.errors import MalformedMessage, PeerError
from psi.protocol.link import EOF, Link
from psi.protocol.messages import Abort, Message
from psi.transport import psi_pb2 as pb
from psi.transport import psi_pb2_grpc as pb_grpc
from psi.transport.codec import decode, encode

#: envelopes kept for sending again after a broken stream, per link and direction
MAX_REPLAY_BYTES = 64 << 20
#: statuses of a broken stream after which a client tries to reattach its session
_RESUMABLE = frozenset({grpc.StatusCode.UNAVAILABLE, grpc.StatusCode.UNKNOWN, grpc.StatusCode.CANCELLED,
                        grpc.StatusCode.INTERNAL})


def _rpc_error(peer: str, exc: grpc.RpcError) -> PeerError:
    code = exc.code() if hasattr(exc, "code") else None
    name = code.name if code is not None else "UNKNOWN"
    details = exc.details() if hasattr(exc, "details") else str(exc)
    return PeerError(f"{peer}: {name}: {details}", peer, name)


def resume_envelope(session_id: str, recipient: str, received: int) -> pb.Envelope:
    return pb.Envelope(session_id=session_id, resume=pb.Resume(recipient=recipient, received=received))


def is_resume(env: pb.Envelope) -> bool:
    return env.WhichOneof("body") == "resume"


def _still(alive: Callable[[], bool], grace: float = 0.2) -> bool:
    """Whether an RPC is still up, allowing gRPC a moment to mark a broken one."""
    deadline = time.monotonic() + grace
    while time.monotonic() < deadline:
        if not alive():
            return False
        time.sleep(0.02)
    return alive()


class Unresumable(Exception):
    """The session cannot be resumed: what the peer missed is no longer kept."""


class SendLog:
    """Every envelope one end of a session sent, in order, each with its index; a stream reads it from any index.

    A new stream (a `generation`) makes the older ones stop. Past MAX_REPLAY_BYTES the log keeps only what the
    current stream has not yet taken, and `replayable` is False from then on.
    """

    def __init__(self, max_bytes: int = MAX_REPLAY_BYTES):
        self._cond = threading.Condition()
        self._items: list[pb.Envelope] = []
        self._base = 0           # index of _items[0]
        self._bytes = 0
        self._max_bytes = max_bytes
        self.bounded = False     # past the cap: some envelopes are gone
        self.closed = False
        self.generation = 0

    def append(self, env: pb.Envelope) -> None:
        with self._cond:
            self._items.append(env)
            if not self.bounded:
                self._bytes += env.ByteSize()
                self.bounded = self._bytes > self._max_bytes
            self._cond.notify_all()

    def close(self) -> None:
        with self._cond:
            self.closed = True
            self._cond.notify_all()

    def replayable(self, start: int) -> bool:
        with self._cond:
            return not self.bounded and start >= self._base

    def new_generation(self) -> int:
        with self._cond:
            self.generation += 1
            self._cond.notify_all()
            return self.generation

    def stream(self, start: int, generation: int) -> Iterator[pb.Envelope]:
        """Envelopes from index `start` on, waiting for new ones, until the log is closed and read, or a newer
        stream took over."""
        index = start
        while True:
            with self._cond:
                while True:
                    if self.generation != generation:
                        return
                    if index - self._base < len(self._items):
                        env = self._items[index - self._base]
                        if self.bounded:  # nothing can be sent again anyway: keep only what is still to send
                            del self._items[:index - self._base + 1]
                            self._base = index + 1
                        break
                    if self.closed:
                        return
                    self._cond.wait(0.5)
            yield env
            index += 1


class _LoggedSend(Link):
    """Sending appends the encoded message to the log that the current stream drains; closing ends the log."""
    _log: SendLog

    def send(self, msg: Message) -> None:
        if not self._log.closed:
            self._log.append(encode(msg))

    def close(self) -> None:
        self._log.close()


class ClientLink(_LoggedSend):
    """Opens ``Session`` on ``channel``; messages from the server go to ``inbox`` as ``(peer, item)``.

    With ``resume_seconds`` > 0, a broken stream is reattached (see the module's doc) for up to that long.
    """

    def __init__(self, channel: grpc.Channel, peer: str, inbox: queue.Queue,
                 metadata: Optional[list[tuple[str, str]]] = None, resume_seconds: float = 0.0):
        self.peer = peer
        self._inbox = inbox
        self._stub = pb_grpc.PsiStub(channel)
        self._metadata = metadata
        self._resume_seconds = resume_seconds
        self._log = SendLog()
        self._session_id: str | None = None
        self._received = 0
        self._cancelled = False
        self._finished = threading.Event()
        self.resumed = 0  # how many times the session's stream was reattached
        self._call = self._stub.Session(self._log.stream(0, 0), metadata=metadata)
        self._reader = threading.Thread(target=self._read, name=f"psi-recv-{peer}", daemon=True)
        self._reader.start()

    def send(self, msg: Message) -> None:
        self._session_id = self._session_id or msg.session_id
        super().send(msg)

    def _read(self) -> None:
        call = self._call
        try:
            while True:
                try:
                    for env in call:
                        if is_resume(env):
                            raise MalformedMessage(f"{self.peer}: a Resume in the middle of a session")
                        msg = decode(env)
                        self._received += 1
                        self._inbox.put((self.peer, msg))
                    self._inbox.put((self.peer, EOF))
                    return
                except MalformedMessage as exc:
                    self._inbox.put((self.peer, exc))
                    return
                except grpc.RpcError as exc:
                    if self._cancelled:
                        return
                    call = self._reattach(exc)
                    if call is None:
                        return
        finally:
            self._finished.set()

    def _reattach(self, broken: grpc.RpcError):
        """A new call carrying the session on, or None (the error is then posted) if it cannot be resumed."""
        session_id = self._session_id
        if self._resume_seconds <= 0 or session_id is None or broken.code() not in _RESUMABLE:
            self._inbox.put((self.peer, _rpc_error(self.peer, broken)))
            return None
        deadline = time.monotonic() + self._resume_seconds
        last: grpc.RpcError = broken
        while time.monotonic() < deadline and not self._cancelled:
            generation = self._log.new_generation()  # the broken stream stops reading the log
            start: dict[str, int] = {}
            ready = threading.Event()

            def requests() -> Iterator[pb.Envelope]:
                yield resume_envelope(session_id, self.peer, self._received)
                while not ready.wait(0.5):
                    if self._log.generation != generation:
                        return
                yield from self._log.stream(start["from"], generation)
            call = self._stub.Session(requests(), metadata=self._metadata)
            try:
                answer = next(call)
            except StopIteration:
                break
            except grpc.RpcError as exc:
                last = exc
                if exc.code() not in _RESUMABLE:  # the server refused the resume: the session is over there
                    break
                time.sleep(0.5)
                continue
            if not is_resume(answer) or not self._log.replayable(answer.resume.received):
                call.cancel()
                break
            start["from"] = answer.resume.received
            ready.set()
            self._call = call
            self.resumed += 1
            return call
        self._inbox.put((self.peer, _rpc_error(self.peer, last)))
        return None

    def abort(self, session_id: str, code: str, reason: str) -> None:
        self.send(Abort(session_id, code, reason))
        self.close()
        # Give the abort a moment to reach the server, then tear the stream down.
        timer = threading.Timer(2.0, self.cancel)
        timer.daemon = True
        timer.start()

    def cancel(self) -> None:
        self._cancelled = True
        self._call.cancel()

    def shutdown(self, timeout: float = 10.0) -> None:
        """After the session: wait for the server to end its stream, then release the call."""
        self.close()
        if not self._finished.wait(timeout):
            self.cancel()


class ServerLink(_LoggedSend):
    """The passive party's end: reads the rest of ``request_iterator`` (after the hello) on a thread.

    With ``resume_seconds`` > 0, a stream that breaks is given that long for the client to reattach (`attach`)
    before the session is told its peer is gone.
    """

    def __init__(self, request_iterator, peer: str, inbox: queue.Queue, resume_seconds: float = 0.0,
                 alive: Callable[[], bool] = lambda: True, received: int = 1):
        self.peer = peer
        self._inbox = inbox
        self._resume_seconds = resume_seconds
        self._log = SendLog()
        self._lock = threading.Lock()
        self._received = received  # the hello, which the servicer read before the link existed
        self._timer: threading.Timer | None = None
        self._start_reader(request_iterator, 0, alive)

    def _start_reader(self, requests, generation: int, alive: Callable[[], bool]) -> None:
        threading.Thread(target=self._read, args=(requests, generation, alive), name=f"psi-recv-{self.peer}",
                         daemon=True).start()

    def _post(self, generation: int, item, count: bool = False) -> bool:
        """Post to the party's inbox unless a newer stream took over; False if one did."""
        with self._lock:
            if generation != self._log.generation:
                return False
            if count:
                self._received += 1
            self._inbox.put((self.peer, item))
            return True

    def _read(self, requests, generation: int, alive: Callable[[], bool]) -> None:
        try:
            for env in requests:
                try:
                    msg = decode(env)
                except MalformedMessage as exc:
                    self._post(generation, exc)
                    return
                if not self._post(generation, msg, count=True):
                    return
            # gRPC ends the requests of a broken call as quietly as a client that finished sending: tell them apart
            if self._resume_seconds > 0 and not _still(alive):
                self.stream_ended(generation, PeerError(f"{self.peer}: the stream broke", self.peer, "UNAVAILABLE"))
                return
            self._post(generation, EOF)
        except grpc.RpcError as exc:
            self.stream_ended(generation, _rpc_error(self.peer, exc))
        except Exception as exc:  # the RPC was torn down under us
            self.stream_ended(generation, PeerError(f"{self.peer}: stream failed: {exc}", self.peer, "UNAVAILABLE"))

    def stream_ended(self, generation: int, error: PeerError) -> None:
        """Stream `generation` broke or its RPC ended: the session fails unless the client reattaches in time."""
        with self._lock:
            if generation != self._log.generation or self._log.closed or self._timer is not None:
                return
            if self._resume_seconds <= 0 or self._log.bounded:
                self._inbox.put((self.peer, error))
                return

            def give_up() -> None:
                with self._lock:
                    if self._timer is timer:
                        self._inbox.put((self.peer, error))
            timer = self._timer = threading.Timer(self._resume_seconds, give_up)
            timer.daemon = True
            timer.start()

    def attach(self, request_iterator, client_received: int,
               alive: Callable[[], bool] = lambda: True) -> tuple[int, int]:
        """Carry the session on over a new stream: (its generation, the envelopes received from the client)."""
        with self._lock:
            if self._log.closed or not self._log.replayable(client_received):
                raise Unresumable("what the client missed is no longer kept here")
            generation = self._log.new_generation()  # the old stream's reader and responses stop
            if self._timer is not None:
                self._timer.cancel()
                self._timer = None
            received = self._received
        self._start_reader(request_iterator, generation, alive)
        return generation, received

    def responses(self, start: int = 0, generation: int = 0) -> Iterator[pb.Envelope]:
        return self._log.stream(start, generation)

    @property
    def generation(self) -> int:
        return self._log.generation

    def close(self) -> None:
        with self._lock:
            if self._timer is not None:
                self._timer.cancel()
                self._timer = None
        super().close()

    def abort(self, session_id: str, code: str, reason: str) -> None:
        # The server reports failures as the RPC's status (set by the servicer), not as an Abort message.
        self.close()

