"""The training runtime in one process: train, evaluate, predict and resume, with the real runtimes.

Each job runs `ActiveJob` against `JobRegistry` / `PassiveJob` through `InProcessLink` (tests/job/local.py): the
messages, the Paillier scheme and the PSI protocol are the production ones; only sockets and TLS are missing.
"""
from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest

from tests.job.conftest import job_spec
from vfl.errors import PeerCallError, VflError
from vfl.job import checkpoint
from tests.job.local import LocalNode, run_local_job
from vfl.job.registry import JobRegistry
from vfl.protocol.messages import ForwardRequest


def test_train_then_predict_in_one_process(configs):
    result = run_local_job(job_spec("train-1"), configs)
    assert result["intersection"] == 569 - 30
    assert result["test"]["auc"] > 0.85, result["test"]
    assert len(result["history"]) == 3 and result["resumes"] == 0
    # every party saved its part, and the privacy report counts only ciphertexts and the masked share
    host_part = configs["host"].jobs_dir / result["model_parts"]["host"]
    assert host_part.exists() and checkpoint.model_part_path(configs["guest"].job_dir("train-1")).exists()
    report = json.loads((configs["guest"].job_dir("train-1") / "privacy_report.json").read_text())
    received = {r["kind"] for r in report["messages"] if r["direction"] == "received" and r["peer"] == "host"}
    assert "ForwardReply.z_ciphertexts" in received and "ForwardReply.h_plain" not in received, received

    predicted = run_local_job(job_spec("predict-1", kind="predict", model_job="train-1"), configs)
    frame = pd.read_csv(predicted["predictions"])
    assert len(frame) == 569 - 30 and frame["prediction"].between(0, 1).all()
    assert predicted["metrics"]["auc"] > 0.85


def test_plaintext_scheme_runs_the_same_job(configs):
    """The insecure plaintext scheme (tests and benchmarks only) is the other implementation of one interface."""
    result = run_local_job(job_spec("plain-1", crypto={"mode": "plaintext"}), configs)
    assert result["test"]["auc"] > 0.85
    report = json.loads((configs["guest"].job_dir("plain-1") / "privacy_report.json").read_text())
    received = {r["kind"] for r in report["messages"] if r["direction"] == "received"}
    assert "ForwardReply.h_plain" in received and "ForwardReply.z_ciphertexts" not in received


class Unavailable(VflError):
    status = "UNAVAILABLE"


def test_a_lost_peer_mid_epoch_resumes_from_the_last_checkpoint(configs):
    """The host drops once in epoch 2 of 3: the job reopens it at its epoch-1 checkpoint with fresh keys, and finishes."""
    dropped = []

    def drop_once(peer, message):
        if isinstance(message, ForwardRequest) and message.epoch == 1 and message.step == 1 and not dropped:
            dropped.append(message)
            raise Unavailable("host went away")
        return message
    result = run_local_job(job_spec("resume-1"), configs, tamper=drop_once)
    assert dropped and result["resumes"] == 1 and len(result["history"]) == 3
    assert result["test"]["auc"] > 0.85
    assert checkpoint.last_checkpoint(configs["host"].job_dir("resume-1")) == 3


def test_a_refused_call_reaches_the_active_party_as_the_grpc_link_reports_it(configs):
    """A peer's error becomes PeerCallError with the status its class names; internal errors carry no text."""
    def break_forward(peer, message):
        if isinstance(message, ForwardRequest):
            raise RuntimeError("secret internal detail")
        return message
    with pytest.raises(PeerCallError) as info:
        run_local_job(job_spec("broken-1"), configs, tamper=break_forward)
    assert info.value.code == "INTERNAL" and "secret internal detail" not in str(info.value)


def test_registry_refuses_out_of_order_calls_and_strangers(configs):
    from vfl.errors import NotFound, OutOfOrder, PermissionDenied
    from vfl.job.spec import interactive_layout
    from vfl.protocol.messages import OpenJob, SetupRequest, encode_rows
    registry = JobRegistry(LocalNode(configs["host"]))
    spec = job_spec("order-1", kind="psi")
    registry.handle(OpenJob(job_id="order-1", spec_yaml=spec.to_yaml()), "guest")
    forward = ForwardRequest(job_id="order-1", rows=encode_rows(np.arange(3)))
    with pytest.raises(OutOfOrder, match="is opened, not ready"):
        registry.handle(forward, "guest")
    with pytest.raises(PermissionDenied, match="belongs to active party 'guest'"):
        registry.handle(forward, "mallory")
    with pytest.raises(NotFound):
        registry.handle(ForwardRequest(job_id="no-such-job"), "guest")
    layout = interactive_layout(spec, spec.party("host"))
    with pytest.raises(OutOfOrder, match="never sets up training"):
        registry.handle(SetupRequest(job_id="order-1", aligned_rows=5, layout=layout.to_json()), "guest")
    # the same open again before PSI (its reply lost) opens the job anew; another spec under its id is refused
    registry.handle(OpenJob(job_id="order-1", spec_yaml=spec.to_yaml()), "guest")
    other = job_spec("order-1", kind="psi", split={"validation": 0.2, "test": 0.2, "seed": 2})
    with pytest.raises(OutOfOrder, match="already open"):
        registry.handle(OpenJob(job_id="order-1", spec_yaml=other.to_yaml()), "guest")


def _flip_a_bit(data: bytes, at: int) -> bytes:
    return data[:at] + bytes([data[at] ^ 0x01]) + data[at + 1:]


@pytest.mark.parametrize("where", ["reply", "request"])
def test_a_tampered_ciphertext_fails_the_step_with_a_clear_error(configs, where):
    """One bit flipped in a ciphertext on the link, either way: the packed checksum catches it at decryption."""
    from dataclasses import replace

    from vfl.errors import CryptoError
    from vfl.protocol.messages import ForwardReply

    def tamper(peer, message):
        if where == "reply" and isinstance(message, ForwardReply) and message.z_ciphertexts:
            return replace(message, z_ciphertexts=_flip_a_bit(message.z_ciphertexts, 300))
        if where == "request" and isinstance(message, ForwardRequest):
            return replace(message, u_ciphertexts=_flip_a_bit(message.u_ciphertexts, 300))
        return message
    with pytest.raises(CryptoError, match="checksum"):
        run_local_job(job_spec(f"tampered-{where}"), configs, tamper=tamper)
