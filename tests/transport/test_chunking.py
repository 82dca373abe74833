from __future__ import annotations

import re
from types import SimpleNamespace

import grpc
import pytest

from vfl.errors import ProtocolError
from vfl.transport.chunking import (HANDLER_SECONDS, PayloadTooLarge, handler_seconds, parse, read_one,
                                    read_payloads, to_chunks, unary_handler)
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
    """Run a ForwardRequest through unary_handler(handler) as party 'host'; the context it left behind."""
    rpc = unary_handler(pb.ForwardRequest, handler, party="host", report_timing=report_timing)
    context = _Context()
    try:
        list(rpc(to_chunks(pb.ForwardRequest(job_id="j")), context))
    except _Aborted:
        pass
    return context


def test_handler_time_is_sent_only_when_the_node_reports_it():
    reply = lambda request, context: pb.ForwardReply(z_ciphertexts=b"z")  # noqa: E731
    assert _serve(reply).trailing == ()  # the default
    sent = _serve(reply, report_timing=True).trailing
    assert [key for key, _ in sent] == [HANDLER_SECONDS]
    assert handler_seconds(SimpleNamespace(trailing_metadata=lambda: sent)) >= 0


def test_internal_errors_reach_the_caller_as_an_error_id_and_the_log_keeps_the_details(caplog):
    def broken(request, context):
        raise RuntimeError("SECRET /srv/host/table.csv")
    with caplog.at_level("ERROR", logger="vfl.transport"):
        code, details = _serve(broken).status
    assert code == grpc.StatusCode.INTERNAL
    assert "SECRET" not in details and "RuntimeError" not in details, details
    match = re.fullmatch(r"internal error at host \(error id ([0-9a-f]{8})\); details are in that node's log",
                         details)
    assert match, details
    logged = [r for r in caplog.records if match.group(1) in r.getMessage()]
    assert len(logged) == 1 and logged[0].exc_info and "SECRET /srv/host/table.csv" in caplog.text
    # a second failure gets its own id
    assert _serve(broken).status[1] != details


@pytest.mark.parametrize("error, code", [
    (ProtocolError("forward: batch of 0 rows (allowed 1..512)"), "INVALID_ARGUMENT"),
    (PayloadTooLarge("payload exceeds the 2 MiB limit"), "RESOURCE_EXHAUSTED"),
])
def test_errors_the_peer_caused_keep_their_message(error, code):
    def refuse(request, context):
        raise error
    status = _serve(refuse).status
    assert status[0].name == code and status[1] == str(error)
