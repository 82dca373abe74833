"""The gRPC link from an active party to one passive party: typed messages over node.proto's Party service."""
from __future__ import annotations

import grpc

from vfl.protocol.link import HandlerSeconds, check_reply
from vfl.protocol.messages import METHOD, REPLY_TO, Reply, Request
from vfl.transport import serde
from vfl.transport.chunking import DEFAULT_MAX_PAYLOAD, call_unary
from vfl.transport.proto import node_pb2_grpc as pb_grpc

#: seconds a single call may take before it fails, unless the node config says otherwise (timeouts.call_seconds)
CALL_TIMEOUT = 600.0


class GrpcPartyLink:
    def __init__(self, peer: str, channel: grpc.Channel, metadata: tuple[tuple[str, str], ...] = (),
                 timeout: float = CALL_TIMEOUT, max_bytes: int = DEFAULT_MAX_PAYLOAD, wait_for_ready: bool = False):
        """`wait_for_ready`: a call waits (within its timeout) for a channel that is reconnecting, e.g. to a peer
        that just restarted, instead of failing at once (online scoring: one request, no job to resume)."""
        self.peer = peer
        self.wait_for_ready = wait_for_ready
        self.stub = pb_grpc.PartyStub(channel)
        self.metadata = metadata
        self.timeout = timeout
        self.max_bytes = max_bytes

    def call(self, request: Request, on_handler_seconds: HandlerSeconds | None = None) -> Reply:
        name = METHOD[type(request)]
        method = getattr(self.stub, name)

        def invoke(chunks, timeout):
            return method(chunks, timeout=timeout, metadata=self.metadata, wait_for_ready=self.wait_for_ready)
        reply = call_unary(self.peer, name, invoke, serde.to_pb(request), serde.pb_type(REPLY_TO[type(request)]),
                           timeout=self.timeout, max_bytes=self.max_bytes, on_handler_seconds=on_handler_seconds)
        return check_reply(request, serde.from_pb(reply))
