"""Roles (issue 13, part 6): each client certificate identity gets a role in the node config (read, predict, train);
`admins` means train; the node's own identity may do everything, any other identity nothing. A refused action
names the role it needs and is an `action refused` entry of the node's audit log.

The node test runs real nodes with mutual TLS and calls the active node's Control service with client
certificates of the federation's CA: a reader, a predictor, a trainer and the passive peer's own certificate."""
from __future__ import annotations

import json
from pathlib import Path

import pytest
import yaml

from tests.node.conftest import breast_parties
from vfl.errors import ConfigError
from vfl.governance import roles
from vfl.node.config import load_node_config

SMALL = {"model": {"bottom": {"hidden": [8], "out": 4}, "interactive": {"out": 4}, "top": {"hidden": [4]}},
         "train": {"epochs": 1, "batch_size": 256}, "crypto": {"mode": "plaintext"}}


# ------------------------------------------------------------------------------------------ the table

def test_each_role_has_its_rights_and_those_below():
    expected = {
        "read": {"list", "show", "watch"},
        "predict": {"list", "show", "watch", "submit", "submit:predict", "score"},
        "train": {"list", "show", "watch", "submit", "submit:predict", "score", "submit:train", "submit:psi",
                  "submit:cardinality", "cancel"},
    }
    actions = set().union(*expected.values())
    for role, rights in expected.items():
        assert {a for a in actions if roles.allows(role, a)} == rights, role
    assert not any(roles.allows(None, a) for a in actions)          # no role: no right
    with pytest.raises(ValueError, match="unknown action"):
        roles.allows("train", "delete")
    with pytest.raises(ValueError, match="unknown role"):
        roles.allows("admin", "list")


def test_a_refusal_names_the_role_it_needs_and_the_one_the_caller_has():
    message = roles.refusal("user:scorer", "predict", "submit:train", "bank-a")
    assert message == ("'user:scorer' may not submit a train job at 'bank-a': that needs role 'train', and "
                       "'user:scorer' has role 'predict' there (node config `roles`)")
    assert "needs role 'read'" in roles.refusal("bank-b", None, "list", "bank-a")
    assert "has no role" in roles.refusal("bank-b", None, "list", "bank-a")
    assert "role 'predict' (prediction jobs) or 'train'" in roles.refusal("user:r", "read", "submit", "bank-a")


# ------------------------------------------------------------------------------------------ node config

BASE = {"party": "host", "role": "active", "listen": "127.0.0.1:5000", "insecure": True,
        "peers": [{"name": "guest", "address": "127.0.0.1:5001", "identity": "guest.example"}]}


def _config(tmp_path: Path, **keys):
    path = tmp_path / "node.yaml"
    path.write_text(yaml.safe_dump({**BASE, **keys}))
    return load_node_config(path)


def test_roles_and_admins_in_the_node_config(tmp_path):
    config = _config(tmp_path, admins=["ops"], roles={"scorer": "predict", "auditor": "read", "host": "train"})
    assert config.roles == {"ops": "train", "scorer": "predict", "auditor": "read"}   # own identity: 'self'
    assert _config(tmp_path).roles == {}                                               # default: nobody
    refused = [({"roles": {"guest.example": "read"}}, r"roles\.guest\.example: .*identity of peer 'guest'"),
               ({"roles": {"auditor": "admin"}}, r"roles\.auditor: must be one of \['read', 'predict', 'train'\]"),
               ({"roles": {"*": "read"}}, r"roles\.\*: .*wildcard"),
               ({"admins": ["ops"], "roles": {"ops": "read"}}, r"roles\.ops: .*also listed in admins"),
               ({"roles": {"host": "read"}}, r"roles\.host: .*own identity, which has every right"),
               ({"roles": ["ops"]}, r"roles: must be a mapping"),
               ({"admins": ["ops", "guest.example"]}, r"admins\[1\].*peer 'guest'")]
    for keys, message in refused:
        with pytest.raises(ConfigError, match=message):
            _config(tmp_path, **keys)


# ------------------------------------------------------------------------------------------ real nodes

def _client(fed, identity: str, workdir: Path):
    """A Control client of the active node 'guest' with a certificate for `identity` from the federation's CA."""
    from vfl.api import Client
    from vfl.transport.certs import issue_party_cert
    cert = issue_party_cert(fed.workdir / "ca", identity, workdir / identity)
    return Client(f"127.0.0.1:{fed.ports['guest']}", cert.cert, cert.key, cert.ca, identity="guest", party="guest")


def _refused(call) -> str:
    from vfl.api import JobError
    with pytest.raises(JobError) as info:
        call()
    assert info.value.code == "PERMISSION_DENIED", info.value
    return str(info.value)


def test_each_role_is_held_to_its_rights_at_a_real_node(tmp_path):
    from vfl.api import Client, Federation, job_spec
    options = {"guest": {"roles": {"trainer": "train", "scorer": "predict", "auditor": "read"}}}
    with Federation(breast_parties(), workdir=tmp_path / "fed", party_options=options) as fed:
        trainer, scorer, auditor = (_client(fed, name, tmp_path / "clients") for name in
                                    ("trainer", "scorer", "auditor"))
        peer = load_node_config(fed.configs["host"]).tls   # the passive party's own certificate
        as_peer = Client(f"127.0.0.1:{fed.ports['guest']}", peer.cert, peer.key, peer.ca, identity="guest")
        parties = {"guest": "table", "host": "table"}
        train = lambda job_id: job_spec("train", parties, "guest", job_id, **SMALL)   # noqa: E731

        # train: submits a training job, and may do what the others may
        result = trainer.run(train("by-trainer"), progress=False)
        assert result["test"]
        # predict: a prediction job, but no training job and no cancel
        message = _refused(lambda: scorer.run(train("by-scorer"), progress=False))
        assert "may not submit a train job" in message and "needs role 'train'" in message
        assert "has role 'predict'" in message
        predicted = scorer.run(job_spec("predict", parties, "guest", "scored", model_job="by-trainer"),
                               progress=False)
        assert predicted["predictions"]
        assert "needs role 'train'" in _refused(lambda: scorer.cancel("scored"))
        # read: lists, shows and watches, submits and cancels nothing
        assert {j["job_id"] for j in auditor.jobs()} >= {"by-trainer", "scored"}
        assert auditor.job("by-trainer")["state"] == "succeeded"
        assert list(auditor.watch("by-trainer"))
        message = _refused(lambda: auditor.run(train("by-auditor"), progress=False))
        assert "may not submit jobs" in message and "has role 'read'" in message
        assert "needs role 'predict'" in _refused(lambda: auditor.run(
            job_spec("predict", parties, "guest", "by-auditor", model_job="by-trainer"), progress=False))
        # a peer's certificate has no role at all: it may not even list
        message = _refused(as_peer.jobs)
        assert "'host' may not list jobs" in message and "needs role 'read'" in message and "has no role" in message
        for client in (trainer, scorer, auditor, as_peer):
            client.close()
        own = Client.from_node_config(fed.configs["guest"])   # the node itself may do everything
        listed = {j["job_id"] for j in own.jobs()}
        own.close()
    assert not {"by-scorer", "by-auditor"} & listed
    entries = [json.loads(line) for line in (tmp_path / "fed" / "guest" / "audit" / "audit.jsonl").read_text()
               .splitlines()]
    refused = [(e["actor"], e["details"]["asked"], e["details"]["needs"]) for e in entries
               if e["action"] == "action refused"]
    assert refused == [("user:scorer", "submit:train", "train"), ("user:scorer", "cancel", "train"),
                       ("user:auditor", "submit", "predict"), ("user:auditor", "submit", "predict"),
                       ("host", "list", "read")], refused
    submitted = {(e["actor"], e["details"]["job_id"]) for e in entries if e["action"] == "job submitted"}
    assert submitted == {("user:trainer", "by-trainer"), ("user:scorer", "scored")}
