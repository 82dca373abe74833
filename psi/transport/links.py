"""gRPC links: the client end (active party) and the server end (passive party) of one ``Session`` stream.

Both decode incoming envelopes on a reader thread and post them to the party's inbox; sending only puts
the message on a queue that gRPC drains (the request iterator on the client, the response generator on
the server), so the party's loop never blocks on the network.
"""
from __future__ import annotations

import queue
import threading
from typing import Iterator, Optional

import grpc

from psi.errors import MalformedMessage, PeerError
from psi.protocol.link import EOF, Link
from psi.protocol.messages import Abort, Message
from psi.transport import psi_pb2 as pb
from psi.transport import psi_pb2_grpc as pb_grpc
from psi.transport.codec import decode, encode

_END = object()


def _rpc_error(peer: str, exc: grpc.RpcError) -> PeerError:
    code = exc.code() if hasattr(exc, "code") else None
    name = code.name if code is not None else "UNKNOWN"
    details = exc.details() if hasattr(exc, "details") else str(exc)
    return PeerError(f"{peer}: {name}: {details}", peer, name)


def _drain(out: queue.Queue) -> Iterator[pb.Envelope]:
    """Encode queued messages for gRPC until the end marker."""
    while True:
        item = out.get()
        if item is _END:
            return
        yield encode(item)


def _post_incoming(envelopes, peer: str, inbox: queue.Queue) -> None:
    """Decode a peer's envelopes into the inbox; a malformed one is posted as the error and ends reading."""
    for env in envelopes:
        try:
            msg = decode(env)
        except MalformedMessage as exc:
            inbox.put((peer, exc))
            return
        inbox.put((peer, msg))
    inbox.put((peer, EOF))


class _QueuedSend(Link):
    """Sending puts the message on a queue that gRPC drains; closing queues the end marker once."""
    _out: queue.Queue
    _closed: bool

    def send(self, msg: Message) -> None:
        if not self._closed:
            self._out.put(msg)

    def close(self) -> None:
        if not self._closed:
            self._closed = True
            self._out.put(_END)


class ClientLink(_QueuedSend):
    """Opens ``Session`` on ``channel``; messages from the server go to ``inbox`` as ``(peer, item)``."""

    def __init__(self, channel: grpc.Channel, peer: str, inbox: queue.Queue,
                 metadata: Optional[list[tuple[str, str]]] = None):
        self.peer = peer
        self._inbox = inbox
        self._out: queue.Queue = queue.Queue()
        self._closed = False
        self._cancelled = False
        self._finished = threading.Event()
        self._call = pb_grpc.PsiStub(channel).Session(self._requests(), metadata=metadata)
        self._reader = threading.Thread(target=self._read, name=f"psi-recv-{peer}", daemon=True)
        self._reader.start()

    def _requests(self) -> Iterator[pb.Envelope]:
        return _drain(self._out)

    def _read(self) -> None:
        try:
            _post_incoming(self._call, self.peer, self._inbox)
        except grpc.RpcError as exc:
            if not self._cancelled:
                self._inbox.put((self.peer, _rpc_error(self.peer, exc)))
        finally:
            self._finished.set()

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


class ServerLink(_QueuedSend):
    """The passive party's end: reads the rest of ``request_iterator`` (after the hello) on a thread."""

    def __init__(self, request_iterator, peer: str, inbox: queue.Queue):
        self.peer = peer
        self._inbox = inbox
        self._requests = request_iterator
        self._out: queue.Queue = queue.Queue()
        self._closed = False
        self._reader = threading.Thread(target=self._read, name=f"psi-recv-{peer}", daemon=True)
        self._reader.start()

    def _read(self) -> None:
        try:
            _post_incoming(self._requests, self.peer, self._inbox)
        except grpc.RpcError as exc:
            self._inbox.put((self.peer, _rpc_error(self.peer, exc)))
        except Exception as exc:  # the RPC was torn down under us
            self._inbox.put((self.peer, PeerError(f"{self.peer}: stream failed: {exc}", self.peer, "UNAVAILABLE")))

    def responses(self) -> Iterator[pb.Envelope]:
        return _drain(self._out)

    def abort(self, session_id: str, code: str, reason: str) -> None:
        # The server reports failures as the RPC's status (set by the servicer), not as an Abort message.
        self.close()
