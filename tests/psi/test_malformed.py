"""A misbehaving client gets a clear gRPC status for each kind of bad message, and the server keeps serving.

The test plays the active party by hand over a raw ``psi.v1.Psi/Session`` stream, then proves the same
server still completes a good session.
"""
from __future__ import annotations

import os
import queue
import re
import threading

import grpc
import pytest

from psi import PsiConfig
from psi.core import curve25519
from psi.core.curve25519 import P, is_on_curve
from psi.core.hashing import Canonicalization, hash_and_blind
from psi.protocol.messages import Chunk, Done, Hello, Mode, Stage
from psi.transport import psi_pb2 as pb
from psi.transport import psi_pb2_grpc as pb_grpc
from psi.transport import run_session
from psi.transport.codec import encode

from .conftest import random_ids

PASSIVE_IDS = random_ids(300, 60)


def hello(session_id: str, size: int = 4, chunk: int = 4) -> Hello:
    return Hello(session_id=session_id, salt=os.urandom(32), strip=True, lowercase=False, mode=Mode.INTERSECTION,
                 parties=("attacker", "bank"), recipient="bank", size=size, chunk_size=chunk)


def points(n: int) -> bytes:
    return hash_and_blind(random_ids(n, 61), os.urandom(32), Canonicalization(), curve25519.new_scalar())


def replace_point(data: bytes, index: int, point: bytes) -> bytes:
    return data[:32 * index] + point + data[32 * (index + 1):]


def exchange(address: str, messages) -> grpc.RpcError:
    """Send ``messages`` on one Session stream, read replies until the server ends it; return the error."""
    requests: queue.Queue = queue.Queue()
    for m in messages:
        requests.put(m)

    def gen():
        while True:
            m = requests.get()
            if m is None:
                return
            yield m if isinstance(m, pb.Envelope) else encode(m)

    with grpc.insecure_channel(address) as channel:
        call = pb_grpc.PsiStub(channel).Session(gen(), timeout=30)
        timer = threading.Timer(20, lambda: requests.put(None))   # never hang the test
        timer.start()
        try:
            for _ in call:
                pass
        except grpc.RpcError as exc:
            return exc
        finally:
            timer.cancel()
            requests.put(None)
    raise AssertionError("the server accepted the stream without an error")


@pytest.fixture
def server(psi_server):
    return psi_server({"bank": PASSIVE_IDS})


def twist_point() -> bytes:
    return next(u for u in range(2, 100) if not is_on_curve(u)).to_bytes(32, "little")


CASES = {
    "wrong point length": (
        lambda s: [hello(s), Chunk(s, Stage.BLINDED, 0, 4, points(4)[:-1])],
        grpc.StatusCode.INVALID_ARGUMENT, r"chunk 0 is 127 bytes, expected 4 items x 32 bytes"),
    "point on the twist": (
        lambda s: [hello(s), Chunk(s, Stage.BLINDED, 0, 4, replace_point(points(4), 2, twist_point()))],
        grpc.StatusCode.INVALID_ARGUMENT, r"chunk 0, point 2 \(item 2\): point is on the quadratic twist"),
    "u not reduced": (
        lambda s: [hello(s, size=8), Chunk(s, Stage.BLINDED, 0, 4, points(4)),
                   Chunk(s, Stage.BLINDED, 1, 4, replace_point(points(4), 3, (P + 1).to_bytes(32, "little")))],
        grpc.StatusCode.INVALID_ARGUMENT, r"chunk 1, point 3 \(item 7\): u-coordinate is not reduced",),
    "low-order point": (
        lambda s: [hello(s), Chunk(s, Stage.BLINDED, 0, 4, replace_point(points(4), 1, (1).to_bytes(32, "little")))],
        grpc.StatusCode.INVALID_ARGUMENT, r"chunk 0, point 1 \(item 1\): low-order point"),
    "wrong session": (
        lambda s: [hello(s), Chunk("someone-else", Stage.BLINDED, 0, 4, points(4))],
        grpc.StatusCode.INVALID_ARGUMENT, r"names session 'someone-else', but this stream belongs to session"),
    "skipped chunk": (
        lambda s: [hello(s, size=8), Chunk(s, Stage.BLINDED, 1, 4, points(4))],
        grpc.StatusCode.FAILED_PRECONDITION, r"chunk 1 arrived, expected chunk 0"),
    "done before the data": (
        lambda s: [hello(s), Done(s, 0, b"")],
        grpc.StatusCode.FAILED_PRECONDITION, r"Done from attacker is not allowed now"),
    "second hello": (
        lambda s: [hello(s), hello(s)],
        grpc.StatusCode.FAILED_PRECONDITION, r"Hello from attacker is not allowed now"),
    "first message is not a hello": (
        lambda s: [Chunk(s, Stage.BLINDED, 0, 4, points(4))],
        grpc.StatusCode.FAILED_PRECONDITION, r"first message must be a hello"),
    "more items than announced": (
        lambda s: [hello(s, size=4), Chunk(s, Stage.BLINDED, 0, 4, points(4)), Chunk(s, Stage.BLINDED, 1, 4, points(4))],
        grpc.StatusCode.FAILED_PRECONDITION, r"chunk 1 arrived after all 4 items"),
    "short chunk": (
        lambda s: [hello(s, size=8), Chunk(s, Stage.BLINDED, 0, 3, points(3))],
        grpc.StatusCode.INVALID_ARGUMENT, r"chunk 0 has 3 items, expected 4"),
    "oversized chunk": (
        lambda s: [hello(s), pb.Envelope(session_id=s, chunk=pb.Chunk(stage=1, index=0, count=70000, data=b""))],
        grpc.StatusCode.INVALID_ARGUMENT, r"at most 65536 items"),
    "bad hello": (
        lambda s: [Hello(session_id=s, salt=b"short", strip=True, lowercase=False, mode=Mode.INTERSECTION,
                         parties=("attacker", "bank"), recipient="bank", size=4, chunk_size=4)],
        grpc.StatusCode.INVALID_ARGUMENT, r"hello salt is 5 bytes"),
    "unknown stage": (
        lambda s: [hello(s), pb.Envelope(session_id=s, chunk=pb.Chunk(stage=42, index=0, count=4, data=points(4)))],
        grpc.StatusCode.INVALID_ARGUMENT, r"unknown stage 42"),
}


@pytest.mark.parametrize("case", list(CASES))
def test_malformed_message_gets_clear_status_and_server_keeps_serving(server, engine, case):
    build, code, pattern = CASES[case]
    session = f"bad-{abs(hash(case)) % 10**8}"
    err = exchange(server.address, build(session))
    assert err.code() == code, (err.code(), err.details())
    assert re.search(pattern, err.details()), err.details()
    # the same server still serves a good session
    good = random_ids(100, 62) + PASSIVE_IDS[:50]
    result = run_session({"bank": server.channel()}, good, PsiConfig(workers=0, chunk_size=32), me="alice",
                         engine=engine)
    assert result.size == 50 and set(result.ids) == set(PASSIVE_IDS[:50])
    assert server.servicer.wait_result(result.session_id, 10).ids == result.ids


def test_reused_session_id_is_refused(server, engine):
    good = PASSIVE_IDS[:20]
    cfg = PsiConfig(workers=0, session_id="once-only")
    assert run_session({"bank": server.channel()}, good, cfg, me="alice", engine=engine).size == 20
    err = exchange(server.address, [hello("once-only")])
    assert err.code() == grpc.StatusCode.ALREADY_EXISTS and "already used" in err.details()


def test_id_provider_can_refuse_a_peer(psi_server, engine):
    from psi.errors import PeerError, PermissionDenied

    def provider(hello, peer):
        if hello.metadata.get("job_id") != "job-7":
            raise PermissionDenied(f"no dataset for job {hello.metadata.get('job_id')!r}")
        return PASSIVE_IDS

    srv = psi_server({})
    srv.servicer.id_provider = provider
    with pytest.raises(PeerError, match="PERMISSION_DENIED: no dataset for job 'job-9'") as info:
        run_session({"bank": srv.channel()}, PASSIVE_IDS[:5], PsiConfig(workers=0, metadata={"job_id": "job-9"}),
                    engine=engine)
    assert info.value.code == "PERMISSION_DENIED"
    ok = run_session({"bank": srv.channel()}, PASSIVE_IDS[:5], PsiConfig(workers=0, metadata={"job_id": "job-7"}),
                     engine=engine)
    assert ok.size == 5


def test_passive_input_error_does_not_leak_the_id_to_the_peer(psi_server, engine):
    from psi.errors import DuplicateIdError, PeerError
    secret = "very-secret-customer-0001"
    srv = psi_server({"bank": PASSIVE_IDS[:10] + [secret, secret]})
    with pytest.raises(PeerError) as info:
        run_session({"bank": srv.channel()}, PASSIVE_IDS[:5], PsiConfig(workers=0), engine=engine)
    assert secret not in str(info.value) and "its own input is invalid" in str(info.value)
    with pytest.raises(DuplicateIdError, match=secret):      # the serving party itself sees the details
        srv.servicer.wait_result(srv.servicer.sessions()[-1], 10)


def test_client_vanishing_mid_session_is_recorded_and_server_keeps_serving(server, engine):
    from psi.errors import PeerError
    requests: queue.Queue = queue.Queue()
    requests.put(encode(hello("vanishing", size=8)))
    requests.put(encode(Chunk("vanishing", Stage.BLINDED, 0, 4, points(4))))

    def gen():
        while True:
            m = requests.get()
            if m is None:
                return
            yield m

    with grpc.insecure_channel(server.address) as channel:
        call = pb_grpc.PsiStub(channel).Session(gen())
        next(call)                                   # the hello reply: the session is running
        call.cancel()
    requests.put(None)
    with pytest.raises(PeerError, match="ended|aborted|closed"):
        server.servicer.wait_result("vanishing", 20)
    good = PASSIVE_IDS[:30]
    assert run_session({"bank": server.channel()}, good, PsiConfig(workers=0), me="alice", engine=engine).size == 30
