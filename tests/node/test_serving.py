"""Online scoring between real nodes (separate `vfl serve` processes, mutual TLS): a trained model is exported with
`vfl export`, registered in each node's config, and served after a restart with its job directories moved away.

Covered: the Score RPC equals the batch predict job for the same IDs; `vfl score`; an unknown ID; a caller that may
not score (a peer's certificate at the active node, a client with role read, a Score at the passive node) and one that
may (role predict); per-caller rate limits; every
request in both parties' audit logs; a changed exported file refused while the node serves its other models; the
serving port; a passive node that restarts (its session is opened again).
"""
from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from tests.node.conftest import SMALL_JOB, breast_parties
from vfl.models.format import WEIGHTS

REPO = Path(__file__).resolve().parents[2]
MODEL_JOB = "credit-1"


def _cli(*args: str, timeout: float = 180) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "vfl.cli.main", *args], capture_output=True, text=True,
                          timeout=timeout, env={**os.environ, "PYTHONPATH": str(REPO)})


def _edit_config(fed, party: str, change) -> None:
    config = yaml.safe_load(fed.configs[party].read_text())
    change(config)
    fed.configs[party].write_text(yaml.safe_dump(config, sort_keys=False))


@pytest.fixture(scope="module")
def served(tmp_path_factory):
    from vfl.api import Federation, UnmatchedRowsWarning, free_port
    from vfl.transport.certs import issue_party_cert
    parties = breast_parties()
    workdir = tmp_path_factory.mktemp("serving")
    job = json.loads(json.dumps(SMALL_JOB))
    job["train"]["epochs"] = 1
    with Federation(parties, workdir=workdir, secret_seed=11) as fed:
        model = fed.fit(task="binary", job_id=MODEL_JOB, progress=False, **job)
        with pytest.warns(UnmatchedRowsWarning):   # the host lacks some of the guest's rows
            predicted = fed.predict(model, {p.name: p.data for p in parties}, job_id="credit-predict")
        exports = {}
        for party in ("guest", "host"):
            exports[party] = workdir / "models" / party
            run = _cli("export", MODEL_JOB, "--config", str(fed.configs[party]), "--out", str(exports[party]))
            assert run.returncode == 0, run.stderr
        tampered = workdir / "models" / "tampered"
        shutil.copytree(exports["guest"], tampered)
        data = bytearray((tampered / WEIGHTS).read_bytes())
        data[-9] ^= 0x01
        (tampered / WEIGHTS).write_bytes(bytes(data))
        ops = issue_party_cert(workdir / "ca", "ops", workdir / "ops-tls")   # an admin with a small rate limit
        scorer = issue_party_cert(workdir / "ca", "scorer", workdir / "scorer-tls")   # role predict: may score
        viewer = issue_party_cert(workdir / "ca", "viewer", workdir / "viewer-tls")   # role read: may not
        serving_port = free_port()

        def guest(config):
            config["admins"] = ["ops"]
            config["roles"] = {"scorer": "predict", "viewer": "read"}
            config["serving"] = {"listen": f"127.0.0.1:{serving_port}",
                                 "models": {"credit": {"path": str(exports["guest"]), "table": "table"},
                                            "tampered": {"path": str(tampered), "table": "table"}},
                                 "rate_limits": {"ops": {"ids_per_second": 0.5, "burst": 6}}}

        def host(config):
            config["serving"] = {"models": {"credit": {"path": str(exports["host"]), "table": "table"}}}
        _edit_config(fed, "guest", guest)
        _edit_config(fed, "host", host)
        for party in ("guest", "host"):   # the nodes serve from the exports alone
            job_dir = workdir / party / "jobs" / MODEL_JOB
            job_dir.rename(job_dir.with_name(MODEL_JOB + ".moved"))
            fed.restart(party)
        yield {"fed": fed, "predicted": predicted, "ops": ops, "scorer": scorer, "viewer": viewer,
               "serving_port": serving_port,
               "guest_ids": [str(i) for i in parties[0].data["id"]],
               "host_ids": set(str(i) for i in parties[1].data["id"])}


def _client(served, address: str | None = None, certs=None, identity: str = "guest"):
    from vfl.api import Client
    fed = served["fed"]
    if certs is None:
        return Client.from_node_config(fed.configs["guest"], address)
    return Client(address or f"127.0.0.1:{fed.ports['guest']}", certs.cert, certs.key, certs.ca, identity=identity)


def _audit(served, party: str) -> list[dict]:
    path = served["fed"].workdir / party / "audit" / "audit.jsonl"
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]


def test_score_over_grpc_equals_the_batch_predict_job(served):
    predicted = served["predicted"]
    expected = dict(zip(predicted.iloc[:, 0].astype(str), predicted["prediction"]))
    ids = served["guest_ids"][:40]
    client = _client(served)
    try:
        reply = client.score("credit", ids)
    finally:
        client.close()
    assert reply["outputs"] == ["1"] and [r["id"] for r in reply["results"]] == ids
    for r in reply["results"]:
        if r["id"] in served["host_ids"]:
            assert r["status"] == "ok" and abs(r["scores"][0] - expected[r["id"]]) < 1e-5, r
        else:
            assert r["status"] == "unknown_id" and "host holds no row" in r["detail"], r
    assert any(r["status"] == "unknown_id" for r in reply["results"])


def test_vfl_score_prints_each_id_and_fails_when_one_is_not_scored(served):
    fed = served["fed"]
    held = [i for i in served["guest_ids"] if i in served["host_ids"]][:2]
    run = _cli("score", "--model", "credit", "--config", str(fed.configs["guest"]), *held, "--json")
    assert run.returncode == 0, run.stderr
    assert [r["status"] for r in json.loads(run.stdout)["results"]] == ["ok", "ok"]
    run = _cli("score", "--model", "credit", "--config", str(fed.configs["guest"]), held[0], "nobody-here")
    assert run.returncode == 1 and "unknown_id" in run.stdout and held[0] in run.stdout, run.stdout + run.stderr


def test_the_serving_port_answers_score(served):
    client = _client(served, address=f"127.0.0.1:{served['serving_port']}")
    try:
        assert client.score("credit", served["guest_ids"][:1])["results"][0]["status"] in ("ok", "unknown_id")
    finally:
        client.close()


def test_a_caller_that_may_not_score_is_refused_and_audited(served):
    from vfl.api import ScoreError
    fed = served["fed"]
    host_tls = yaml.safe_load(fed.configs["host"].read_text())["tls"]
    certs = type("Certs", (), {k: Path(v) for k, v in host_tls.items()})
    peer = _client(served, certs=certs)          # the host's own certificate, at the active node
    try:
        with pytest.raises(ScoreError) as refused:
            peer.score("credit", served["guest_ids"][:1])
    finally:
        peer.close()
    assert refused.value.code == "PERMISSION_DENIED"
    assert any(e["action"] == "score refused" and e["details"]["status"] == "PERMISSION_DENIED"
               for e in _audit(served, "guest"))
    viewer = _client(served, certs=served["viewer"])   # role read: may watch jobs, not score
    try:
        with pytest.raises(ScoreError, match="needs role 'predict'") as refused:
            viewer.score("credit", served["guest_ids"][:1])
    finally:
        viewer.close()
    assert refused.value.code == "PERMISSION_DENIED"
    scorer = _client(served, certs=served["scorer"])   # role predict
    try:
        assert scorer.score("credit", served["guest_ids"][:1])["results"][0]["status"] in ("ok", "unknown_id")
    finally:
        scorer.close()
    from vfl.api import Client
    at_passive = Client.from_node_config(fed.configs["host"])   # the passive node's own identity, at that node
    try:
        with pytest.raises(ScoreError, match="passive party of model 'credit'"):
            at_passive.score("credit", served["guest_ids"][:1])
    finally:
        at_passive.close()


def test_rate_limits_are_per_caller(served):
    from vfl.api import ScoreError
    ops = _client(served, certs=served["ops"])
    try:
        assert len(ops.score("credit", served["guest_ids"][:6])["results"]) == 6   # the burst
        with pytest.raises(ScoreError, match="rate limit of 'ops'") as limited:
            ops.score("credit", served["guest_ids"][:3])
        assert limited.value.code == "RESOURCE_EXHAUSTED"
    finally:
        ops.close()
    node = _client(served)            # the node's own identity has the default limit
    try:
        assert len(node.score("credit", served["guest_ids"][:3])["results"]) == 3
    finally:
        node.close()


def test_every_request_is_in_both_parties_audit_logs_with_its_id_count(served):
    client = _client(served)
    try:
        client.score("credit", served["guest_ids"][100:107])
    finally:
        client.close()
    guest = [e for e in _audit(served, "guest") if e["action"] == "score"]
    host = [e for e in _audit(served, "host") if e["action"] == "score"]
    assert guest[-1]["actor"] == "self" and guest[-1]["details"]["ids"] == 7 and guest[-1]["details"]["model"] == "credit"
    held = sum(i in served["host_ids"] for i in served["guest_ids"][100:107])
    assert any(e["actor"] == "guest" and e["details"]["ids"] == held for e in host)
    assert any(e["action"] == "scoring session opened" and e["actor"] == "guest" for e in _audit(served, "host"))


def test_a_changed_exported_file_is_refused_and_the_node_serves_its_other_models(served):
    from vfl.api import ScoreError
    client = _client(served)
    try:
        with pytest.raises(ScoreError, match="changed since export"):
            client.score("tampered", served["guest_ids"][:1])
        with pytest.raises(ScoreError, match="no model named 'nope'"):
            client.score("nope", served["guest_ids"][:1])
        assert client.score("credit", served["guest_ids"][:2])["results"][0]["status"] in ("ok", "unknown_id")
    finally:
        client.close()


def test_a_restarted_passive_node_gets_a_new_session(served):
    fed = served["fed"]
    held = [i for i in served["guest_ids"] if i in served["host_ids"]][:3]
    client = _client(served)
    try:
        before = client.score("credit", held)
        fed.restart("host")
        after = client.score("credit", held)
    finally:
        client.close()
    assert [r["scores"] for r in after["results"]] == [r["scores"] for r in before["results"]]
