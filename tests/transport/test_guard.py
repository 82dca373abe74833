"""The node server's outermost interceptor: an exception that escapes a handler reaches the caller as an
error id, never as gRPC's default "Exception calling application: <text>"."""
from __future__ import annotations

import re
from concurrent import futures

import grpc
import pytest

from vfl.transport.guard import InternalErrorGuard

SECRET = "SECRET /srv/host/patients.csv"
ERROR_ID = re.compile(r"internal error at host \(error id ([0-9a-f]{8})\); details are in that node's log")


def _raise(*_):
    raise KeyError(SECRET)


def _stream_then_raise(request, context):
    yield b"first"
    raise KeyError(SECRET)


def _abort(request, context):
    context.abort(grpc.StatusCode.PERMISSION_DENIED, "guest may not do that")


HANDLERS = {
    "Unary": grpc.unary_unary_rpc_method_handler(_raise),
    "UnaryStream": grpc.unary_stream_rpc_method_handler(_stream_then_raise),
    "StreamUnary": grpc.stream_unary_rpc_method_handler(_raise),
    "StreamStream": grpc.stream_stream_rpc_method_handler(_stream_then_raise),
    "Abort": grpc.unary_unary_rpc_method_handler(_abort),
    "Ok": grpc.unary_unary_rpc_method_handler(lambda request, context: b"ok"),
}


@pytest.fixture(scope="module", params=[True, False], ids=["guarded", "unguarded"])
def server(request):
    """An in-process server with the test service, with and without the guard (the control)."""
    interceptors = [InternalErrorGuard("host")] if request.param else []
    srv = grpc.server(futures.ThreadPoolExecutor(max_workers=4), interceptors=interceptors)
    srv.add_generic_rpc_handlers((grpc.method_handlers_generic_handler("t.T", HANDLERS),))
    port = srv.add_insecure_port("127.0.0.1:0")
    srv.start()
    channel = grpc.insecure_channel(f"127.0.0.1:{port}")
    yield request.param, channel
    channel.close()
    srv.stop(0)


def _status(channel, kind: str) -> tuple[grpc.StatusCode, str]:
    path = f"/t.T/{kind}"
    calls = {"Unary": lambda: channel.unary_unary(path)(b"x"),
             "UnaryStream": lambda: list(channel.unary_stream(path)(b"x")),
             "StreamUnary": lambda: channel.stream_unary(path)(iter([b"x"])),
             "StreamStream": lambda: list(channel.stream_stream(path)(iter([b"x"]))),
             "Abort": lambda: channel.unary_unary(path)(b"x")}
    with pytest.raises(grpc.RpcError) as info:
        calls[kind]()
    return info.value.code(), info.value.details()


@pytest.mark.parametrize("kind", ["Unary", "UnaryStream", "StreamUnary", "StreamStream"])
def test_escaping_exceptions_become_an_error_id(server, kind, caplog):
    guarded, channel = server
    with caplog.at_level("ERROR", logger="vfl.transport"):
        code, details = _status(channel, kind)
    if not guarded:  # the control: what gRPC sends by itself
        assert SECRET in details and code == grpc.StatusCode.UNKNOWN
        return
    assert code == grpc.StatusCode.INTERNAL and SECRET not in details and "KeyError" not in details, details
    match = ERROR_ID.fullmatch(details)
    assert match, details
    assert match.group(1) in caplog.text and SECRET in caplog.text and "Traceback" in caplog.text


def test_a_chosen_status_passes_through_and_the_server_keeps_serving(server):
    _, channel = server
    assert _status(channel, "Abort") == (grpc.StatusCode.PERMISSION_DENIED, "guest may not do that")
    assert channel.unary_unary("/t.T/Ok")(b"x") == b"ok"
