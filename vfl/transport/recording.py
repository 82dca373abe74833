"""Opt-in wire recording for audits and tests: every message a node's server receives or sends.

Set ``VFL_WIRE_RECORD_DIR`` in a node's environment and its gRPC server appends each message, with its
method and direction, to ``<dir>/<party>.wire`` (length-prefixed records). Inter-party traffic always
crosses some node's server, so recording every node sees all of it. Off unless the variable is set.
"""
from __future__ import annotations

import os
import struct
import threading
from pathlib import Path
from typing import Iterator

import grpc

ENV = "VFL_WIRE_RECORD_DIR"


class WireRecorder(grpc.ServerInterceptor):
    def __init__(self, path: Path):
        self.path = path
        self.lock = threading.Lock()
        path.parent.mkdir(parents=True, exist_ok=True)

    def write(self, method: str, direction: str, message, call: int = 0) -> None:
        data = message.SerializeToString()
        header = f"{method}\t{direction}\t{type(message).__name__}\t{call}".encode()
        with self.lock, open(self.path, "ab") as fh:
            fh.write(struct.pack("<II", len(header), len(data)) + header + data)

    def intercept_service(self, continuation, handler_call_details):
        handler = continuation(handler_call_details)
        if handler is None:
            return None
        method = handler_call_details.method
        recorder = self
        with self.lock:
            self.calls = getattr(self, "calls", 0) + 1
            call = self.calls  # concurrent calls interleave in the file; the call number keeps them apart

        def wrap_requests(iterator):
            for message in iterator:
                recorder.write(method, "request", message, call)
                yield message

        def wrap_responses(iterator):
            for message in iterator:
                recorder.write(method, "response", message, call)
                yield message

        if handler.stream_stream:
            inner = handler.stream_stream
            return handler._replace(stream_stream=lambda it, ctx: wrap_responses(inner(wrap_requests(it), ctx)))
        if handler.unary_unary:
            inner = handler.unary_unary

            def unary(request, ctx):
                recorder.write(method, "request", request, call)
                response = inner(request, ctx)
                recorder.write(method, "response", response, call)
                return response
            return handler._replace(unary_unary=unary)
        if handler.unary_stream:
            inner = handler.unary_stream

            def unary_stream(request, ctx):
                recorder.write(method, "request", request, call)
                return wrap_responses(inner(request, ctx))
            return handler._replace(unary_stream=unary_stream)
        if handler.stream_unary:
            inner = handler.stream_unary

            def stream_unary(it, ctx):
                response = inner(wrap_requests(it), ctx)
                recorder.write(method, "response", response, call)
                return response
            return handler._replace(stream_unary=stream_unary)
        return handler


def recorder_from_env(party: str) -> WireRecorder | None:
    directory = os.environ.get(ENV)
    return WireRecorder(Path(directory) / f"{party}.wire") if directory else None


def read_records(path: Path) -> Iterator[tuple[str, str, str, int, bytes]]:
    """(method, direction, message type, call number, serialized bytes) for each recorded message."""
    data = Path(path).read_bytes()
    pos = 0
    while pos < len(data):
        header_len, body_len = struct.unpack_from("<II", data, pos)
        pos += 8
        method, direction, type_name, call = data[pos:pos + header_len].decode().split("\t")
        pos += header_len
        yield method, direction, type_name, int(call), data[pos:pos + body_len]
        pos += body_len
