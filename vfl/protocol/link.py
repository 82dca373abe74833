"""A link carries one party's requests to one peer and brings back the reply: the runtimes' only way out.

Two implementations: `vfl.transport.party_link.GrpcPartyLink` (node to node, mutual TLS, chunked) and
`InProcessLink` here, which hands each request to a handler in the same process, so a whole job can run in one
process in tests. Both report a refused call the same way, as `PeerCallError` with the status name the error
class carries (vfl.errors), and never let a peer's internal error text through.
"""
from __future__ import annotations

import logging
from typing import Callable, Optional, Protocol

from vfl.errors import INTERNAL, PeerCallError, status_of
from vfl.protocol.messages import METHOD, REPLY_TO, Reply, Request

log = logging.getLogger("vfl.link")

#: what a link reports after a call: the handler time the peer reported, or None (peers report it only when their
#: node config says so, for benchmarks)
HandlerSeconds = Callable[[Optional[float]], None]


class PartyLink(Protocol):
    peer: str

    def call(self, request: Request, on_handler_seconds: HandlerSeconds | None = None) -> Reply: ...


def check_reply(request: Request, reply: Reply) -> Reply:
    expected = REPLY_TO[type(request)]
    if not isinstance(reply, expected):
        raise TypeError(f"{METHOD[type(request)]} answered with {type(reply).__name__}, expected {expected.__name__}")
    return reply


class InProcessLink:
    """A link to a handler in this process: ``handler(request) -> reply``, errors as the gRPC link reports them.

    ``tamper(message) -> message``, if given, sees every request before the handler and every reply after it:
    tests use it to play a peer that alters what crosses the link.
    """

    def __init__(self, peer: str, handler: Callable[[Request], Reply],
                 tamper: Callable[[object], object] | None = None):
        self.peer = peer
        self.handler = handler
        self.tamper = tamper or (lambda message: message)

    def call(self, request: Request, on_handler_seconds: HandlerSeconds | None = None) -> Reply:
        method = METHOD[type(request)]
        try:  # a tamper that raises on the reply plays a reply lost on its way back
            reply = self.tamper(self.handler(self.tamper(request)))
        except Exception as exc:  # noqa: BLE001 - reported as the gRPC link would: a status, not a traceback
            status = status_of(exc)
            detail = str(exc) if status != INTERNAL else "internal error (see the peer's log)"
            if status == INTERNAL:
                log.exception("in-process peer %s failed in %s", self.peer, method)
            raise PeerCallError(self.peer, method, status, detail) from None
        if on_handler_seconds is not None:
            on_handler_seconds(None)
        return check_reply(request, reply)
