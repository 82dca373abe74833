"""Split protobuf payloads into <= 1 MiB chunks and put them back together, with a size limit.

A logical payload is a sequence of `Chunk`s whose last one has ``last = true``. Streams may carry several
payloads one after another (job events). The receiver refuses a payload larger than its limit before
buffering it, so a peer cannot make a node hold gigabytes.
"""
from __future__ import annotations

import logging
import math
import time
from typing import Callable, Iterable, Iterator, TypeVar

import grpc
from google.protobuf.message import DecodeError, Message

from psi.error_ids import fit_status_detail, internal_error_detail
from vfl.errors import PayloadTooLarge, PeerCallError, ProtocolError, status_of
from vfl.transport.proto import node_pb2

CHUNK_BYTES = 1 << 20
DEFAULT_MAX_PAYLOAD = 512 << 20
# Trailing metadata with the server's time inside the handler, sent only when the node config sets
# `report_handler_timing` (benchmarks): the time of the passive party's handlers depends on its data (the
# multi-exponentiation skips zero digits of activations that end in ReLU), so by default it stays home.
HANDLER_SECONDS = "vfl-handler-seconds"

log = logging.getLogger("vfl.transport")

M = TypeVar("M", bound=Message)


def to_chunks(message: Message, chunk_bytes: int = CHUNK_BYTES) -> Iterator[node_pb2.Chunk]:
    data = message.SerializeToString()
    if not data:
        yield node_pb2.Chunk(data=b"", last=True)
        return
    for start in range(0, len(data), chunk_bytes):
        end = start + chunk_bytes
        yield node_pb2.Chunk(data=data[start:end], last=end >= len(data))


def read_payloads(chunks: Iterable[node_pb2.Chunk], max_bytes: int = DEFAULT_MAX_PAYLOAD) -> Iterator[bytes]:
    """Yield each complete payload from a chunk stream; a stream ending mid-payload is an error."""
    parts: list[bytes] = []
    size = 0
    for chunk in chunks:
        size += len(chunk.data)
        if size > max_bytes:
            raise PayloadTooLarge(f"payload exceeds the {max_bytes >> 20} MiB limit")
        parts.append(chunk.data)
        if chunk.last:
            yield b"".join(parts)
            parts, size = [], 0
    if parts:
        raise ProtocolError("stream ended in the middle of a payload (no chunk marked last)")


def parse(message_type: type[M], data: bytes) -> M:
    msg = message_type()
    try:
        msg.ParseFromString(data)
    except DecodeError:
        raise ProtocolError(f"payload is not a valid {message_type.__name__} message") from None
    return msg


def read_one(chunks: Iterable[node_pb2.Chunk], message_type: type[M], max_bytes: int = DEFAULT_MAX_PAYLOAD) -> M:
    for payload in read_payloads(chunks, max_bytes):
        return parse(message_type, payload)
    raise ProtocolError(f"no {message_type.__name__} payload received")


# ------------------------------------------------------------------------------------------ server side

def status_for(exc: BaseException) -> grpc.StatusCode:
    """The gRPC status of an error: the one its class names (vfl.errors), INTERNAL for anything else."""
    return getattr(grpc.StatusCode, status_of(exc), grpc.StatusCode.INTERNAL)


def peer_detail(exc: BaseException, party: str, during: str) -> str:
    """The status detail a caller gets for `exc`.

    Errors the caller caused (or a refusal) carry their own message, written to be peer-safe. Anything else
    is internal: the caller gets an error id, this node's log the exception under the same id.
    """
    if status_for(exc) != grpc.StatusCode.INTERNAL:
        return fit_status_detail(str(exc))
    return internal_error_detail(exc, party, during, log)


def unary_handler(request_type: type[M], handler: Callable[[M, grpc.ServicerContext], Message],
                  max_bytes: int = DEFAULT_MAX_PAYLOAD, *, party: str, report_timing: bool = False):
    """Adapt ``handler(request, context) -> reply`` to a chunk-stream RPC with clear error statuses.

    Errors a peer caused become INVALID_ARGUMENT / NOT_FOUND / FAILED_PRECONDITION with the reason;
    anything else becomes INTERNAL with an error id (see `peer_detail`). Either way the node keeps serving.
    With `report_timing`, the reply's trailing metadata carries the handler time (HANDLER_SECONDS).
    """
    during = f"handling {request_type.__name__}"

    def rpc(request_iterator, context: grpc.ServicerContext):
        try:
            try:
                request = read_one(request_iterator, request_type, max_bytes)
            except ProtocolError as exc:  # never reached the handler, which logs what it refuses
                log.warning("refused a %s from %s before reading it: %s", request_type.__name__, context.peer(), exc)
                raise
            start = time.perf_counter()
            reply = handler(request, context)
            if report_timing:  # lets a benchmark's caller tell transport time from the peer's work
                context.set_trailing_metadata(((HANDLER_SECONDS, f"{time.perf_counter() - start:.6f}"),))
        except Exception as exc:  # noqa: BLE001 - mapped to a status, never crashes the server
            context.abort(status_for(exc), peer_detail(exc, party, during))
        yield from to_chunks(reply)
    return rpc


def stream_handler(request_type: type[M], handler: Callable[[M, grpc.ServicerContext], Iterable[Message]],
                   max_bytes: int = 16 << 20, *, party: str):
    """Adapt ``handler(request, context) -> iterable of replies`` (e.g. job events)."""
    during = f"handling {request_type.__name__}"

    def rpc(request_iterator, context: grpc.ServicerContext):
        try:
            request = read_one(request_iterator, request_type, max_bytes)
            for reply in handler(request, context):
                yield from to_chunks(reply)
        except Exception as exc:  # noqa: BLE001
            context.abort(status_for(exc), peer_detail(exc, party, during))
    return rpc


# ------------------------------------------------------------------------------------------ client side

def call_unary(peer: str, method_name: str, method: Callable, request: Message, reply_type: type[M],
               timeout: float | None = None, max_bytes: int = DEFAULT_MAX_PAYLOAD,
               on_handler_seconds: Callable[[float | None], None] | None = None) -> M:
    """One request, one reply, both chunked.

    `on_handler_seconds` gets the handler time the peer reported, or None: peers report it only when their
    node config says so (`report_handler_timing`, for benchmarks).
    """
    try:
        call = method(to_chunks(request), timeout=timeout)
        reply = read_one(call, reply_type, max_bytes)
    except grpc.RpcError as exc:
        raise PeerCallError(peer, method_name, exc.code().name, exc.details() or "") from None
    if on_handler_seconds is not None:
        on_handler_seconds(handler_seconds(call))
    return reply


def handler_seconds(call) -> float | None:
    """The handler time a peer reported in its trailing metadata; None if it sent none or garbage."""
    try:
        for key, value in call.trailing_metadata() or ():
            if key == HANDLER_SECONDS:
                seconds = float(value)
                return seconds if math.isfinite(seconds) and seconds >= 0 else None
    except (AttributeError, ValueError, grpc.RpcError):
        pass
    return None


def call_stream(peer: str, method_name: str, method: Callable, request: Message, reply_type: type[M],
                timeout: float | None = None, max_bytes: int = 16 << 20) -> Iterator[M]:
    try:
        for payload in read_payloads(method(to_chunks(request), timeout=timeout), max_bytes):
            yield parse(reply_type, payload)
    except grpc.RpcError as exc:
        raise PeerCallError(peer, method_name, exc.code().name, exc.details() or "") from None
