"""Server interceptors for PSI tests: see (and optionally replace) every response envelope a server streams."""
from __future__ import annotations

import grpc


class ResponseStreamInterceptor(grpc.ServerInterceptor):
    """Passes each response of a stream-stream handler through :meth:`on_response` before it is sent."""

    def on_response(self, response):
        return response

    def intercept_service(self, continuation, handler_call_details):
        handler = continuation(handler_call_details)
        if handler is None or handler.stream_stream is None:
            return handler
        inner = handler.stream_stream

        def wrapped(request_iterator, context):
            for response in inner(request_iterator, context):
                yield self.on_response(response)

        return grpc.stream_stream_rpc_method_handler(wrapped, request_deserializer=handler.request_deserializer,
                                                     response_serializer=handler.response_serializer)
