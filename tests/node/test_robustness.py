"""A peer's garbage gets a clear gRPC status, and the node keeps serving.

The test plays the active party against a real passive node process over mutual TLS: it opens a job,
runs PSI and Setup with its own key, then sends malformed, oversized, out-of-range, wrongly shaped,
unknown-job and out-of-order messages to every RPC (Forward, WeightGradient, InputGradient, Setup, EndEpoch,
CloseJob, OpenJob, PSI sessions), plus replays of a completed step and of Setup. Each must get its specific
status with a message naming the problem, followed by a health check or a correct call that still works.
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
from vfl.he.batch import KeyedEngine, from_wire, to_wire
from vfl.protocol.schemes import paillier
from vfl.node.config import load_node_config
from vfl.protocol import interactive as proto
from vfl.protocol.layout import default_layout
from vfl.transport import tls
from vfl.transport.certs import issue_party_cert
from vfl.transport.chunking import to_chunks
from vfl.transport.proto import node_pb2 as pb
from vfl.transport.proto import node_pb2_grpc as pb_grpc
from vfl.compute import LocalCompute

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
    ops_a = KeyedEngine(he.new_private_ops(1024))
    layout = default_layout(1024, 4, 4, 14, 16, 40, 32.0, 2048, 0)
    reply = call(stub.Setup, pb.SetupRequest(job_id=JOB, active_public_key=paillier.public_key_bytes(ops_a),
                                             active_djn_base=paillier.djn_base_bytes(ops_a), aligned_rows=result.size,
                                             interactive_out=4, layout=layout.to_json()), pb.SetupReply)
    assert reply.bottom_out == 4
    from vfl.protocol.messages import decode_int_matrix
    masked = decode_int_matrix(reply.init_masked, (4, 4), proto.share_bits(layout) + 2)
    share = proto.active_init(layout, 0.3, masked, np.random.default_rng(0))
    u = proto.product_weights(share.weights, layout)
    good_u = to_wire(proto.weight_bases(ops_a, u, layout.forward_layout()))
    ops_p = paillier.peer_key(reply.passive_public_key, reply.passive_djn_base, 1024, LocalCompute(1))
    yield {"fed": fed, "stub": stub, "ops": ops_a, "layout": layout, "good_u": good_u, "rows": result.size,
           "workdir": workdir, "channel": channel, "share": share, "ops_p": ops_p, "spec": spec, "ids": ids}
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


def test_certificate_naming_two_parties_is_refused(session):
    """One certificate whose names cover the peer 'guest' and the node itself must not pass as the peer."""
    workdir = session["workdir"]
    cert = issue_party_cert(workdir / "ca", "guest", workdir / "two-names", extra_dns=("host",))
    creds = tls.channel_credentials(cert.cert, cert.key, cert.ca)
    with tls.open_channel(f"127.0.0.1:{session['fed'].ports['host']}", creds, "host") as channel:
        code, detail = status_of(pb_grpc.PartyStub(channel).Forward, forward(session))
    assert code == grpc.StatusCode.PERMISSION_DENIED and "several configured identities" in detail
    assert_serving(session)


def test_common_name_is_ignored_when_the_certificate_has_subject_alternative_names():
    from types import SimpleNamespace

    def context(auth: dict) -> SimpleNamespace:
        return SimpleNamespace(auth_context=lambda: auth)
    with_san = context({"x509_subject_alternative_name": [b"mallory"], "x509_common_name": [b"guest"]})
    assert tls.peer_names(with_san) == ["mallory"]
    only_cn = context({"x509_common_name": [b"guest"]})
    assert tls.peer_names(only_cn) == ["guest"]
    # only DNS-name SANs hide the CN; IP, email and URI SANs are never identities (our certs carry 127.0.0.1)
    ip_only = context({"x509_subject_alternative_name": [b"127.0.0.1", b"::1", b"ops@bank.example",
                                                         b"spiffe://bank/guest"], "x509_common_name": [b"guest"]})
    assert tls.peer_names(ip_only) == ["guest"]
    dns_and_ip = context({"x509_subject_alternative_name": [b"127.0.0.1", b"mallory"],
                          "x509_common_name": [b"guest"]})
    assert tls.peer_names(dns_and_ip) == ["mallory"]


def _identify(names: list[str], admins: tuple[str, ...] = ()) -> str:
    """Node.identify for a node 'host' (identity 'host') with peers 'guest' and 'other'."""
    from types import SimpleNamespace

    from vfl.node.server import Node
    peers = (SimpleNamespace(name="guest", identity="guest"), SimpleNamespace(name="other", identity="other.example"))
    config = SimpleNamespace(party="host", identity="host", peers=peers, roles={admin: "train" for admin in admins})
    return Node.identify(SimpleNamespace(config=config), names)


def test_user_entry_equal_to_own_identity_is_self_and_mixed_certificates_are_refused():
    from vfl.errors import PermissionDenied
    assert _identify(["host"], admins=("host", "ops")) == "self"
    assert _identify(["ops"], admins=("host", "ops")) == "user:ops"
    assert _identify(["other.example"]) == "other"
    for names, admins in [(["guest", "other.example"], ()),        # two peers
                          (["guest", "host"], ("host",)),           # a peer and self (= admin)
                          (["guest", "ops"], ("ops",)),             # a peer and an admin
                          (["host", "ops"], ("ops",))]:             # self and a different admin
        with pytest.raises(PermissionDenied, match="several configured identities"):
            _identify(names, admins)
    with pytest.raises(PermissionDenied, match="match no configured"):
        _identify(["mallory"], ("ops",))


def test_config_refuses_an_admin_that_is_a_peer_identity(tmp_path):
    from vfl.errors import ConfigError
    base = {"party": "host", "role": "active", "listen": "127.0.0.1:5000", "insecure": True,
            "peers": [{"name": "guest", "address": "127.0.0.1:5001", "identity": "guest.example"}]}
    path = tmp_path / "node.yaml"
    path.write_text(yaml.safe_dump({**base, "admins": ["host", "ops"]}))
    assert load_node_config(path).admins == ("host", "ops")
    path.write_text(yaml.safe_dump({**base, "admins": ["ops", "guest.example"]}))
    with pytest.raises(ConfigError, match=r"admins\[1\].*peer 'guest'"):
        load_node_config(path)


# ------------------------------------------------------------------ the other RPCs

TRAIN_ROWS = np.arange(8, 16)


def assert_serving(session) -> None:
    """The node answers its health check as SERVING."""
    from grpc_health.v1 import health_pb2, health_pb2_grpc
    health = health_pb2_grpc.HealthStub(session["channel"]).Check(health_pb2.HealthCheckRequest(service="vfl.Node"),
                                                                   timeout=30)
    assert health.status == health_pb2.HealthCheckResponse.SERVING


def assert_forward_works(session, job_id: str = JOB, u_ciphertexts: bytes | None = None) -> None:
    """A correct eval Forward is answered with z = h W that decodes."""
    reply = call(session["stub"].Forward, forward(session, job_id=job_id,
                                                  u_ciphertexts=u_ciphertexts or session["good_u"]), pb.ForwardReply)
    z = proto.active_decode_forward(session["ops"], from_wire(
        reply.z_ciphertexts, session["ops"]), 5, session["layout"])
    assert z.shape == (5, 4) and np.isfinite(z).all()


def train_forward(session, epoch: int, step: int) -> pb.ForwardReply:
    return call(session["stub"].Forward, forward(session, phase="train", epoch=epoch, step=step,
                                                 rows=TRAIN_ROWS.astype("<i4").tobytes()), pb.ForwardReply)


def gradient_requests(session, reply: pb.ForwardReply, epoch: int, step: int):
    """Correct WeightGradient and InputGradient requests for a train Forward's reply, as the active party makes them."""
    ops_a, ops_p, layout = session["ops"], session["ops_p"], session["layout"]
    delta = np.random.default_rng(epoch * 100 + step).normal(0.0, 0.5, (len(TRAIN_ROWS), layout.m))
    d_int = proto.encode_gradients(delta, layout)
    weight = pb.WeightGradientRequest(job_id=JOB, epoch=epoch, step=step, delta_ciphertexts=to_wire(
        proto.active_encrypt_gradients(ops_a, d_int, layout)))
    v_bases = from_wire(reply.v_ciphertexts, ops_p)
    grad = proto.active_input_gradient(ops_p, v_bases, d_int, session["share"], layout)
    inputs = pb.InputGradientRequest(job_id=JOB, epoch=epoch, step=step, grad_ciphertexts=to_wire(grad))
    return weight, inputs


def apply_weight_gradient(session, reply: pb.WeightGradientReply) -> None:
    """The active party's half of a step's update: decrypt its gradient share, update U, re-encrypt [U]."""
    from vfl.job.spec import parse_job_spec
    ops, layout = session["ops"], session["layout"]
    train = parse_job_spec(session["spec"]).train
    masked = from_wire(reply.masked_gradient, ops)
    gradient = proto.active_decode_weight_gradient(ops, masked, layout)
    proto.apply_update(session["share"], gradient, len(TRAIN_ROWS), train.interactive_lr, train.interactive_momentum,
                       train.weight_decay, layout)
    u = proto.product_weights(session["share"].weights, layout)
    session["good_u"] = to_wire(proto.weight_bases(ops, u, layout.forward_layout()))


def complete_step(session, weight: pb.WeightGradientRequest, inputs: pb.InputGradientRequest) -> None:
    apply_weight_gradient(session, call(session["stub"].WeightGradient, weight, pb.WeightGradientReply))
    call(session["stub"].InputGradient, inputs, pb.InputGradientReply)


def with_field(request, **fields):
    bad = type(request)()
    bad.CopyFrom(request)
    for name, value in fields.items():
        setattr(bad, name, value)
    return bad


def cipher_width(n: int) -> int:
    return ((n * n).bit_length() + 7) // 8


def test_malformed_gradient_ciphertexts(session):
    """WeightGradient and InputGradient: wrong count, truncated, c >= n^2, gcd(c, n) != 1 -- each refused by name,
    and the pending step is untouched: the correct calls still complete it."""
    stub = session["stub"]
    reply = train_forward(session, 1, 0)
    weight, inputs = gradient_requests(session, reply, 1, 0)
    for method, request, field, n in ((stub.WeightGradient, weight, "delta_ciphertexts", int(session["ops"].n)),
                                      (stub.InputGradient, inputs, "grad_ciphertexts", int(session["ops_p"].n))):
        w = cipher_width(n)
        good = getattr(request, field)
        count = len(good) // w
        cases = {"one ciphertext short": (good[:-w], f"expected {count} ciphertexts, got {count - 1}"),
                 "one too many": (good + good[:w], f"expected {count} ciphertexts, got {count + 1}"),
                 "truncated": (good[:-3], "truncated"),
                 "c >= n^2": (good[:w] + b"\xff" * w + good[2 * w:], "ciphertext 1 is not in the range 0 < c < n^2"),
                 "not a unit": (good[:w] + n.to_bytes(w, "big") + good[2 * w:],
                                "ciphertext 1 shares a factor with n (gcd(c, n) != 1)")}
        for case, (data, says) in cases.items():
            code, detail = status_of(method, with_field(request, **{field: data}))
            assert code == grpc.StatusCode.INVALID_ARGUMENT, (field, case, code, detail)
            assert field in detail and says in detail, (field, case, detail)
            assert_serving(session)
    complete_step(session, weight, inputs)
    assert_forward_works(session)


def test_forward_while_pending_and_replayed_steps(session):
    stub = session["stub"]
    reply = train_forward(session, 2, 0)
    for phase, step in (("train", 1), ("eval", 0), ("train", 0)):  # another step, an evaluation, the same step
        code, detail = status_of(stub.Forward, forward(session, phase=phase, epoch=2, step=step))
        assert code == grpc.StatusCode.FAILED_PRECONDITION, (phase, step, detail)
        assert "step 0 of epoch 2 still waits for its backward call" in detail
        assert_serving(session)
    code, detail = status_of(stub.EndEpoch, pb.EndEpochRequest(job_id=JOB, epoch=2, checkpoint=True))
    assert code == grpc.StatusCode.FAILED_PRECONDITION and "waits for its gradients" in detail
    weight, inputs = gradient_requests(session, reply, 2, 0)
    apply_weight_gradient(session, call(stub.WeightGradient, weight, pb.WeightGradientReply))
    code, detail = status_of(stub.WeightGradient, weight)  # replayed while the step waits for its input gradient
    assert code == grpc.StatusCode.FAILED_PRECONDITION
    assert "weight gradient: already received for step (2, 0)" in detail
    call(stub.InputGradient, inputs, pb.InputGradientReply)
    # the step is complete: replaying any of its messages is refused and changes nothing
    for method, request, what in ((stub.WeightGradient, weight, "weight gradient"),
                                  (stub.InputGradient, inputs, "input gradient")):
        code, detail = status_of(method, request)
        assert code == grpc.StatusCode.FAILED_PRECONDITION and f"{what}: no forward pending for step (2, 0)" in detail
        assert_serving(session)
    for epoch, step in ((2, 0), (1, 7)):  # the same step again, or an earlier one
        code, detail = status_of(stub.Forward, forward(session, phase="train", epoch=epoch, step=step))
        assert code == grpc.StatusCode.FAILED_PRECONDITION and f"step ({epoch}, {step}) is not after" in detail
        assert_serving(session)
    assert_forward_works(session)
    reply = train_forward(session, 2, 1)  # the next step is accepted
    complete_step(session, *gradient_requests(session, reply, 2, 1))
    assert_forward_works(session)


def test_unknown_job_and_step_on_every_call(session):
    stub = session["stub"]
    unknown = "no-such-job"
    requests = {"Setup": (stub.Setup, setup_request(session, job_id=unknown)),
                "Forward": (stub.Forward, forward(session, job_id=unknown)),
                "WeightGradient": (stub.WeightGradient, pb.WeightGradientRequest(job_id=unknown, epoch=0, step=0)),
                "InputGradient": (stub.InputGradient, pb.InputGradientRequest(job_id=unknown, epoch=0, step=0)),
                "EndEpoch": (stub.EndEpoch, pb.EndEpochRequest(job_id=unknown, epoch=1, checkpoint=True)),
                "CloseJob": (stub.CloseJob, pb.CloseJobRequest(job_id=unknown, status="failed"))}
    for name, (method, request) in requests.items():
        code, detail = status_of(method, request)
        assert code == grpc.StatusCode.NOT_FOUND and f"no open job {unknown!r}" in detail, (name, code, detail)
        assert_serving(session)
    # the job is known but the step is not: nothing was forwarded for it
    for method, request, what in ((stub.WeightGradient, pb.WeightGradientRequest(job_id=JOB, epoch=9, step=4),
                                   "weight gradient"),
                                  (stub.InputGradient, pb.InputGradientRequest(job_id=JOB, epoch=9, step=4),
                                   "input gradient")):
        code, detail = status_of(method, request)
        assert code == grpc.StatusCode.FAILED_PRECONDITION and f"{what}: no forward pending for step (9, 4)" in detail
        assert_serving(session)
    # OpenJob: an id that disagrees with its spec, and a job that is already open
    spec_yaml = yaml.safe_dump(session["spec"])
    code, detail = status_of(stub.OpenJob, pb.OpenJob(job_id="other-id", spec_yaml=spec_yaml, resume_epoch=-1))
    assert code == grpc.StatusCode.INVALID_ARGUMENT and "disagrees with the spec's" in detail
    code, detail = status_of(stub.OpenJob, pb.OpenJob(job_id=JOB, spec_yaml=spec_yaml, resume_epoch=-1))
    assert code == grpc.StatusCode.FAILED_PRECONDITION and f"job {JOB!r} is already open" in detail
    assert_forward_works(session)


def test_unknown_psi_session(session):
    from psi.errors import PsiError
    from psi.transport import psi_pb2 as psi_pb
    from psi.transport import psi_pb2_grpc as psi_grpc
    stub = psi_grpc.PsiStub(session["channel"])
    stray = psi_pb.Envelope(session_id="no-such-session", chunk=psi_pb.Chunk(stage=psi_pb.BLINDED, index=0, count=1,
                                                                            data=b"\x00" * 32))
    with pytest.raises(grpc.RpcError) as info:
        list(stub.Session(iter([stray]), timeout=30))
    assert info.value.code() == grpc.StatusCode.FAILED_PRECONDITION
    assert "session no-such-session" in info.value.details() and "must be a hello" in info.value.details()
    assert_serving(session)
    # a hello for a job this node has not opened
    with pytest.raises(PsiError) as refused:
        run_session({"host": session["channel"]}, session["ids"],
                    PsiConfig(metadata={"job_id": "no-such-job"}, workers=0), me="guest")
    assert "no open job 'no-such-job'" in str(refused.value)
    assert_serving(session)


def setup_request(session, job_id: str = JOB, **fields) -> pb.SetupRequest:
    ops = session["ops"]
    base = {"job_id": job_id, "active_public_key": paillier.public_key_bytes(ops),
            "active_djn_base": paillier.djn_base_bytes(ops), "aligned_rows": session["rows"], "interactive_out": 4,
            "layout": session["layout"].to_json()}
    base.update(fields)
    return pb.SetupRequest(**base)


def test_malformed_setup_then_a_correct_one(session):
    """A second job, after PSI (which keeps serving after the refused sessions above): malformed Setups are refused
    by name and leave the job waiting for a correct one; once set up, a replayed Setup is refused."""
    import dataclasses
    import json
    stub, job = session["stub"], "robust-2"
    spec = dict(session["spec"], job_id=job)
    call(stub.OpenJob, pb.OpenJob(job_id=job, spec_yaml=yaml.safe_dump(spec), resume_epoch=-1), pb.OpenJobReply)
    result = run_session({"host": session["channel"]}, session["ids"], PsiConfig(metadata={"job_id": job}, workers=0),
                         me="guest")
    assert result.size == session["rows"]
    n = int(session["ops"].n)
    layout = session["layout"]
    cases = {
        "even modulus": ({"active_public_key": (n + 1).to_bytes(128, "big")}, "not a valid Paillier modulus"),
        "short key": ({"active_public_key": n.to_bytes(128, "big")[:64]}, "has 512 bits, the job requires 1024"),
        "no DJN base": ({"active_djn_base": b""}, "DJN base is missing or out of range"),
        "DJN base >= n^2": ({"active_djn_base": b"\xff" * 257}, "DJN base is missing or out of range"),
        "layout not JSON": ({"layout": b"{not json"}, "invalid layout parameters"),
        "layout field missing": ({"layout": json.dumps({"d": 4}).encode()}, "invalid layout parameters"),
        "weak masks": ({"layout": dataclasses.replace(layout, stat_bits=20).to_json()},
                       "statistical security below 40 bits is refused"),
        "wrong shape": ({"layout": dataclasses.replace(layout, d=5).to_json()}, "disagrees with the job spec"),
        "wrong row count": ({"aligned_rows": session["rows"] + 1}, "this party's PSI result has"),
    }
    for case, (fields, says) in cases.items():
        code, detail = status_of(stub.Setup, setup_request(session, job_id=job, **fields))
        assert code == grpc.StatusCode.INVALID_ARGUMENT and says in detail, (case, code, detail)
        assert_serving(session)
    code, detail = status_of(stub.Forward, forward(session, job_id=job))  # not set up yet
    assert code == grpc.StatusCode.FAILED_PRECONDITION and "not ready" in detail
    reply = call(stub.Setup, setup_request(session, job_id=job), pb.SetupReply)
    assert reply.bottom_out == 4 and reply.passive_public_key and reply.init_masked
    from vfl.protocol.messages import decode_int_matrix
    masked = decode_int_matrix(reply.init_masked, (4, 4), proto.share_bits(layout) + 2)
    u = proto.product_weights(proto.active_init(layout, 0.3, masked, np.random.default_rng(0)).weights, layout)
    u_ciphertexts = to_wire(proto.weight_bases(session["ops"], u, layout.forward_layout()))
    assert_forward_works(session, job, u_ciphertexts)
    # replayed Setup: it would silently give the passive party a fresh key and fresh shares mid-job
    code, detail = status_of(stub.Setup, setup_request(session, job_id=job))
    assert code == grpc.StatusCode.FAILED_PRECONDITION and f"job {job!r} is already set up" in detail
    assert_forward_works(session, job, u_ciphertexts)
    call(stub.CloseJob, pb.CloseJobRequest(job_id=job, status="failed"), pb.CloseJobReply)


def test_psi_for_a_set_up_job_is_refused(session):
    """A second PSI while the job is set up would overwrite its alignment and re-open Setup: it is refused with
    FAILED_PRECONDITION naming the job, the once-per-job rule and the job's state, and the job carries on with
    its keys and shares. (tests/adversary covers second sessions in every mode and state.)"""
    from psi.errors import PeerError
    with pytest.raises(PeerError) as refused:
        run_session({"host": session["channel"]}, session["ids"], PsiConfig(metadata={"job_id": JOB}, workers=0),
                    me="guest")
    assert refused.value.code == "FAILED_PRECONDITION", refused.value
    assert f"PSI for job {JOB!r} refused" in str(refused.value) and "PSI runs once per job" in str(refused.value)
    assert "'ready'" in str(refused.value)
    assert_serving(session)
    assert_forward_works(session)
    # and a replayed Setup after the refused PSI is still refused
    code, detail = status_of(session["stub"].Setup, setup_request(session))
    assert code == grpc.StatusCode.FAILED_PRECONDITION and f"job {JOB!r} is already set up" in detail
    assert_forward_works(session)


def test_node_keeps_serving_after_all_that(session):
    from grpc_health.v1 import health_pb2, health_pb2_grpc
    reply = call(session["stub"].Forward, forward(session), pb.ForwardReply)
    z = proto.active_decode_forward(session["ops"], from_wire(
        reply.z_ciphertexts, session["ops"]), 5, session["layout"])
    assert z.shape == (5, 4) and np.isfinite(z).all() and np.abs(z).max() < 50
    health = health_pb2_grpc.HealthStub(session["channel"]).Check(health_pb2.HealthCheckRequest(service="vfl.Node"))
    assert health.status == health_pb2.HealthCheckResponse.SERVING


def test_psi_bridge_uses_the_node_rule(monkeypatch):
    """PSI on a node: only the job's active party's certificate, and not one that also matches another identity."""
    from types import SimpleNamespace

    from psi.errors import PermissionDenied as PsiPermissionDenied
    from psi.transport.server import PeerInfo
    from vfl.node import psi_service as psi_bridge
    from vfl.node.server import Node
    captured = {}
    monkeypatch.setattr(psi_bridge, "mount_psi_service", lambda server, id_provider, **kw:
                        captured.setdefault("id_provider", id_provider))
    peers = (SimpleNamespace(name="guest", identity="guest"), SimpleNamespace(name="other", identity="other"))
    config = SimpleNamespace(party="host", identity="host", peers=peers, roles={}, insecure=False,
                             timeouts=SimpleNamespace(resume_wait_seconds=60.0))
    # the PSI service runs on the node's compute backend and writes to its audit log (main's fake lacked the log)
    node = SimpleNamespace(config=config, compute=LocalCompute(1), audit=SimpleNamespace(record=lambda *a, **k: None))
    node.identify = lambda names: Node.identify(node, names)
    job = SimpleNamespace(active="guest", claim_psi=lambda hello, caller: ["a", "b"], spec=SimpleNamespace(kind="train"))
    import threading
    registry = SimpleNamespace(node=node, _lock=threading.Lock(), passive_jobs={"j": job})
    psi_bridge.add_psi_service(None, registry)
    provide = captured["id_provider"]
    from psi.protocol.messages import Mode
    hello = SimpleNamespace(metadata={"job_id": "j"}, session_id="s", mode=Mode.INTERSECTION)
    assert provide(hello, PeerInfo(("guest",), "")) == ["a", "b"]
    for names, reason in [(("guest", "other"), "several configured identities"),
                          (("other",), "active party"), (("mallory",), "match no configured")]:
        with pytest.raises(PsiPermissionDenied, match=reason):
            provide(hello, PeerInfo(names, ""))
