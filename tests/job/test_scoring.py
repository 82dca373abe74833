"""Online scoring in one process: the exported parts of a trained job, the real scoring runtimes and protocol, the
passive party behind an in-process link (the node tests run the same over gRPC, tests/node/test_serving.py)."""
from __future__ import annotations

import json
import threading

import pandas as pd
import pytest

from tests.job.conftest import job_spec, local_configs
from tests.job.local import run_local_job
from vfl.data.online import InMemoryTable
from vfl.errors import NotFound, ProtocolError
from vfl.job.export import export_part
from vfl.job.serving import INVALID_ID, OK, UNAVAILABLE, UNKNOWN_ID, ActiveScorer, PassiveScorer
from vfl.models.format import WEIGHTS, ModelFormatError
from vfl.models.served import load_served_part
from vfl.protocol.link import InProcessLink
from vfl.protocol.messages import OpenScoring, OpenScoringReply, ScoreRows, ScoreRowsReply, encode_ids


@pytest.fixture(scope="module")
def served(tmp_path_factory):
    base = tmp_path_factory.mktemp("scoring")
    configs = local_configs(base)
    run_local_job(job_spec("srv-1", train__epochs=1), configs)
    predicted = run_local_job(job_spec("srv-predict", kind="predict", model_job="srv-1"), configs)
    parts = {party: export_part(configs[party].job_dir("srv-1"), base / "export" / party) for party in configs}
    frame = pd.read_csv(predicted["predictions"], dtype={"id": str})
    return {"configs": configs, "parts": parts, "predictions": dict(zip(frame["id"], frame["prediction"]))}


class Wire:
    """The in-process link's view: every message between the parties, in order."""

    def __init__(self):
        self.messages: list[object] = []

    def __call__(self, message):
        self.messages.append(message)
        return message


def scorers(served, missing_ids: str = "reveal", max_ids: int = 256, micro_batch: bool = False,
            wire: Wire | None = None) -> tuple[ActiveScorer, PassiveScorer]:
    configs, parts = served["configs"], served["parts"]
    host = load_served_part(parts["host"], {}, "host")
    passive = PassiveScorer("credit", host, InMemoryTable(configs["host"].dataset("table"), host.schema,
                                                           host.canonical_id), missing_ids, max_ids, 1024)

    def handle(request):
        if isinstance(request, OpenScoring):
            return passive.open_session(request)[0]
        return passive.score_rows(request)[0]
    guest = load_served_part(parts["guest"], {}, "guest")
    table = InMemoryTable(configs["guest"].dataset("table"), guest.schema, guest.canonical_id)
    active = ActiveScorer("credit", guest, table, None, {"host": InProcessLink("host", handle, wire)}, max_ids,
                          micro_batch)
    return active, passive


def guest_ids(served) -> list[str]:
    return [str(i) for i in pd.read_csv(served["configs"]["guest"].dataset("table").path, dtype={"id": str})["id"]]


def test_scoring_equals_the_batch_predict_job_for_every_id(served):
    active, _ = scorers(served)
    ids = guest_ids(served)
    results = [r for start in range(0, len(ids), 256) for r in active.score(ids[start:start + 256])]
    predictions = served["predictions"]
    scored = {r.id: r.scores[0] for r in results if r.status == OK}
    assert set(scored) == set(predictions)                          # 569 - the 30 patients the host lacks
    assert {r.status for r in results if r.id not in predictions} == {UNKNOWN_ID}
    assert max(abs(scored[i] - predictions[i]) for i in scored) < 1e-5
    assert active.outputs == ["1"]                                   # P(label 1)


def test_an_id_a_party_lacks_gets_a_clear_status_as_its_policy_says(served):
    ids = guest_ids(served)
    missing_at_host = next(i for i in ids if i not in served["predictions"])
    held = next(i for i in ids if i in served["predictions"])
    request = [held, missing_at_host, "patient-9999", " "]
    revealed = scorers(served, "reveal")[0].score(request)
    assert [r.status for r in revealed] == [OK, UNKNOWN_ID, UNKNOWN_ID, INVALID_ID]
    assert "host holds no row" in revealed[1].detail and "guest (the active party)" in revealed[2].detail
    withheld = scorers(served, "withhold")[0].score(request)
    assert [r.status for r in withheld] == [OK, UNAVAILABLE, UNKNOWN_ID, INVALID_ID]
    assert "host did not score" in withheld[1].detail and "holds no" not in withheld[1].detail
    assert withheld[0].scores == revealed[0].scores


def test_a_session_is_opened_once_and_requests_carry_ids_and_ciphertexts_only(served):
    wire = Wire()
    active, passive = scorers(served, wire=wire)
    ids = guest_ids(served)
    for k in range(3):
        active.score(ids[k * 5:(k + 1) * 5])
    kinds = [type(m).__name__ for m in wire.messages]
    assert kinds == ["OpenScoring", "OpenScoringReply"] + ["ScoreRows", "ScoreRowsReply"] * 3
    width = ((passive.sessions[next(iter(passive.sessions))].ops_a.n ** 2).bit_length() + 7) // 8
    for message in wire.messages:
        if isinstance(message, ScoreRows):
            assert len(json.loads(message.ids)) == 5
        if isinstance(message, ScoreRowsReply):
            assert len(message.z_ciphertexts) % width == 0 and len(message.status) == 5
    # the activations never cross: search every message for the host's h of the scored rows, as float32 or float64
    host = passive.part
    x, found = passive.table.lookup(ids[:15])
    h = host.activations(x[found])
    blob = b"".join(getattr(m, f) for m in wire.messages for f in m.__dataclass_fields__
                    if isinstance(getattr(m, f), bytes))
    for row in h:
        for dtype in ("<f4", "<f8"):
            assert row.astype(dtype).tobytes()[:8] not in blob


def test_concurrent_requests_share_calls_with_micro_batching_and_get_the_same_scores(served):
    ids = [i for i in guest_ids(served) if i in served["predictions"]][:24]
    alone = {r.id: r for r in scorers(served)[0].score(ids)}
    wire = Wire()
    active, _ = scorers(served, micro_batch=True, wire=wire)
    out: dict[str, object] = {}
    threads = [threading.Thread(target=lambda i=i: out.update({i: active.score([i])[0]})) for i in ids]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert set(out) == set(alone) and all(r.status == OK for r in out.values())
    # float32 products of a batch of 1 and of 24 rows may differ in the last bits; nothing more
    assert max(abs(out[i].scores[0] - alone[i].scores[0]) for i in ids) < 1e-6
    calls = sum(isinstance(m, ScoreRows) for m in wire.messages)
    assert calls == active.batcher.batches <= len(ids)


def test_a_changed_or_foreign_export_is_refused_with_the_reason(served, tmp_path):
    parts = served["parts"]
    with pytest.raises(ModelFormatError, match="exported by party 'host'"):
        load_served_part(parts["host"], {}, "guest")
    with pytest.raises(ModelFormatError, match="is a job directory"):
        load_served_part(served["configs"]["host"].job_dir("srv-1"), {}, "host")
    changed = export_part(served["configs"]["host"].job_dir("srv-1"), tmp_path / "changed")
    data = bytearray((changed / WEIGHTS).read_bytes())
    data[-5] ^= 0x10
    (changed / WEIGHTS).write_bytes(bytes(data))
    with pytest.raises(ModelFormatError, match="changed since export"):
        load_served_part(changed, {}, "host")


def test_the_passive_party_refuses_what_its_part_and_policy_do_not_allow(served):
    active, passive = scorers(served)
    active.open()
    session, half, _ = active._sessions["host"]
    good = half.open_request("srv-1")
    layout = json.loads(good.layout)
    other = OpenScoring(**{**good.__dict__, "layout": json.dumps({**layout, "f_h": layout["f_h"] + 1},
                                                                 sort_keys=True).encode()})
    with pytest.raises(ProtocolError, match="different interactive layout"):
        passive.open_session(other)
    strict = PassiveScorer("credit", passive.part, passive.table, "reveal", 256, 2048)
    with pytest.raises(ProtocolError, match="below this party's policy"):
        strict.open_session(good)
    with pytest.raises(ProtocolError, match="open scoring"):
        passive.open_session(OpenScoring(**{**good.__dict__, "u_ciphertexts": good.u_ciphertexts[:-7]}))
    reply, _ = passive.open_session(good)
    assert isinstance(reply, OpenScoringReply) and reply.max_ids == 256
    with pytest.raises(NotFound, match="no scoring session"):
        passive.score_rows(ScoreRows(session="forged", ids=encode_ids(["x"])))
    for ids in (b"not json", json.dumps([1, 2]).encode(), json.dumps(["a"] * 257).encode(), b"[]"):
        with pytest.raises(ProtocolError):
            passive.score_rows(ScoreRows(session=reply.session, ids=ids))


class _Audit:
    def __init__(self):
        self.entries: list[tuple] = []

    def record(self, actor, action, **details):
        self.entries.append((actor, action, details))


class _PassiveNode:
    """What NodeServing needs of a passive node, in this process."""

    def __init__(self, config):
        self.config, self.audit = config, _Audit()

    def models(self):
        return {}

    def dataset(self, name):
        return self.config.dataset(name)


def test_a_passive_node_serves_a_registered_job_and_only_to_its_active_party(served):
    """serving.models.NAME.job: an old-style job directory is exported when first loaded; only the party the model
    was trained with may open a session, and every session and call is audited."""
    import dataclasses

    from vfl.node.config import ServedModelConfig, ServingConfig
    from vfl.node.serving import NodeServing
    config = served["configs"]["host"]
    config = dataclasses.replace(config, serving=ServingConfig(
        models={"credit": ServedModelConfig(name="credit", job="srv-1", table="table")}))
    node = _PassiveNode(config)
    serving = NodeServing(node)
    scorer = serving.scorer("credit")
    assert isinstance(scorer, PassiveScorer) and scorer.part.job_id == "srv-1"
    active, _ = scorers(served)
    active.open()
    request = active._sessions["host"][1].open_request("srv-1")
    with pytest.raises(NotFound, match="serves no model of training job 'srv-1' for 'intruder'"):
        serving.handle(request, "intruder")
    with pytest.raises(NotFound, match="training job 'other'"):
        serving.handle(OpenScoring(**{**request.__dict__, "model_id": "other"}), "guest")
    reply = serving.handle(request, "guest")
    rows = serving.handle(ScoreRows(session=reply.session, ids=encode_ids(guest_ids(served)[:3])), "guest")
    assert len(rows.status) == 3
    with pytest.raises(NotFound, match="no scoring session"):   # a session belongs to the party that opened it
        serving.handle(ScoreRows(session=reply.session, ids=encode_ids(["x"])), "intruder")
    actions = [(actor, action) for actor, action, _ in node.audit.entries]
    assert ("intruder", "scoring session refused") in actions and ("guest", "scoring session opened") in actions
    assert ("guest", "score") in actions and ("intruder", "score refused") in actions
    assert next(d for a, act, d in node.audit.entries if act == "score")["ids"] == 3
