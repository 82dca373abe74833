"""A PSI session survives a broken stream (psi/transport/links.py, "Resumable sessions"): the client reattaches the
session with a Resume envelope and each side sends again what the other missed, so a job's PSI stage survives a
cut link or a stalled peer (issue 15, "Recovery at both ends"). Before, any break of the stream failed the session,
and a job's PSI runs once, so the job failed with it.
"""
from __future__ import annotations

import grpc
import pytest

from psi import PsiConfig
from psi.errors import PsiError
from psi.transport import psi_pb2 as pb
from psi.transport import psi_pb2_grpc as pb_grpc
from psi.transport import run_session
from psi.transport.links import SendLog, resume_envelope
from tests.faults.proxy import FaultProxy

from .conftest import random_ids

FAST_RECONNECT = [("grpc.initial_reconnect_backoff_ms", 200), ("grpc.max_reconnect_backoff_ms", 500)]


def cut_midway(proxy: FaultProxy, seconds: float = 1.0):
    cuts = []

    def progress(stage, done, total):
        if not cuts and 0 < done < total:
            cuts.append((stage, done, total))
            proxy.cut(seconds)
    progress.cuts = cuts
    return progress


@pytest.mark.parametrize("parties", [2, 3])
def test_a_session_survives_a_cut_link_midway(psi_server, engine, parties):
    u = random_ids(5000, 91)
    a, b, c = u[:3500], u[1000:4500], u[500:5000]
    srv = psi_server({"b": b, "c": c}, resume_seconds=20)
    proxies = {name: FaultProxy(srv.port) for name in ("b", "c")[:parties - 1]}
    try:
        progress = cut_midway(proxies["b"])
        channels = {name: grpc.insecure_channel(p.address, options=FAST_RECONNECT) for name, p in proxies.items()}
        result = run_session(channels, a, PsiConfig(workers=0, chunk_size=100), me="a", engine=engine,
                             progress=progress, resume_seconds=20)
        assert progress.cuts, "the session ended before the link could be cut"
        expected = set(a) & set(b) & (set(c) if parties == 3 else set(a))
        assert set(result.ids) == expected
        for name in proxies:
            passive = srv.servicer.wait_result(result.session_id, 10, party=name)
            assert passive.ids == result.ids
    finally:
        for proxy in proxies.values():
            proxy.close()


def test_without_resuming_a_cut_fails_the_session(psi_server, engine):
    """The control: the same cut with resuming off at the client fails the session."""
    u = random_ids(5000, 92)
    srv = psi_server({"b": u[1000:]}, resume_seconds=20)
    proxy = FaultProxy(srv.port)
    try:
        progress = cut_midway(proxy)
        with pytest.raises(PsiError):
            run_session({"b": grpc.insecure_channel(proxy.address, options=FAST_RECONNECT)}, u[:3500],
                        PsiConfig(workers=0, chunk_size=100), me="a", engine=engine, progress=progress)
        assert progress.cuts
    finally:
        proxy.close()


def test_a_server_that_does_not_resume_fails_the_session_at_once(psi_server, engine):
    """A server without resume_seconds fails its side when the stream breaks; the client's Resume then finds
    nothing to resume and the session fails with that."""
    u = random_ids(5000, 93)
    srv = psi_server({"b": u[1000:]})
    proxy = FaultProxy(srv.port)
    try:
        progress = cut_midway(proxy)
        with pytest.raises(PsiError, match="nothing to resume|UNAVAILABLE|CANCELLED"):
            run_session({"b": grpc.insecure_channel(proxy.address, options=FAST_RECONNECT)}, u[:3500],
                        PsiConfig(workers=0, chunk_size=100), me="a", engine=engine, progress=progress,
                        resume_seconds=10)
    finally:
        proxy.close()


def test_a_resume_of_an_unknown_session_is_refused(psi_server):
    srv = psi_server({"b": ["x" * 16]}, resume_seconds=20)
    stub = pb_grpc.PsiStub(grpc.insecure_channel(srv.address))
    call = stub.Session(iter([resume_envelope("no-such-session-0000", "b", 0)]))
    with pytest.raises(grpc.RpcError) as info:
        list(call)
    assert info.value.code() == grpc.StatusCode.NOT_FOUND and "nothing to resume" in info.value.details()


def test_the_send_log_replays_from_any_index_and_stops_replaying_past_its_cap():
    log = SendLog(max_bytes=100)
    for i in range(3):
        log.append(pb.Envelope(session_id=f"s{i}"))
    log.close()
    assert [e.session_id for e in log.stream(1, 0)] == ["s1", "s2"]
    assert log.replayable(0)
    log = SendLog(max_bytes=100)
    for i in range(10):
        log.append(pb.Envelope(session_id=f"session-{i:04d}-" + "x" * 20))
    log.close()
    assert not log.replayable(0)  # past the cap: no resume, but every envelope is still sent once
    assert len(list(log.stream(0, 0))) == 10
