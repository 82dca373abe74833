"""A peer's garbage gets a clear gRPC status, and the node keeps serving.

The test plays the active party against a real passive node process over mutual TLS: it opens a job,
runs PSI and Setup with its own key, then sends malformed, oversized, out-of-range, wrongly shaped,
unknown-job and out-of-order messages, and finally a correct Forward that must still work.
"""
from __future__ import annotations

import grpc
import numpy as np
import pytest
import yaml

from psi import PsiConfig
from psi.transport.client import run_session
from tests.node.conftest import breast_parties
from vfl import he
from vfl.job import crypto
from vfl.node.config import load_node_config
from vfl.protocol import interactive as proto
from vfl.protocol.layout import default_layout
from vfl.transport import tls
from vfl.transport.certs import issue_party_cert
from vfl.transport.chunking import to_chunks
from vfl.transport.proto import node_pb2 as pb
from vfl.transport.proto import node_pb2_grpc as pb_grpc

JOB = "robust-1"


@pytest.fixture(scope="module")
def session(tmp_path_factory):
    from vfl.api import Federation
    workdir = tmp_path_factory.mktemp("robust")
    fed = Federation(breast_parties(), workdir=workdir, node_options={"max_payload_mb": 2})
    guest_cfg = load_node_config(fed.configs["guest"])
    creds = tls.channel_credentials(guest_cfg.tls.cert, guest_cfg.tls.key, guest_cfg.tls.ca)
    channel = tls.open_channel(f"127.0.0.1:{fed.ports['host']}", creds, "host")
    stub = pb_grpc.PartyStub(channel)
    spec = {"job_id": JOB, "active": "guest", "task": "binary",
            "parties": {"guest": {"dataset": "table"}, "host": {"dataset": "table"}},
            "model": {"bottom": {"out": 4}, "interactive": {"out": 4}}, "crypto": {"key_bits": 1024},
            "train": {"batch_size": 16}}
    call(stub.OpenJob, pb.OpenJob(job_id=JOB, spec_yaml=yaml.safe_dump(spec), resume_epoch=-1), pb.OpenJobReply)
    ids = list(fed.parties["guest"].data["id"])
    result = run_session({"host": channel}, ids, PsiConfig(metadata={"job_id": JOB}, workers=0), me="guest")
    ops_a = he.new_private_ops(1024)
    layout = default_layout(1024, 4, 4, 14, 16, 40, 32.0, 2048, 0)
    reply = call(stub.Setup, pb.SetupRequest(job_id=JOB, active_public_key=crypto.public_key_bytes(ops_a),
                                             active_djn_base=crypto.djn_base_bytes(ops_a), aligned_rows=result.size,
                                             interactive_out=4, layout=layout.to_json()), pb.SetupReply)
    assert reply.bottom_out == 4
    from vfl.job.passive import decode_int_matrix
    masked = decode_int_matrix(reply.init_masked, (4, 4), proto.share_bits(layout) + 2)
    u = proto.product_weights(proto.active_init(layout, 0.3, masked, np.random.default_rng(0)).weights, layout)
    good_u = crypto.to_bytes(ops_a, proto.weight_bases(ops_a, u, layout.forward_layout()))
    yield {"fed": fed, "stub": stub, "ops": ops_a, "layout": layout, "good_u": good_u, "rows": result.size,
           "workdir": workdir, "channel": channel}
    channel.close()
    fed.close()


def call(method, request, reply_type):
    from vfl.transport.chunking import read_one
    return read_one(method(to_chunks(request), timeout=60), reply_type)


def status_of(method, request) -> tuple[grpc.StatusCode, str]:
    with pytest.raises(grpc.RpcError) as info:
        list(method(to_chunks(request), timeout=60))
    return info.value.code(), info.value.details()


def forward(session, **fields) -> pb.ForwardRequest:
    base = {"job_id": JOB, "epoch": 0, "step": 0, "phase": "eval",
            "rows": np.arange(5, dtype="<i4").tobytes(), "u_ciphertexts": session["good_u"]}
    base.update(fields)
    return pb.ForwardRequest(**base)


def width(session) -> int:
    return ((int(session["ops"].n) ** 2).bit_length() + 7) // 8


def test_malformed_ciphertexts(session):
    stub, good = session["stub"], session["good_u"]
    w = width(session)
    code, detail = status_of(stub.Forward, forward(session, u_ciphertexts=good[:-3]))
    assert code == grpc.StatusCode.INVALID_ARGUMENT and "u_ciphertexts" in detail
    too_big = b"\xff" * w + good[w:]                       # c >= n^2
    code, detail = status_of(stub.Forward, forward(session, u_ciphertexts=too_big))
    assert code == grpc.StatusCode.INVALID_ARGUMENT and "u_ciphertexts" in detail
    n = int(session["ops"].n)
    not_unit = n.to_bytes(w, "big") + good[w:]             # gcd(c, n) = n
    code, _ = status_of(stub.Forward, forward(session, u_ciphertexts=not_unit))
    assert code == grpc.StatusCode.INVALID_ARGUMENT


def test_wrong_shapes_and_ranges(session):
    stub, good = session["stub"], session["good_u"]
    code, detail = status_of(stub.Forward, forward(session, u_ciphertexts=good[:width(session) * 2]))
    assert code == grpc.StatusCode.INVALID_ARGUMENT and "expected" in detail
    rows = np.array([0, session["rows"] + 7], dtype="<i4").tobytes()
    code, detail = status_of(stub.Forward, forward(session, rows=rows))
    assert code == grpc.StatusCode.INVALID_ARGUMENT and "out of range" in detail
    code, _ = status_of(stub.Forward, forward(session, rows=b"\x01\x02\x03"))
    assert code == grpc.StatusCode.INVALID_ARGUMENT
    code, detail = status_of(stub.Forward, forward(session, phase="dance"))
    assert code == grpc.StatusCode.INVALID_ARGUMENT and "phase" in detail


def test_unknown_job_and_out_of_order(session):
    stub = session["stub"]
    code, _ = status_of(stub.Forward, forward(session, job_id="no-such-job"))
    assert code == grpc.StatusCode.NOT_FOUND
    code, detail = status_of(stub.InputGradient, pb.InputGradientRequest(job_id=JOB, epoch=0, step=3))
    assert code == grpc.StatusCode.FAILED_PRECONDITION and "no forward pending" in detail
    code, _ = status_of(stub.WeightGradient, pb.WeightGradientRequest(job_id=JOB, epoch=0, step=3))
    assert code == grpc.StatusCode.FAILED_PRECONDITION


def test_garbage_and_oversized_payloads(session):
    stub = session["stub"]
    with pytest.raises(grpc.RpcError) as info:
        list(stub.Forward(iter([pb.Chunk(data=b"\xff\xfe garbage", last=True)]), timeout=30))
    assert info.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    big = forward(session, u_ciphertexts=b"\x01" * (3 << 20))  # over the node's 2 MiB limit
    code, detail = status_of(stub.Forward, big)
    assert code == grpc.StatusCode.RESOURCE_EXHAUSTED and "limit" in detail


def test_stranger_certificate_is_refused(session):
    workdir = session["workdir"]
    cert = issue_party_cert(workdir / "ca", "mallory", workdir / "mallory")
    creds = tls.channel_credentials(cert.cert, cert.key, cert.ca)
    with tls.open_channel(f"127.0.0.1:{session['fed'].ports['host']}", creds, "host") as channel:
        code, _ = status_of(pb_grpc.PartyStub(channel).Forward, forward(session))
    assert code == grpc.StatusCode.PERMISSION_DENIED


def test_node_keeps_serving_after_all_that(session):
    from grpc_health.v1 import health_pb2, health_pb2_grpc
    reply = call(session["stub"].Forward, forward(session), pb.ForwardReply)
    z = proto.active_decode_forward(session["ops"], he.ciphertexts_from_bytes(
        reply.z_ciphertexts, session["ops"].public_key), 5, session["layout"])
    assert z.shape == (5, 4) and np.isfinite(z).all() and np.abs(z).max() < 50
    health = health_pb2_grpc.HealthStub(session["channel"]).Check(health_pb2.HealthCheckRequest(service="vfl.Node"))
    assert health.status == health_pb2.HealthCheckResponse.SERVING
