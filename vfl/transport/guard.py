"""The net under every handler of a node's server: no exception text reaches a caller by accident.

gRPC turns an exception that escapes a handler into a status whose details hold the exception's text
("Exception calling application: ...", "Exception iterating responses: ..."). Handlers map the errors they
expect to statuses themselves (`chunking.unary_handler`, the PSI servicer); anything that still escapes, from
any service or interceptor inside this one, becomes INTERNAL with an error id, and the exception goes to
this node's log under the same id (`psi.error_ids`).
"""
from __future__ import annotations

import logging
from typing import Any, Callable

import grpc

from psi.error_ids import internal_error_detail

log = logging.getLogger("vfl.transport")


class _Context:
    """The servicer context, noting whether the handler aborted on purpose (abort raises an Exception)."""

    def __init__(self, context: grpc.ServicerContext):
        self._context = context
        self.aborted = False

    def abort(self, code: grpc.StatusCode, details: str):
        self.aborted = True
        self._context.abort(code, details)

    def abort_with_status(self, status):
        self.aborted = True
        self._context.abort_with_status(status)

    def __getattr__(self, name: str) -> Any:
        return getattr(self._context, name)


class InternalErrorGuard(grpc.ServerInterceptor):
    """Outermost server interceptor of a node: see the module docstring."""

    def __init__(self, party: str):
        self.party = party

    def _detail(self, exc: Exception, method: str) -> str:
        return internal_error_detail(exc, self.party, f"in {method}", log)

    def _single(self, inner: Callable, method: str) -> Callable:
        def handle(request, context):
            guarded = _Context(context)
            try:
                return inner(request, guarded)
            except Exception as exc:  # noqa: BLE001 - mapped to INTERNAL with an error id
                if guarded.aborted:  # the handler chose its status and message
                    raise
                context.abort(grpc.StatusCode.INTERNAL, self._detail(exc, method))
        return handle

    def _streaming(self, inner: Callable, method: str) -> Callable:
        def handle(request, context):
            guarded = _Context(context)
            try:
                yield from inner(request, guarded)
            except Exception as exc:  # noqa: BLE001 - mapped to INTERNAL with an error id
                if guarded.aborted:
                    raise
                context.abort(grpc.StatusCode.INTERNAL, self._detail(exc, method))
        return handle

    def intercept_service(self, continuation, handler_call_details):
        handler = continuation(handler_call_details)
        if handler is None:
            return None
        method = handler_call_details.method
        if handler.unary_unary:
            return handler._replace(unary_unary=self._single(handler.unary_unary, method))
        if handler.stream_unary:
            return handler._replace(stream_unary=self._single(handler.stream_unary, method))
        if handler.unary_stream:
            return handler._replace(unary_stream=self._streaming(handler.unary_stream, method))
        if handler.stream_stream:
            return handler._replace(stream_stream=self._streaming(handler.stream_stream, method))
        return handler
