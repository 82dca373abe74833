"""A misbehaving client gets a clear gRPC status for each kind of bad message, and the server keeps serving.

The test plays the active party by hand over a raw ``psi.v1.Psi/Session`` stream (2-party, and N-party
up to the alignment), then proves the same server still completes a good session. What passives send the
active party (N-party REPLY and OKVS) is tampered with by a server interceptor: the active party must
reject it with a clear error, and the serving party must survive the abort.
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
from psi.core.seal import EphemeralKey
from psi.protocol.messages import Chunk, Count, Done, Hello, HelloReply, Mode, Roster, Stage, Table
from psi.transport import psi_pb2 as pb
from psi.transport import psi_pb2_grpc as pb_grpc
from psi.transport import run_session
from psi.transport.codec import decode, encode

from .conftest import random_ids
from .interceptors import ResponseStreamInterceptor

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
    "impossible declared size": (
        lambda s: [hello(s, size=1 << 40)],
        grpc.StatusCode.RESOURCE_EXHAUSTED, r"attacker declared 1,099,511,627,776 IDs; this party cannot allocate"),
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


# ----------------------------------------------------------------------------- N-party stages
OTHER_IDS = PASSIVE_IDS[:150] + random_ids(100, 63)


class Conversation:
    """A hand-played active party on one raw ``Session`` stream: send, read replies, then get the status."""

    def __init__(self, address: str):
        self.channel = grpc.insecure_channel(address)
        self.requests: queue.Queue = queue.Queue()
        self.replies: queue.Queue = queue.Queue()
        self.call = pb_grpc.PsiStub(self.channel).Session(self._gen(), timeout=30)
        threading.Thread(target=self._read, daemon=True).start()

    def _gen(self):
        while (m := self.requests.get()) is not None:
            yield encode(m)

    def _read(self) -> None:
        try:
            for env in self.call:
                self.replies.put(decode(env))
        except grpc.RpcError as exc:
            self.replies.put(exc)

    def send(self, *messages) -> None:
        for m in messages:
            self.requests.put(m)

    def receive_until(self, done, timeout: float = 20) -> list:
        got = []
        while True:
            item = self.replies.get(timeout=timeout)
            assert not isinstance(item, grpc.RpcError), item.details()
            got.append(item)
            if done(got):
                return got

    def error(self, timeout: float = 20) -> grpc.RpcError:
        while True:
            item = self.replies.get(timeout=timeout)
            if isinstance(item, grpc.RpcError):
                return item

    def close(self) -> None:
        self.requests.put(None)
        self.channel.close()


def n_hello(session_id: str) -> Hello:
    return Hello(session_id=session_id, salt=os.urandom(32), strip=True, lowercase=False, mode=Mode.INTERSECTION,
                 parties=("attacker", "bank", "other"), recipient="bank", size=4, chunk_size=4)


def n_start(conv: Conversation, s: str, bank_size: int = len(PASSIVE_IDS)) -> None:
    """Hello, then a roster with the bank's real ephemeral key (bank is P1: it draws the passives' key)."""
    conv.send(n_hello(s))
    reply = conv.receive_until(lambda got: isinstance(got[-1], HelloReply))[-1]
    conv.send(Roster(s, {"attacker": 4, "bank": bank_size, "other": len(OTHER_IDS)},
                     {"bank": reply.ephemeral_key, "other": EphemeralKey().public}))


def n_start_cardinality(conv: Conversation, s: str, size: int) -> None:
    """A cardinality-mode session in which the active party declares `size` IDs (bank, P1, counts with it)."""
    conv.send(Hello(session_id=s, salt=os.urandom(32), strip=True, lowercase=False, mode=Mode.CARDINALITY,
                    parties=("attacker", "bank", "other"), recipient="bank", size=size, chunk_size=4))
    reply = conv.receive_until(lambda got: isinstance(got[-1], HelloReply))[-1]
    conv.send(Roster(s, {"attacker": size, "bank": len(PASSIVE_IDS), "other": len(OTHER_IDS)},
                     {"bank": reply.ephemeral_key, "other": EphemeralKey().public}))


def until_table_sent(conv: Conversation) -> None:
    """Read until the bank has answered our query chunk and sent its whole OKVS."""
    def done(got):
        table = next((m for m in got if isinstance(m, Table)), None)
        cells = sum(m.count for m in got if isinstance(m, Chunk) and m.stage == Stage.OKVS)
        replied = any(isinstance(m, Chunk) and m.stage == Stage.REPLY for m in got)
        return table is not None and cells == table.cells and replied
    conv.receive_until(done)


def aligning(s: str, conv: Conversation, tag: bytes):
    n_start(conv, s)
    conv.send(Chunk(s, Stage.QUERY, 0, 4, points(4)))
    until_table_sent(conv)
    conv.send(Count(s, 1), Chunk(s, Stage.ALIGN, 0, 1, tag))


N_CASES = {
    "query of the wrong width": (
        lambda s, c: (n_start(c, s), c.send(Chunk(s, Stage.QUERY, 0, 4, points(4)[:-1]))),
        grpc.StatusCode.INVALID_ARGUMENT, r"OPRF queries from attacker: chunk 0 is 127 bytes, expected 4 items x 32"),
    "query point on the twist": (
        lambda s, c: (n_start(c, s), c.send(Chunk(s, Stage.QUERY, 0, 4, replace_point(points(4), 2, twist_point())))),
        grpc.StatusCode.INVALID_ARGUMENT,
        r"OPRF queries from attacker: chunk 0, point 2 \(item 2\): point is on the quadratic twist"),
    "query low-order point": (
        lambda s, c: (n_start(c, s), c.send(Chunk(s, Stage.QUERY, 0, 4, replace_point(points(4), 3, bytes(32))))),
        grpc.StatusCode.INVALID_ARGUMENT, r"OPRF queries from attacker: chunk 0, point 3 \(item 3\): low-order"),
    "reply sent to a passive": (
        lambda s, c: (n_start(c, s), c.send(Chunk(s, Stage.REPLY, 0, 4, points(4)))),
        grpc.StatusCode.FAILED_PRECONDITION, r"OPRF replies chunk 0 from attacker is not allowed now"),
    "count before the table": (
        lambda s, c: (n_start(c, s), c.send(Count(s, 1))),
        grpc.StatusCode.FAILED_PRECONDITION, r"Count from attacker is not allowed now \(running\)"),
    "roster misstating a size": (
        lambda s, c: n_start(c, s, bank_size=len(PASSIVE_IDS) - 1),
        grpc.StatusCode.INVALID_ARGUMENT, r"roster misstates bank's size or key"),
    "unknown align tag": (
        lambda s, c: aligning(s, c, os.urandom(16)),
        grpc.StatusCode.INVALID_ARGUMENT, r"alignment chunk 0 from attacker, item 0: a tag that matches none of bank's"),
    "impossible declared size (cardinality)": (
        lambda s, c: n_start_cardinality(c, s, 1 << 40),
        grpc.StatusCode.RESOURCE_EXHAUSTED, r"attacker declared 1,099,511,627,776 values; this party cannot allocate"),
    "align of the wrong width": (
        lambda s, c: aligning(s, c, os.urandom(8)),
        grpc.StatusCode.INVALID_ARGUMENT, r"alignment tags from attacker: chunk 0 is 8 bytes, expected 1 items x 16"),
}


@pytest.fixture
def nserver(psi_server):
    return psi_server({"bank": PASSIVE_IDS, "other": OTHER_IDS})


def good_n_party_session(server, engine) -> None:
    mine = PASSIVE_IDS[50:200] + random_ids(50, 64)
    result = run_session({"bank": server.channel(), "other": server.channel()}, mine,
                         PsiConfig(workers=0, chunk_size=32), me="alice", engine=engine)
    assert set(result.ids) == set(PASSIVE_IDS[50:150])
    assert server.servicer.wait_result(result.session_id, 10, party="other").ids == result.ids


@pytest.mark.parametrize("case", list(N_CASES))
def test_n_party_malformed_message_gets_clear_status_and_server_keeps_serving(nserver, engine, case):
    play, code, pattern = N_CASES[case]
    session = f"nbad-{abs(hash(case)) % 10**8}"
    conv = Conversation(nserver.address)
    try:
        play(session, conv)
        err = conv.error()
    finally:
        conv.close()
    assert err.code() == code, (err.code(), err.details())
    assert re.search(pattern, err.details()), err.details()
    good_n_party_session(nserver, engine)


class TamperingServer(ResponseStreamInterceptor):
    """Alters the first response envelope that ``tamper`` changes (returns a new envelope), then none."""

    def __init__(self, tamper):
        self.tamper = tamper
        self.armed = True

    def on_response(self, response):
        changed = self.tamper(response) if self.armed else None
        if changed is None:
            return response
        self.armed = False
        return changed


def tamper_chunk(stage: Stage, change):
    def tamper(env):
        if env.WhichOneof("body") != "chunk" or env.chunk.stage != stage or env.chunk.index != 0:
            return None
        out = pb.Envelope()
        out.CopyFrom(env)
        change(out.chunk)
        return out
    return tamper


def tamper_table(env):
    if env.WhichOneof("body") != "table":
        return None
    out = pb.Envelope()
    out.CopyFrom(env)
    out.table.cells += 3
    return out


def _set_data(chunk, data: bytes, count=None) -> None:
    chunk.data = data
    if count is not None:
        chunk.count = count


ACTIVE_SIDE_CASES = {
    "reply point on the twist": (
        tamper_chunk(Stage.REPLY, lambda c: _set_data(c, replace_point(c.data, 2, twist_point()))),
        "InvalidPoint", r"OPRF replies from (bank|other): chunk 0, point 2 \(item 2\): point is on the quadratic twist"),
    "reply of the wrong width": (
        tamper_chunk(Stage.REPLY, lambda c: _set_data(c, c.data[:-1])),
        "MalformedMessage", r"OPRF replies from (bank|other): chunk 0 is 1023 bytes, expected 32 items x 32 bytes"),
    "okvs announced with the wrong length": (
        tamper_table, "MalformedMessage",
        r"(bank|other) announces an OKVS table of \d+ cells at attempt \d+; for \d+ IDs it must have \d+ cells"),
    "okvs chunk of the wrong length": (
        tamper_chunk(Stage.OKVS, lambda c: _set_data(c, c.data[:-16])),
        "MalformedMessage", r"OKVS cells from (bank|other): chunk 0 is 496 bytes, expected 32 items x 16 bytes"),
    "okvs chunk with a cell missing": (
        tamper_chunk(Stage.OKVS, lambda c: _set_data(c, c.data[:-16], c.count - 1)),
        "MalformedMessage", r"OKVS cells from (bank|other): chunk 0 has 31 items, expected 32"),
}


@pytest.mark.parametrize("case", list(ACTIVE_SIDE_CASES))
def test_active_party_rejects_malformed_replies_and_tables(psi_server, engine, case):
    """What a passive sends is validated by the active party: a clear error there (with its gRPC status
    name), an abort that reaches the serving party, and the server keeps serving."""
    import psi.errors
    tamper, error, pattern = ACTIVE_SIDE_CASES[case]
    srv = psi_server({"bank": PASSIVE_IDS, "other": OTHER_IDS}, interceptors=[TamperingServer(tamper)])
    session = f"tampered-{abs(hash(case)) % 10**8}"
    with pytest.raises(getattr(psi.errors, error), match=pattern) as info:
        run_session({"bank": srv.channel(), "other": srv.channel()}, PASSIVE_IDS[:100],
                    PsiConfig(workers=0, chunk_size=32, session_id=session), me="alice", engine=engine)
    assert info.value.grpc_code == "INVALID_ARGUMENT"
    culprit = re.search(pattern, str(info.value)).group(1)         # the tampered stream (whichever came first)
    with pytest.raises(psi.errors.PeerError, match="alice aborted") as peer_side:
        srv.servicer.wait_result(session, 20, party=culprit)
    assert peer_side.value.code == "INVALID_ARGUMENT"
    good_n_party_session(srv, engine)
