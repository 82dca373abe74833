"""What crosses the wire in a real multi-process training run, recorded by each node's server.

Every inter-party call lands on some node's gRPC server, where an interceptor (VFL_WIRE_RECORD_DIR)
writes each message. Two checkers read the recording:

* `leaks` knows the allowed plaintext fields of every message type; any other non-empty field must be a
  list of full-size Paillier ciphertexts under the right party's key, and no message may hold the label
  vector of any batch, in the order the batch's rows were sent, or raw IDs. Run on a plaintext-mode
  (insecure split learning) job it must find the leaks.
* `decryption_leaks` checks what each receiver *learns*. The nodes are started through
  tests/node/keyspy_launcher.py, which records every private key the job generates (there is no such hook
  in production code) and the secret exponents of each homomorphic step. With the keys, every ciphertext a
  party receives under its own key is decrypted: the masked weight gradient must be uniform mask-sized
  noise, z = hW and delta W^T (sent to their owners) are the allowed exceptions. Every ciphertext must carry
  encryption randomness (c mod n != 1, never repeated), and every ciphertext returned to the key owner must
  be re-randomized: it must differ from the bare product of the owner's ciphertexts, whose randomness would
  otherwise reveal the exponents (h or delta) to the owner, and its fresh randomness must not repeat. Runs
  with the launcher's mutations (mask Q zeroed, re-randomization removed, one obfuscator reused) are caught.
"""
from __future__ import annotations

import copy
import json
from collections import defaultdict
from pathlib import Path

import numpy as np
import pytest

from tests.procs import NodesThrough
from tests.node.conftest import SMALL_JOB, breast_parties
from tests.node.keyspy_launcher import digest
from vfl.transport.chunking import parse, read_payloads
from vfl.transport.proto import node_pb2 as pb
from vfl.transport.recording import read_records

LAUNCHER = Path(__file__).with_name("keyspy_launcher.py")
PARTY = "/vfl.node.Party/"
PAYLOAD_TYPES = {  # method -> (request type, reply type)
    "OpenJob": (pb.OpenJob, pb.OpenJobReply), "Setup": (pb.SetupRequest, pb.SetupReply),
    "Forward": (pb.ForwardRequest, pb.ForwardReply),
    "WeightGradient": (pb.WeightGradientRequest, pb.WeightGradientReply),
    "InputGradient": (pb.InputGradientRequest, pb.InputGradientReply),
    "EndEpoch": (pb.EndEpochRequest, pb.EndEpochReply), "CloseJob": (pb.CloseJobRequest, pb.CloseJobReply),
    "RenewLease": (pb.RenewLease, pb.RenewLeaseReply),
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
    "id_shape",               # checked separately: coarse shape statistics of the IDs, no ID
    "reason",                 # why a job ends: the stage and a category (vfl/job/active.py `_reason_for_peers`)
    "lease_seconds",          # how long a passive party keeps a silent job open (its node config)
}
CIPHERTEXTS = {"u_ciphertexts": "active", "z_ciphertexts": "active", "delta_ciphertexts": "active",
               "masked_gradient": "active", "v_ciphertexts": "passive", "grad_ciphertexts": "passive"}


def payloads(record_dir: Path):
    """(method, direction, message) for every Party-service payload, reassembled per call."""
    calls, other = recorded_calls(record_dir)
    out = [(name, direction, msg) for name, messages in calls for direction, msg in messages.items()]
    return out, other


def recorded_calls(record_dir: Path):
    """[(method, {"request": msg, "response": msg})] for every Party-service call, in recording order."""
    chunks = defaultdict(list)
    other = []
    for wire in sorted(record_dir.glob("*.wire")):
        for method, direction, type_name, call, data in read_records(wire):
            if method.startswith(PARTY):
                chunks[(wire.name, call, method)].append((direction, parse(pb.Chunk, data)))
            else:
                other.append((method, direction, data))
    calls = []
    for (_, _, method), parts in chunks.items():
        name = method[len(PARTY):]
        messages = {}
        for i, direction in enumerate(("request", "response")):
            pieces = [chunk for d, chunk in parts if d == direction]
            for payload in read_payloads(iter(pieces)):
                messages[direction] = parse(PAYLOAD_TYPES[name][i], payload)
        calls.append((name, messages))
    return calls, other


def label_patterns(labels: np.ndarray) -> set[bytes]:
    """Byte encodings of one label vector (as given, flipped, +-1; common dtypes, both byte orders, bits)."""
    y = np.asarray(labels)
    out = set()
    for v in (y, 1 - y, 2 * y - 1):
        for dtype in ("<i4", "<i8", "<f4", "<f8", "<f2", ">i4", ">i8", ">f4", ">f8", "i1", "u1"):
            out.add(v.astype(dtype).tobytes())
    if len(y) >= 64:  # 8+ bytes of packed bits
        for order in ("big", "little"):
            out.add(np.packbits(y.astype(bool), bitorder=order).tobytes())
            out.add(np.packbits(~y.astype(bool), bitorder=order).tobytes())
    return {p for p in out if len(p) >= 8 and (len(p) >= 16 or len(y) >= 64)}


def label_leaks(blobs: list[tuple[str, bytes]], batches: list[np.ndarray]) -> list[str]:
    """Where any batch's label vector, in the order its rows were sent, appears in any recorded bytes."""
    problems = []
    for k, labels in enumerate(batches):
        for pattern in label_patterns(labels):
            for where, blob in blobs:
                if pattern in blob:
                    problems.append(f"{where}: contains the labels of batch {k} ({len(labels)} rows) in batch order")
                    break
    return problems


def sent_batches(calls, aligned_labels: np.ndarray) -> list[np.ndarray]:
    """The label vector of every batch the active party sent a Forward for, in the order of its `rows`."""
    batches = []
    for name, messages in calls:
        if name == "Forward" and "request" in messages:
            rows = np.frombuffer(messages["request"].rows, dtype="<i4")
            batches.append(aligned_labels[rows])
    return batches


def id_shape_is_coarse(value: str) -> bool:
    """The passive party's ID shape parses as the fixed, coarse fields and nothing else (vfl/data/id_shape.py)."""
    from vfl.data.id_shape import parse_shape
    from vfl.errors import ProtocolError
    try:
        return parse_shape(value, "passive") is not None
    except ProtocolError:
        return False


def leaks(record_dir: Path, ids: list[str], labels: np.ndarray, aligned_labels: np.ndarray) -> list[str]:
    messages, other = payloads(record_dir)
    assert messages, "nothing was recorded"
    keys = {}
    for name, _, msg in messages:
        if isinstance(msg, pb.SetupRequest) and msg.active_public_key:
            keys["active"] = int.from_bytes(msg.active_public_key, "big")
        if isinstance(msg, pb.SetupReply) and msg.passive_public_key:
            keys["passive"] = int.from_bytes(msg.passive_public_key, "big")
    problems = []
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
            elif field.name == "id_shape" and not id_shape_is_coarse(value):
                problems.append(f"{where}: more than the coarse ID shape statistics: {value[:200]!r}")
            elif field.name == "report_json" and json.loads(value).get("attack_scores"):
                problems.append(f"{where}: attack scores (harness was supposed to be off)")
    blobs = [(f"{name} {direction}", msg.SerializeToString()) for name, direction, msg in messages]
    blobs += [(f"{method} {direction}", data) for method, direction, data in other]
    # the labels in file order (the whole column), and every batch's labels in the order its rows were sent
    problems += label_leaks(blobs, [np.asarray(labels)[:512]] + sent_batches(recorded_calls(record_dir)[0],
                                                                             aligned_labels))
    raw = b"".join(blob for _, blob in blobs)
    found = [i for i in ids[:200] if i.encode() in raw]
    if found:
        problems.append(f"raw IDs on the wire, e.g. {found[:3]}")
    return problems


# ------------------------------------------------------------------------------ what receivers decrypt

def private_engines(spy_dir: Path) -> dict:
    """{n: engine with the private key} for every key pair the keyspy launcher saw generated."""
    from vfl import he
    engines = {}
    for path in sorted((spy_dir / "keys").glob("*key.json")):
        private = he.private_key_from_json(path.read_text())
        engines[int(private.public_key.n)] = he.PaillierEngine(private.public_key, private)
    return engines


def exponent_records(spy_dir: Path) -> dict:
    """{(kind, digest of the first output ciphertext): record} written by the keyspy launcher."""
    import pickle
    records = {}
    for path in (spy_dir / "exponents").glob("*.pkl"):
        kind, digest = path.stem.split("-", 2)[2].rsplit("-", 1)
        records[(kind, digest)] = pickle.loads(path.read_bytes())
    return records


def bare_products(kind: str, record: dict, layout, n: int) -> list[int]:
    """The step's output *without* fresh randomness, mod n: prod_j base_j^E[i, j] (plaintext terms are 1 mod n)."""
    import gmpy2
    from vfl.he.packing import group_exponents
    bases = [gmpy2.mpz(b) % n for b in record["bases"]]
    x = record["exponents"]
    if kind == "weight_gradient":  # output (j, c) = prod_i [D row i, chunk c]^h[i, j]
        per_row = len(bases) // x.shape[0]
        rows = [[(c + i * per_row, x[i, j]) for i in range(x.shape[0])] for j in range(x.shape[1])
                for c in range(per_row)]
    else:
        slot = layout.forward_layout() if kind == "forward" else layout.backward_layout()
        E = group_exponents(x, slot)
        rows = [list(enumerate(row)) for row in E]
    out = []
    for terms in rows:
        acc = gmpy2.mpz(1)
        for j, e in terms:
            if e:
                acc = acc * gmpy2.powmod(bases[j], int(e), n) % n
        out.append(int(acc))
    return out


def decryption_leaks(record_dir: Path, spy_dir: Path) -> list[str]:
    """Decrypt what each party received under its own key; check randomness of every ciphertext."""
    import gmpy2

    from vfl.protocol import interactive as proto
    from vfl.protocol.layout import Layout
    calls, _ = recorded_calls(record_dir)
    setups = [m for name, m in calls if name == "Setup"]
    assert setups, "no Setup was recorded"
    n_a = int.from_bytes(setups[0]["request"].active_public_key, "big")
    n_p = int.from_bytes(setups[0]["response"].passive_public_key, "big")
    layout = Layout.from_json(setups[0]["request"].layout)
    engines = private_engines(spy_dir)
    missing = [who for who, n in (("active", n_a), ("passive", n_p)) if n not in engines]
    assert not missing, f"the keyspy launcher recorded no private key of the {missing} party: were the nodes " \
                        f"started through it?"
    A, P = engines[n_a], engines[n_p]
    records = exponent_records(spy_dir)
    problems: list[str] = []
    seen: set[int] = set()
    fresh_seen: set[int] = set()
    stats = defaultdict(int)
    train_rows: dict[tuple[int, int], int] = {}

    def ciphertexts(data: bytes, n: int, where: str) -> list[int]:
        width = ((n * n).bit_length() + 7) // 8
        cts = [int.from_bytes(data[i:i + width], "big") for i in range(0, len(data), width)]
        for c in cts:
            if c % n == 1:  # c = (1 + n)^m = 1 + m n: no randomness, anyone reads m = (c - 1) / n
                problems.append(f"{where}: a ciphertext without encryption randomness (c = 1 mod n)")
                break
        if seen & set(cts):
            problems.append(f"{where}: a ciphertext sent before is sent again")
        seen.update(cts)
        stats["ciphertexts"] += len(cts)
        return cts

    def rerandomized(kind: str, cts: list[int], n: int, where: str) -> None:
        record = records.get((kind, digest(cts[0])))
        if record is None:
            problems.append(f"{where}: no exponent record from the keyspy launcher")
            return
        bare = bare_products(kind, record, layout, n)
        if len(bare) != len(cts):
            problems.append(f"{where}: {len(cts)} ciphertexts, the step computed {len(bare)}")
            return
        # c = bare * (1 + n k) * rho, so c / bare mod n is the fresh randomness rho mod n the sender added
        fresh = [int(c * gmpy2.invert(b, n) % n) for c, b in zip(cts, bare)]
        if any(f == 1 for f in fresh):
            problems.append(f"{where}: returned to the key owner without re-randomization (its randomness is the "
                            f"product of the owner's ciphertexts raised to the secret exponents)")
        elif len(set(fresh)) < len(fresh) or fresh_seen & set(fresh):
            problems.append(f"{where}: re-randomized with randomness used before")
        fresh_seen.update(fresh)
        stats[f"re-randomized {kind}"] += 1

    for name, messages in calls:
        req, rep = messages.get("request"), messages.get("response")
        if req is None or rep is None:
            continue
        if name == "Forward":
            rows = len(req.rows) // 4
            where = f"Forward ({req.phase} {req.epoch}/{req.step})"
            ciphertexts(req.u_ciphertexts, n_a, f"{where} request u_ciphertexts")  # A's own key: P cannot decrypt
            if req.phase == "train":
                train_rows[(req.epoch, req.step)] = rows
                ciphertexts(rep.v_ciphertexts, n_p, f"{where} reply v_ciphertexts")  # P's own key
            z_cts = ciphertexts(rep.z_ciphertexts, n_a, f"{where} reply z_ciphertexts")
            rerandomized("forward", z_cts, n_a, f"{where} reply z_ciphertexts")
            # A decrypts z = h W: allowed (the interactive layer's output). It must decode as such.
            z = proto.active_decode_forward(A, z_cts, rows, layout)
            if not (np.isfinite(z).all() and np.abs(z).max() < 2.0 ** layout.output_range_bits):
                problems.append(f"{where}: z does not decode as h W")
            stats["z decrypted"] += z.size
        elif name == "WeightGradient":
            where = f"WeightGradient ({req.epoch}/{req.step})"
            ciphertexts(req.delta_ciphertexts, n_a, f"{where} request delta_ciphertexts")  # A's own key
            masked = ciphertexts(rep.masked_gradient, n_a, f"{where} reply masked_gradient")
            rerandomized("weight_gradient", masked, n_a, f"{where} reply masked_gradient")
            # A decrypts h^T D + Q: every slot must be mask-sized noise, far above any unmasked gradient
            g = proto.active_decode_weight_gradient(A, masked, layout)
            bits = np.array([abs(int(v)).bit_length() for v in g.reshape(-1)])
            mask_bits = layout.gradient_bound_bits() + layout.stat_bits
            if bits.min() <= layout.gradient_bound_bits() or np.median(bits) < mask_bits - 2:
                problems.append(f"{where}: the active party decrypts values of {bits.min()}..{bits.max()} bits "
                                f"(median {np.median(bits)}): not a uniform {mask_bits}-bit mask over "
                                f"|h^T D| < 2^{layout.gradient_bound_bits()}")
            stats["masked gradient slots decrypted"] += bits.size
        elif name == "InputGradient":
            where = f"InputGradient ({req.epoch}/{req.step})"
            grad = ciphertexts(req.grad_ciphertexts, n_p, f"{where} request grad_ciphertexts")
            rerandomized("input_gradient", grad, n_p, f"{where} request grad_ciphertexts")
            # P decrypts its own input gradient delta W^T: the allowed exception
            g = proto.passive_decode_input_gradient(P, grad, train_rows[(req.epoch, req.step)], layout)
            if not np.isfinite(g).all():
                problems.append(f"{where}: delta W^T does not decode")
            stats["input gradient decrypted"] += g.size
    for what in ("z decrypted", "masked gradient slots decrypted", "input gradient decrypted",
                 "re-randomized forward", "re-randomized weight_gradient", "re-randomized input_gradient"):
        if not stats[what]:
            problems.append(f"the checker saw nothing of kind {what!r}")
    return problems


def run_recorded(tmp_path: Path, monkeypatch, mode: str, mutation: str = ""):
    import vfl.api
    from vfl.api import Federation
    from vfl.job.party_data import load_alignment
    record_dir = tmp_path / f"wire-{mode}"
    spy_dir = tmp_path / f"keyspy-{mode}"
    monkeypatch.setenv("VFL_WIRE_RECORD_DIR", str(record_dir))
    monkeypatch.setenv("VFL_KEYSPY_DIR", str(spy_dir))
    monkeypatch.setenv("VFL_KEYSPY_MUTATION", mutation)
    monkeypatch.setattr(vfl.api, "subprocess", NodesThrough(LAUNCHER))
    job = copy.deepcopy(SMALL_JOB)
    job["train"]["epochs"] = 1
    job["crypto"]["mode"] = mode
    job["privacy"] = {"defense": "none"}
    parties = breast_parties(id_prefix="patient-record-")
    workdir = tmp_path / f"fed-{mode}"
    # node-local secret seeds make each run repeatable: with fresh OS-random initial weights, a bottom unit can
    # be zero for a whole batch, and then the no_rerandomize mutation is refused by the engine's own check
    # (c = 1 mod n) before the checker sees it
    with Federation(parties, workdir=workdir, secret_seed=3) as fed:
        fed.fit(task="binary", job_id=f"wire-{mode}", progress=False, **job)
    guest = parties[0].data
    aligned_ids, _ = load_alignment(workdir / "guest" / "jobs" / f"wire-{mode}")
    aligned_labels = guest.set_index("id").loc[list(aligned_ids), "y"].to_numpy()
    return {"record_dir": record_dir, "spy_dir": spy_dir, "ids": [str(i) for i in guest["id"]],
            "labels": guest["y"].to_numpy(), "aligned_labels": aligned_labels}


def wire_leaks(run) -> list[str]:
    return leaks(run["record_dir"], run["ids"], run["labels"], run["aligned_labels"])


def test_encrypted_run_sends_only_ciphertexts_and_masked_values(tmp_path, monkeypatch):
    run = run_recorded(tmp_path, monkeypatch, "paillier")
    assert wire_leaks(run) == []
    kinds = {name for name, _, _ in payloads(run["record_dir"])[0]}
    assert {"Setup", "Forward", "WeightGradient", "InputGradient"} <= kinds
    assert decryption_leaks(run["record_dir"], run["spy_dir"]) == []


@pytest.mark.parametrize("mutation, symptom", [("zero_mask", "not a uniform"),
                                               ("no_rerandomize", "without re-randomization"),
                                               ("reuse_randomness", "randomness used before")])
def test_decryption_checker_catches_protocol_mutations(tmp_path, monkeypatch, mutation, symptom):
    """The launcher zeroes the mask Q, removes re-randomization or reuses one obfuscator: the field structure
    still looks fine (the first checker passes), what the receivers decrypt or can derive does not."""
    run = run_recorded(tmp_path, monkeypatch, "paillier", mutation)
    assert wire_leaks(run) == []
    problems = decryption_leaks(run["record_dir"], run["spy_dir"])
    assert problems and any(symptom in p for p in problems), problems


def test_checker_catches_plaintext_split_learning(tmp_path, monkeypatch):
    problems = wire_leaks(run_recorded(tmp_path, monkeypatch, "plaintext"))
    assert any("h_plain" in p for p in problems) and any("grad_plain" in p for p in problems)


def test_label_search_is_in_batch_order():
    """A batch's labels hidden in some bytes are found in the order the rows were sent, not in file order."""
    rng = np.random.default_rng(0)
    file_order = rng.integers(0, 2, 400)
    rows = rng.permutation(400)[:64]
    batch = file_order[rows]
    for dtype in ("<f4", "u1", "<i8"):
        blob = rng.bytes(1000) + batch.astype(dtype).tobytes() + rng.bytes(1000)
        assert label_leaks([("msg", blob)], [batch]), dtype
        assert not label_leaks([("msg", blob)], [file_order[:64]]), dtype
    assert label_leaks([("msg", b"x" + np.packbits(batch.astype(bool)).tobytes())], [batch])
    assert not label_leaks([("msg", rng.bytes(100_000))], [batch])
