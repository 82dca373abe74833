"""The pipeline (node config compute.pipeline, issue 12 item 4) changes when work is done, nothing else: a training
and a prediction job give the same losses, metrics and predictions with and without it, and the parties exchange
the same messages, in the same order and of the same sizes.

In the plaintext scheme the two runs are bit-identical. Under Paillier the weight shares are masked with fresh OS
randomness in every run (vfl/protocol/interactive.py), and each share is rounded on its own, so any two runs, with or
without the pipeline, agree to about 1e-8 and no better; the test allows 1e-6."""
from __future__ import annotations

import io
import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from tests.job.conftest import job_spec, local_configs
from tests.job.local import run_local_job
from vfl.node.config import parse_node_config


def configs_with(tmp_path: Path, pipeline: bool) -> dict:
    """The two parties' node configs, with fixed secret seeds (the same initial weights in both runs)."""
    out = {}
    for name, config in local_configs(tmp_path).items():
        raw = {"party": name, "role": config.role, "insecure": True, "workers": 1,
               "datasets": {"table": {"path": str(config.dataset("table").path), "id": "id",
                                      **({"label": "y"} if name == "guest" else {})}},
               "policy": {"allow_plaintext": True, "min_key_bits": 1024},
               "secret_seed": 7 if name == "guest" else 8, "compute": {"pipeline": pipeline}}
        out[name] = parse_node_config(raw, tmp_path / name)
    return out


#: fields whose size varies from run to run: integers drawn at random (the initial mask, a key, a DJN base)
RANDOM_SIZE = ("SetupReply.init_masked", "public_key", "djn_base")


def wire(config, job_id: str) -> dict:
    """What crossed, as the party recorded it: how many times each (direction, peer, field) crossed and how many
    bytes it took (a field of random size counts only), and the fields of the requests it sent, in order. (Replies
    and requests of the two concurrent backward calls interleave in any order in the journal, in every run.)"""
    journal = config.jobs_dir / job_id / "wire-ledger.jsonl"
    records = [tuple(json.loads(line)) for line in journal.read_text().splitlines()]
    counts: dict = {}
    for direction, peer, field, nbytes in records:
        count, total = counts.get((direction, peer, field), (0, 0))
        counts[(direction, peer, field)] = (count + 1, None if any(r in field for r in RANDOM_SIZE) else total + nbytes)
    requests = [field for direction, _, field, _ in records if direction == "sent" and "Request" in field]
    return {"counts": counts, "requests": requests}


@pytest.mark.parametrize("mode", ["paillier", "plaintext"])
def test_the_pipeline_changes_neither_the_model_nor_what_crosses_the_wire(tmp_path, mode):
    runs = {}
    for pipeline in (False, True):
        configs = configs_with(tmp_path / f"pipeline-{pipeline}", pipeline)
        assert configs["guest"].compute.pipeline is pipeline
        # no label defense: its noise comes from the OS generator, and would differ between any two runs
        trained = run_local_job(job_spec("pipe-train", train__epochs=2, crypto={"mode": mode, "key_bits": 1024},
                                         privacy={"defense": "none"}), configs)
        predicted = run_local_job(job_spec("pipe-predict", kind="predict", model_job="pipe-train"), configs)
        runs[pipeline] = {
            "history": [(row["loss"], row.get("validation_auc")) for row in trained["history"]],
            "test": trained["test"],
            "predictions": Path(predicted["predictions"]).read_text(),
            "wire": {name: [wire(c, "pipe-train"), wire(c, "pipe-predict")] for name, c in configs.items()},
        }
    plain, piped = runs[False], runs[True]
    for party in ("guest", "host"):
        assert piped["wire"][party] == plain["wire"][party], party
    assert piped["predictions"].count("\n") > 500
    # rows come in PSI's agreed order, which every session draws afresh: compare by ID
    a, b = (pd.read_csv(io.StringIO(r["predictions"]), dtype={"id": str}).set_index("id").sort_index()
            for r in (plain, piped))
    assert a.index.tolist() == b.index.tolist()
    if mode == "plaintext":
        assert piped["history"] == plain["history"] and piped["test"] == plain["test"]
        # each prediction session draws its own PSI order, so a row shares its batch with other rows in the two runs,
        # and float32 matrix products of a row may then differ in the last bit (seen once in four runs: 3e-8)
        assert np.allclose(a["prediction"], b["prediction"], rtol=0, atol=1e-5)   # fixed-point noise of OS-random masks
        return
    assert np.allclose(np.array(piped["history"], dtype=float), np.array(plain["history"], dtype=float), rtol=1e-6)
    assert piped["test"].keys() == plain["test"].keys()
    assert all(abs(piped["test"][k] - plain["test"][k]) < 1e-6 for k in plain["test"])
    assert np.allclose(a["prediction"], b["prediction"], rtol=0, atol=1e-5)


def test_evaluation_sends_the_next_batch_while_the_last_one_is_decoded(tmp_path, monkeypatch):
    """With the pipeline, the forward call of evaluation batch k+1 starts before batch k's reply is decoded (and only
    after its reply came: the calls stay one at a time); without it, never."""
    import threading
    import time

    from vfl.job.peer import ActivePeer
    events: list[tuple[str, str, int]] = []
    lock = threading.Lock()
    real_request, real_decode = ActivePeer.request_forward, ActivePeer.decode_forward

    def request(self, rows, phase, epoch, step):
        with lock:
            events.append(("call", phase, step))
        reply = real_request(self, rows, phase, epoch, step)
        with lock:
            events.append(("reply", phase, step))
        return reply

    def decode(self, reply, rows, phase):
        time.sleep(0.05)                      # a decryption that takes a while
        with lock:
            events.append(("decoded", phase, -1))
        return real_decode(self, reply, rows, phase)

    monkeypatch.setattr(ActivePeer, "request_forward", request)
    monkeypatch.setattr(ActivePeer, "decode_forward", decode)
    monkeypatch.setattr("vfl.job.active.EVAL_BATCH_ROWS", 32)   # several evaluation batches of this small table
    overlapped = {}
    for pipeline in (False, True):
        events.clear()
        configs = configs_with(tmp_path / f"pipeline-{pipeline}", pipeline)
        run_local_job(job_spec("pipe-train", train__epochs=1, crypto={"mode": "plaintext"},
                               split={"validation": 0.5, "test": 0.1, "seed": 2}, privacy={"defense": "none"}), configs)
        evaluation = [e for e in events if e[1] in ("eval", "") or e[0] == "decoded"]
        # a call of step k+1 that comes before the decoding of step k's reply
        early = sum(1 for i, e in enumerate(evaluation[:-1]) if e[0] == "reply" and evaluation[i + 1][0] == "call")
        overlapped[pipeline] = early
        calls = [e for e in events if e[0] in ("call", "reply")]
        assert all(a[0] != b[0] for a, b in zip(calls, calls[1:])), "calls overlapped"
    assert overlapped[False] == 0 and overlapped[True] >= 2, overlapped
