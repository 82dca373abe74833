"""A node's own policy decides what a peer's job may ask of it: no downgrade by the active party.

A real passive node with the default policy is sent OpenJob calls, over mutual TLS from the active
party's certificate, that ask for plaintext split learning, 1024-bit keys, or the attack harness. Each
is refused with PERMISSION_DENIED naming the spec key, and an allowed job still opens afterwards.
"""
from __future__ import annotations

import grpc
import pytest
import yaml

from tests.node.conftest import breast_parties
from vfl.errors import ConfigError
from vfl.node.config import load_node_config, parse_node_config
from vfl.transport import tls
from vfl.transport.chunking import read_one, to_chunks
from vfl.transport.proto import node_pb2 as pb
from vfl.transport.proto import node_pb2_grpc as pb_grpc

STRICT = {"policy": {"min_key_bits": 2048, "allow_plaintext": False, "allow_attack_harness": False}}


def spec(job_id: str, **overrides) -> str:
    base = {"job_id": job_id, "active": "guest", "task": "binary",
            "parties": {"guest": {"dataset": "table"}, "host": {"dataset": "table"}},
            "model": {"bottom": {"out": 4}, "interactive": {"out": 4}}, "crypto": {"key_bits": 2048}}
    base.update(overrides)
    return yaml.safe_dump(base)


@pytest.fixture(scope="module")
def host_stub(tmp_path_factory):
    from vfl.api import Federation
    with Federation(breast_parties(), workdir=tmp_path_factory.mktemp("policy"), node_options=STRICT) as fed:
        guest = load_node_config(fed.configs["guest"])
        creds = tls.channel_credentials(guest.tls.cert, guest.tls.key, guest.tls.ca)
        channel = tls.open_channel(f"127.0.0.1:{fed.ports['host']}", creds, "host")
        yield pb_grpc.PartyStub(channel)
        channel.close()


@pytest.mark.parametrize("job_id, overrides, key", [
    ("p-plain", {"crypto": {"mode": "plaintext"}}, "crypto.mode"),
    ("p-small-key", {"crypto": {"key_bits": 1024}}, "crypto.key_bits"),
    ("p-harness", {"privacy": {"attacks": True}}, "privacy.attacks"),
])
def test_passive_node_refuses_what_its_policy_forbids(host_stub, job_id, overrides, key):
    with pytest.raises(grpc.RpcError) as info:
        list(host_stub.OpenJob(to_chunks(pb.OpenJob(job_id=job_id, spec_yaml=spec(job_id, **overrides),
                                                    resume_epoch=-1)), timeout=60))
    assert info.value.code() == grpc.StatusCode.PERMISSION_DENIED
    assert info.value.details().startswith(key + ":")
    assert "'host'" in info.value.details()


def test_allowed_job_still_opens(host_stub):
    reply = read_one(host_stub.OpenJob(to_chunks(pb.OpenJob(job_id="p-ok", spec_yaml=spec("p-ok"), resume_epoch=-1)),
                                       timeout=60), pb.OpenJobReply)
    assert reply.feature_dim > 0


def base_config(**extra) -> dict:
    return {"party": "bank-a", "role": "passive", "listen": "127.0.0.1:50051", "insecure": True, **extra}


def test_policy_defaults_refuse_the_insecure_options(tmp_path):
    policy = parse_node_config(base_config(), tmp_path).policy
    assert (policy.min_key_bits, policy.allow_plaintext, policy.allow_attack_harness) == (2048, False, False)


@pytest.mark.parametrize("policy, key", [({"min_key_bits": 512}, "policy.min_key_bits"),
                                         ({"allow_plaintxt": True}, "policy.allow_plaintxt")])
def test_bad_policy_names_the_key(tmp_path, policy, key):
    with pytest.raises(ConfigError, match=key.replace(".", r"\.")):
        parse_node_config(base_config(policy=policy), tmp_path)
