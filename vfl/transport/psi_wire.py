"""PSI traffic in a job's wire ledger, so each party's privacy report covers PSI as well as training.

`psi` knows nothing about jobs or ledgers, so the counting happens around it, at the gRPC layer:
* the active party wraps the channels it hands to ``psi.transport.run_session`` (client interceptor);
* every node's server counts the PSI stream of a session whose hello names an open passive job.

A PSI message's kind is its envelope body, plus the stage for bulk chunks, e.g. ``PsiEnvelope.chunk.BLINDED``;
its size is its serialized length. The same naming is what the wire-inspection test derives from raw records.
"""
from __future__ import annotations

from typing import Callable, Iterator

import grpc

from psi.transport import psi_pb2 as psi_pb

PSI_METHOD_PREFIX = "/psi.v1.Psi/"


def psi_kind(envelope: psi_pb.Envelope) -> str:
    body = envelope.WhichOneof("body")
    if body is None:
        return "PsiEnvelope.empty"
    stage = getattr(getattr(envelope, body), "stage", 0)  # only bulk chunks and sealed messages have one
    return f"PsiEnvelope.{body}.{psi_pb.Stage.Name(stage)}" if stage else f"PsiEnvelope.{body}"


def _counted(messages: Iterator, record: Callable[[psi_pb.Envelope], None]) -> Iterator:
    for message in messages:
        record(message)
        yield message


class _CountedCall:
    """The client's response stream, counting each envelope; everything else goes to the real call."""

    def __init__(self, call, record: Callable[[psi_pb.Envelope], None]):
        self._call = call
        self._record = record

    def __iter__(self):
        return self

    def __next__(self):
        message = next(self._call)
        self._record(message)
        return message

    def __getattr__(self, name):
        return getattr(self._call, name)


class _ClientCounter(grpc.StreamStreamClientInterceptor):
    def __init__(self, ledger, peer: str):
        self.ledger, self.peer = ledger, peer

    def _record(self, direction: str) -> Callable[[psi_pb.Envelope], None]:
        return lambda env: self.ledger.record(direction, self.peer, psi_kind(env), env.ByteSize())

    def intercept_stream_stream(self, continuation, client_call_details, request_iterator):
        call = continuation(client_call_details, _counted(request_iterator, self._record("sent")))
        return _CountedCall(call, self._record("received"))


def counted_channel(channel: grpc.Channel, ledger, peer: str) -> grpc.Channel:
    """``channel`` with every PSI envelope sent to / received from ``peer`` recorded in ``ledger``."""
    return grpc.intercept_channel(channel, _ClientCounter(ledger, peer))


class PsiServerCounter(grpc.ServerInterceptor):
    """Counts a PSI session in the ledger of the passive job its hello names (job_id in the metadata).

    ``find_job(job_id)`` returns the open passive job or None; sessions for no open job (refused by the PSI
    service anyway) and non-PSI methods pass through untouched.
    """

    def __init__(self, find_job: Callable[[str], object | None]):
        self.find_job = find_job

    def intercept_service(self, continuation, handler_call_details):
        handler = continuation(handler_call_details)
        if handler is None or not handler.stream_stream or \
                not handler_call_details.method.startswith(PSI_METHOD_PREFIX):
            return handler
        inner = handler.stream_stream
        state: dict = {"job": None, "hello": False, "pending": []}

        def record(direction: str, env: psi_pb.Envelope) -> None:
            if not state["hello"] and env.WhichOneof("body") == "hello":
                state["hello"] = True
                state["job"] = self.find_job(env.hello.metadata.get("job_id", ""))
            job = state["job"]
            if job is None:
                if not state["hello"]:  # the hello comes first; keep anything before it until it names the job
                    state["pending"].append((direction, env))
                return
            for d, e in state["pending"] + [(direction, env)]:
                job.ledger.record(d, job.active, psi_kind(e), e.ByteSize())
            state["pending"].clear()

        def behavior(request_iterator, context):
            requests = _counted(request_iterator, lambda env: record("received", env))
            return _counted(inner(requests, context), lambda env: record("sent", env))

        return handler._replace(stream_stream=behavior)
