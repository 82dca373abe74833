"""Audit every message a party sends: no raw ID, canonical ID, ID hash or unblinded hash-to-curve point leaves it.

Messages are recorded as the bytes that go on the wire (serialized ``psi.v1.Envelope``s): in-process through
a recording link, over gRPC with a client interceptor (active party) and a server interceptor (passive
party). Every 16-byte window of every message is compared with 16-byte fingerprints of each ID's raw
UTF-8, canonical UTF-8, SHA-512 digest, field element and curve point. Each run also checks that the
recorder saw every stage of the protocol it ran (2-party: BLINDED/DOUBLE; N-party: QUERY, REPLY, Table,
OKVS, sealed KEY, Count, ALIGN or the cardinality exchange, Done), so no stage goes unaudited.
"""
from __future__ import annotations

import grpc
import pytest

from psi import PsiConfig, run_in_process
from psi.core.curve25519 import u_to_bytes
from psi.core.hashing import Canonicalization, _prefix, canonical_id, hash_to_curve, hash_to_field
from psi.protocol.messages import Chunk, Hello, Sealed, Stage
from psi.transport import run_session
from psi.transport.codec import decode, encode
from psi.transport.psi_pb2 import Envelope

from .conftest import random_ids
from .interceptors import ResponseStreamInterceptor

W = 16


def fingerprints(ids, salt: bytes, canon: Canonicalization) -> dict[bytes, str]:
    """16-byte fingerprints (several per ID) of everything that must stay inside its party."""
    out = {}
    for x in ids:
        c = canonical_id(x, canon)
        data = c.encode()
        h = _prefix(salt)
        h.update(len(data).to_bytes(8, "big"))
        h.update(data)
        digest = h.digest()
        point = hash_to_curve(c, salt)
        things = {
            "raw ID": x.encode(), "canonical ID": data, "SHA-512 of the ID": digest,
            "field element": u_to_bytes(hash_to_field(c, salt)), "hash-to-curve point": point,
            "hash-to-curve point (upper half)": point[16:],
        }
        for what, blob in things.items():
            for i in range(0, max(1, len(blob) - W + 1), W):
                if len(blob[i:i + W]) == W:
                    out[blob[i:i + W]] = f"{what} of {x!r}"
    return out


def leaks(blobs: list[bytes], prints: dict[bytes, str]) -> list[str]:
    found = []
    for blob in blobs:
        windows = {blob[i:i + W] for i in range(len(blob) - W + 1)}
        found += [prints[w] for w in windows & prints.keys()]
    return found


def test_the_audit_itself_detects_a_leak():
    ids = random_ids(5, 1)
    salt = b"s" * 32
    prints = fingerprints(ids, salt, Canonicalization())
    point = hash_to_curve(ids[3], salt)
    assert f"hash-to-curve point of {ids[3]!r}" in leaks([b"header" + point + b"trailer"], prints)
    assert [f"canonical ID of {ids[1]!r}"] == leaks([b"..." + ids[1].encode() + b"..."], prints)
    assert not leaks([b"unrelated bytes" * 10], prints)


def _salt(records) -> bytes:
    return next(m.salt for _, _, m in records if isinstance(m, Hello))


def kinds(messages) -> set[str]:
    """Stage names of chunks and sealed messages, and the names of other message types."""
    out = set()
    for m in messages:
        out.add(Stage(m.stage).name if isinstance(m, (Chunk, Sealed)) else type(m).__name__)
    return out


# what the recorder must have seen, so that every stage of each protocol is audited
EXPECTED_KINDS = {
    (2, "intersection"): {"BLINDED", "DOUBLE", "Done"},
    (2, "cardinality"): {"BLINDED", "DOUBLE", "Done"},
    ("N", "intersection"): {"QUERY", "REPLY", "Table", "OKVS", "KEY", "Count", "ALIGN", "Done", "Roster"},
    ("N", "cardinality"): {"QUERY", "REPLY", "Table", "OKVS", "KEY", "Count", "BLINDED", "DOUBLE", "Done"},
}


@pytest.mark.parametrize("parties,mode", [(2, "intersection"), (2, "cardinality"), (3, "intersection"),
                                          (3, "cardinality"), (4, "intersection"), (5, "cardinality")])
def test_in_process_messages_carry_no_ids_or_unblinded_hashes(engine, parties, mode):
    u = random_ids(400, 2 + parties)
    special = ["Ünïcødé-ÏD-long-enough-0001", "  Padded-Mixed-Case-ID-0002  "]
    names = [f"party{i}" for i in range(parties)]
    lists = {n: u[i * 40: i * 40 + 280] + special for i, n in enumerate(names)}
    records = []
    canon = Canonicalization(strip=True, lowercase=True)
    res = run_in_process(lists, names[0], PsiConfig(workers=0, chunk_size=64, mode=mode, lowercase=True),
                         engine=engine, record=lambda party, peer, msg: records.append((party, peer, msg)))
    assert res[names[0]].size > 0
    salt = _salt(records)
    everyone = fingerprints([x for ids in lists.values() for x in ids], salt, canon)
    by_party: dict[str, list[bytes]] = {}
    for party, _, msg in records:
        by_party.setdefault(party, []).append(encode(msg).SerializeToString())
    assert set(by_party) == set(names)
    assert EXPECTED_KINDS[(parties if parties == 2 else "N", mode)] <= kinds(m for _, _, m in records)
    for party, blobs in by_party.items():
        assert leaks(blobs, everyone) == [], party


class RecordingClient(grpc.StreamStreamClientInterceptor):
    def __init__(self):
        self.sent: list[bytes] = []

    def intercept_stream_stream(self, continuation, client_call_details, request_iterator):
        def record(it):
            for req in it:
                self.sent.append(req.SerializeToString())
                yield req
        return continuation(client_call_details, record(request_iterator))


class RecordingServer(ResponseStreamInterceptor):
    def __init__(self):
        self.sent: list[bytes] = []

    def on_response(self, response):
        self.sent.append(response.SerializeToString())
        return response


@pytest.mark.parametrize("parties,mode", [(2, "intersection"), (3, "intersection"), (3, "cardinality")])
def test_grpc_messages_carry_no_ids_or_unblinded_hashes(psi_server, engine, parties, mode):
    u = random_ids(500, 40 + parties)
    a = u[:300]
    passive_lists = {f"p{i}": u[100 + 50 * i: 400 + 50 * i] for i in range(1, parties)}
    client_rec, server_rec = RecordingClient(), RecordingServer()
    server = psi_server(passive_lists, interceptors=[server_rec])
    channels = {name: server.channel(client_rec) for name in passive_lists}
    salt = b"fixed-salt-for-audit-0123456789ab"
    result = run_session(channels, a, PsiConfig(workers=0, chunk_size=50, salt=salt, mode=mode), me="a",
                         engine=engine)
    assert result.size == len(set(a).intersection(*map(set, passive_lists.values())))
    all_ids = a + [x for ids in passive_lists.values() for x in ids]
    prints = fingerprints(all_ids, salt, Canonicalization())
    assert len(client_rec.sent) > 5 and len(server_rec.sent) > 5
    wire = kinds(decode(Envelope.FromString(b)) for b in client_rec.sent + server_rec.sent)
    assert EXPECTED_KINDS[(parties if parties == 2 else "N", mode)] <= wire
    assert leaks(client_rec.sent, prints) == []
    assert leaks(server_rec.sent, prints) == []
