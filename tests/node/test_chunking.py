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
    from vfl.transport.chunking import HANDLER_SECONDS, handler_seconds

    class Call:
        def __init__(self, metadata):
            self.metadata = metadata

        def trailing_metadata(self):
            return self.metadata

    assert handler_seconds(Call(((HANDLER_SECONDS, "1.25"),))) == 1.25
    assert handler_seconds(Call(((HANDLER_SECONDS, "not a number"),))) == 0.0
    assert handler_seconds(Call(((HANDLER_SECONDS, "-3"),))) == 0.0
    assert handler_seconds(Call(None)) == 0.0
