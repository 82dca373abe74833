"""What crosses the wire in a real multi-process training run, recorded by each node's server.

Every inter-party call lands on some node's gRPC server, where an interceptor (VFL_WIRE_RECORD_DIR)
writes each message. The checker below knows the allowed plaintext fields of every message type; any
other non-empty field must be a list of full-size Paillier ciphertexts under the right party's key. The
same checker run on a plaintext-mode (insecure split learning) job must find the leaks, which shows it
can fail.
"""
from __future__ import annotations

import copy
import json
from collections import defaultdict
from pathlib import Path

import numpy as np

from tests.node.conftest import SMALL_JOB, breast_parties
from vfl.transport.chunking import parse, read_payloads
from vfl.transport.proto import node_pb2 as pb
from vfl.transport.recording import read_records

PARTY = "/vfl.node.Party/"
PAYLOAD_TYPES = {  # method -> (request type, reply type)
    "OpenJob": (pb.OpenJob, pb.OpenJobReply), "Setup": (pb.SetupRequest, pb.SetupReply),
    "Forward": (pb.ForwardRequest, pb.ForwardReply),
    "WeightGradient": (pb.WeightGradientRequest, pb.WeightGradientReply),
    "InputGradient": (pb.InputGradientRequest, pb.InputGradientReply),
    "EndEpoch": (pb.EndEpochRequest, pb.EndEpochReply), "CloseJob": (pb.CloseJobRequest, pb.CloseJobReply),
}
# Fields that may carry plaintext, and why it is harmless.
PLAINTEXT_OK = {
    "job_id", "epoch", "step", "phase", "status", "save_model", "checkpoint", "resume_epoch", "rows",
    "feature_dim", "resumable_epoch", "aligned_rows", "interactive_out", "bottom_out", "model_path",
    "spec_yaml",              # the job spec: models and hyper-parameters, no data
    "layout",                 # fixed-point and packing parameters
    "active_public_key", "passive_public_key", "active_djn_base", "passive_djn_base",
    "init_masked",            # checked separately: statistically masked
    "report_json",            # checked separately: message counts, no data
}
CIPHERTEXTS = {"u_ciphertexts": "active", "z_ciphertexts": "active", "delta_ciphertexts": "active",
               "masked_gradient": "active", "v_ciphertexts": "passive", "grad_ciphertexts": "passive"}


def payloads(record_dir: Path):
    """(method, direction, message) for every Party-service payload, reassembled per call."""
    chunks = defaultdict(list)
    other = []
    for wire in sorted(record_dir.glob("*.wire")):
        for method, direction, type_name, call, data in read_records(wire):
            if method.startswith(PARTY):
                chunks[(wire.name, call, method, direction)].append(parse(pb.Chunk, data))
            else:
                other.append((method, direction, data))
    out = []
    for (_, _, method, direction), parts in chunks.items():
        name = method[len(PARTY):]
        message_type = PAYLOAD_TYPES[name][0 if direction == "request" else 1]
        for payload in read_payloads(iter(parts)):
            out.append((name, direction, parse(message_type, payload)))
    return out, other


def leaks(record_dir: Path, ids: list[str], labels: np.ndarray) -> list[str]:
    messages, other = payloads(record_dir)
    assert messages, "nothing was recorded"
    keys = {}
    for name, _, msg in messages:
        if isinstance(msg, pb.SetupRequest) and msg.active_public_key:
            keys["active"] = int.from_bytes(msg.active_public_key, "big")
        if isinstance(msg, pb.SetupReply) and msg.passive_public_key:
            keys["passive"] = int.from_bytes(msg.passive_public_key, "big")
    problems = []
    label_bytes = [labels.astype(t).tobytes()[:64] for t in ("<i4", "<i8", "<f4", "<f8", "u1")]
    for name, direction, msg in messages:
        for field, value in msg.ListFields():
            where = f"{name} {direction} field {field.name}"
            if field.name in CIPHERTEXTS:
                n = keys.get(CIPHERTEXTS[field.name])
                if n is None:
                    problems.append(f"{where}: ciphertexts but no {CIPHERTEXTS[field.name]} key was exchanged")
                    continue
                width = ((n * n).bit_length() + 7) // 8
                if len(value) % width:
                    problems.append(f"{where}: not whole {width}-byte ciphertexts")
                    continue
                values = [int.from_bytes(value[i:i + width], "big") for i in range(0, len(value), width)]
                if not all(n < c < n * n for c in values):  # a plaintext (< n) would be far smaller
                    problems.append(f"{where}: holds values that are not full-size ciphertexts")
            elif field.name not in PLAINTEXT_OK:
                problems.append(f"{where}: plaintext field outside the allowed set ({len(value)} bytes)")
            elif field.name == "init_masked":
                shares = [abs(int(v)).bit_length() for v in json.loads(value)["values"]]
                if np.median(shares) < 70:
                    problems.append(f"{where}: initial share is not statistically masked")
            elif field.name == "report_json" and json.loads(value).get("attack_scores"):
                problems.append(f"{where}: attack scores (harness was supposed to be off)")
            if isinstance(value, bytes):
                for lb in label_bytes:
                    if len(lb) >= 32 and lb in value:
                        problems.append(f"{where}: contains the label vector")
    raw = b"".join(data for _, _, data in other) + b"".join(m.SerializeToString() for _, _, m in messages)
    found = [i for i in ids[:200] if i.encode() in raw]
    if found:
        problems.append(f"raw IDs on the wire, e.g. {found[:3]}")
    return problems


def run_recorded(tmp_path: Path, monkeypatch, mode: str):
    from vfl.api import Federation
    record_dir = tmp_path / f"wire-{mode}"
    monkeypatch.setenv("VFL_WIRE_RECORD_DIR", str(record_dir))
    job = copy.deepcopy(SMALL_JOB)
    job["train"]["epochs"] = 1
    job["crypto"]["mode"] = mode
    job["privacy"] = {"defense": "none"}
    parties = breast_parties(id_prefix="patient-record-")
    with Federation(parties, workdir=tmp_path / f"fed-{mode}") as fed:
        fed.fit(task="binary", job_id=f"wire-{mode}", progress=False, **job)
    guest = parties[0].data
    ids = [str(i) for i in guest["id"]]
    return record_dir, ids, guest["y"].to_numpy()


def test_encrypted_run_sends_only_ciphertexts_and_masked_values(tmp_path, monkeypatch):
    record_dir, ids, labels = run_recorded(tmp_path, monkeypatch, "paillier")
    assert leaks(record_dir, ids, labels) == []
    kinds = {name for name, _, _ in payloads(record_dir)[0]}
    assert {"Setup", "Forward", "WeightGradient", "InputGradient"} <= kinds


def test_checker_catches_plaintext_split_learning(tmp_path, monkeypatch):
    record_dir, ids, labels = run_recorded(tmp_path, monkeypatch, "plaintext")
    problems = leaks(record_dir, ids, labels)
    assert any("h_plain" in p for p in problems) and any("grad_plain" in p for p in problems)
