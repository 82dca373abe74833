"""Keepalive settings agree on both ends of every channel, so a quiet stream survives (issue 15, item 0).

Before: clients pinged every 30 s (and kept pinging on a quiet stream), but servers kept gRPC's default of one
ping per five minutes. After three pings on a quiet stream the server sent ``GOAWAY too_many_pings`` and every
call on the connection died: ``JobError: ... Too many pings`` after 20 minutes of privacy_bench, while the job
ran on. Here the intervals are shortened through psi.transport.keepalive's environment variables (1 s pings,
gRPC's shortest), so the same failure shows after a few seconds of quiet instead of minutes.

The first two tests are a control: the same quiet stream on a bare gRPC server dies when the server does not
permit the client's pings (what the nodes did before), and survives with the project's server options.
"""
from __future__ import annotations

import time
from concurrent import futures

import grpc
import pytest

from psi.transport import keepalive
from tests.node.conftest import breast_parties
from tests.node.custom_models import QUIET_SECONDS_ENV, slow_first_build

PING_MS = keepalive.MIN_TIME_MS
QUIET_SECONDS = 8.0   # eight ping intervals; gRPC's default policy sends GOAWAY after the third ping


def quiet_stream(server_options, client_options, quiet: float) -> list[bytes]:
    """One server-streaming call whose handler stays quiet for `quiet` seconds before its only message."""
    def handler(request, context):
        time.sleep(quiet)
        yield b"done"
    server = grpc.server(futures.ThreadPoolExecutor(max_workers=2), options=server_options)
    server.add_generic_rpc_handlers((grpc.method_handlers_generic_handler(
        "test.Quiet", {"Stream": grpc.unary_stream_rpc_method_handler(handler)}),))
    port = server.add_insecure_port("127.0.0.1:0")
    server.start()
    try:
        with grpc.insecure_channel(f"127.0.0.1:{port}", options=client_options) as channel:
            return list(channel.unary_stream("/test.Quiet/Stream")(b"", timeout=60))
    finally:
        server.stop(0)


def test_control_a_server_that_does_not_permit_the_pings_kills_a_quiet_stream():
    """The failure the issue saw, reproduced: the client's pings with gRPC's default server settings."""
    settings = keepalive.Keepalive(time_ms=PING_MS, timeout_ms=5000)
    with pytest.raises(grpc.RpcError) as info:
        quiet_stream([], settings.client_options(), QUIET_SECONDS)
    assert info.value.code() == grpc.StatusCode.UNAVAILABLE
    assert "too many pings" in info.value.details().lower()


def test_the_project_server_options_permit_the_clients_pings():
    settings = keepalive.Keepalive(time_ms=PING_MS, timeout_ms=5000)
    assert quiet_stream(settings.server_options(), settings.client_options(), QUIET_SECONDS) == [b"done"]


def test_keepalive_settings_are_checked():
    assert keepalive.from_env({}) == keepalive.Keepalive(keepalive.DEFAULT_TIME_MS, keepalive.DEFAULT_TIMEOUT_MS)
    assert keepalive.from_env({keepalive.TIME_ENV: "1500"}).time_ms == 1500
    for bad in ("500", "soon", "-1"):
        with pytest.raises(ValueError, match=keepalive.TIME_ENV if bad == "soon" else "keepalive time"):
            keepalive.from_env({keepalive.TIME_ENV: bad})


def test_a_job_stays_quiet_for_many_ping_intervals_and_finishes(tmp_path, monkeypatch):
    """Real nodes, 1 s pings: the job's first seconds are quiet on two channels at once.

    Both parties name `slow_first_build` as their bottom model, which sleeps QUIET_SECONDS on its first build:
    the active node's dry forward keeps the submitter's SubmitJob stream quiet, then the passive node's dry
    forward inside OpenJob keeps the node-to-node call quiet. Before the fix the nodes' servers did not permit
    the pings, and this job failed with ``JobError: ... Too many pings`` (checked on the code before the fix:
    the SubmitJob stream died after about 5 s of quiet).
    """
    from vfl.api import Federation, Party
    monkeypatch.setenv(keepalive.TIME_ENV, str(PING_MS))
    monkeypatch.setenv(keepalive.TIMEOUT_ENV, "5000")
    monkeypatch.setenv(QUIET_SECONDS_ENV, str(QUIET_SECONDS))
    parties = [Party(p.name, p.data, label=p.label, bottom=slow_first_build) for p in breast_parties()]
    arrivals: list[float] = []
    with Federation(parties, workdir=tmp_path) as fed:
        # a training job: its parties build their bottom models when it opens (a PSI-only job reads the IDs alone
        # and builds none, so it would not be quiet)
        spec = fed._spec("train", "quiet-1", task="binary", model=fed._with_bottoms({"bottom": {"out": 4}}),
                         train={"epochs": 1}, crypto={"mode": "plaintext"})
        result = fed.run(spec, progress=False, on_event=lambda event: arrivals.append(time.monotonic()))
        logs = "".join((tmp_path / f"{name}.log").read_text() for name in fed.parties)
    assert result["intersection"] > 0
    longest_quiet = max(b - a for a, b in zip(arrivals, arrivals[1:]))
    assert longest_quiet >= 2 * QUIET_SECONDS - 1, f"the stream was quiet for only {longest_quiet:.1f} s"
    assert "too_many_pings" not in logs
