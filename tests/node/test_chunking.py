from __future__ import annotations

import pytest

from vfl.errors import ProtocolError
from vfl.transport.chunking import PayloadTooLarge, parse, read_one, read_payloads, to_chunks
from vfl.transport.proto import node_pb2 as pb


def test_large_payload_is_split_and_reassembled():
    msg = pb.ForwardReply(z_ciphertexts=bytes(range(256)) * 40_000)  # ~10 MB, over gRPC's 4 MiB default
    chunks = list(to_chunks(msg))
    assert len(chunks) >= 10 and all(len(c.data) <= 1 << 20 for c in chunks)
    assert [c.last for c in chunks].count(True) == 1
    assert read_one(iter(chunks), pb.ForwardReply) == msg


def test_payload_limit_is_enforced_before_buffering():
    msg = pb.ForwardReply(z_ciphertexts=b"x" * (3 << 20))
    with pytest.raises(PayloadTooLarge):
        read_one(to_chunks(msg), pb.ForwardReply, max_bytes=1 << 20)


def test_truncated_stream_and_garbage_are_protocol_errors():
    chunks = list(to_chunks(pb.ForwardReply(z_ciphertexts=b"y" * (3 << 20))))
    with pytest.raises(ProtocolError, match="middle of a payload"):
        list(read_payloads(iter(chunks[:-1])))
    with pytest.raises(ProtocolError, match="not a valid"):
        parse(pb.ForwardRequest, b"\xff\xff\xff\xff")


def test_several_payloads_in_one_stream():
    events = [pb.JobEvent(job_id="j", message=str(i)) for i in range(3)]
    stream = [c for e in events for c in to_chunks(e)]
    assert [parse(pb.JobEvent, p).message for p in read_payloads(iter(stream))] == ["0", "1", "2"]


def test_handler_seconds_reads_the_peers_trailing_metadata_and_ignores_garbage():
    from types import SimpleNamespace

    from vfl.transport.chunking import HANDLER_SECONDS, handler_seconds

    def call(metadata) -> SimpleNamespace:
        return SimpleNamespace(trailing_metadata=lambda: metadata)

    assert handler_seconds(call(((HANDLER_SECONDS, "1.25"),))) == 1.25
    assert handler_seconds(call((("other", "2"), (HANDLER_SECONDS, "0"),))) == 0.0
    # nothing reported (the default: peers keep their handler time) and garbage are both "unknown", not 0
    for garbage in ("not a number", "-3", "nan", "inf"):
        assert handler_seconds(call(((HANDLER_SECONDS, garbage),))) is None, garbage
    assert handler_seconds(call(None)) is None
    assert handler_seconds(call((("other", "2"),))) is None


class _Aborted(Exception):
    pass


class _Context:
    """Stands in for grpc.ServicerContext: keeps the trailing metadata and the abort status."""

    def __init__(self):
        self.trailing: tuple = ()
        self.status: tuple | None = None

    def set_trailing_metadata(self, metadata) -> None:
        self.trailing = tuple(metadata)

    def abort(self, code, details):
        self.status = (code, details)
        raise _Aborted(details)


def _serve(handler, report_timing: bool = False) -> _Context:
    """Run a ForwardRequest through unary_handler(handler); the context it left behind."""
    from vfl.transport.chunking import unary_handler
    rpc = unary_handler(pb.ForwardRequest, handler, report_timing=report_timing)
    context = _Context()
    try:
        list(rpc(to_chunks(pb.ForwardRequest(job_id="j")), context))
    except _Aborted:
        pass
    return context


def test_handler_time_is_sent_only_when_the_node_reports_it():
    from vfl.transport.chunking import HANDLER_SECONDS, handler_seconds
    from types import SimpleNamespace
    reply = lambda request, context: pb.ForwardReply(z_ciphertexts=b"z")  # noqa: E731
    assert _serve(reply).trailing == ()  # the default
    sent = _serve(reply, report_timing=True).trailing
    assert [key for key, _ in sent] == [HANDLER_SECONDS]
    assert handler_seconds(SimpleNamespace(trailing_metadata=lambda: sent)) >= 0
