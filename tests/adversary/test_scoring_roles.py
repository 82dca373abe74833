"""What crosses the wire when a served model scores, and what the passive party learns of the scores.

One real run (module fixture): two `vfl serve` processes with mutual TLS, started through the test-only key spy
(tests/node/keyspy_launcher.py: it records every Paillier private key generated and the secret exponents of every
homomorphic step) with the wire recorder on, train a small model, export both parts with `vfl export`, register
them (serving.models) and restart; then the active party's own client scores IDs (single IDs and batches, some
that the passive party lacks) through the Score RPC.

* The wire checker (`scoring_leaks`) reads every scoring message the nodes recorded. Allowed in plaintext: IDs, the
  session, the layout, the per-ID status, public keys and the DJN base. Everything else must be ciphertexts under
  the active party's serving key; every ciphertext the passive party returns must be re-randomized (it differs from
  the bare product of the active party's [U] raised to the passive party's activations, whose randomness would
  reveal them) with randomness never used before; and the passive party's activations h of the scored rows (from the
  key spy: the exponents it applied) must not appear in any message in any common encoding. What the active party
  decrypts is z_P = h_P W_P (allowed). Planted controls show the checker catches an unmasked product and h on the
  wire.
* The passive adversary holds every file of its node (its export with its share V, its table, its log and audit
  log) and every scoring message it received or sent; it tries to find the scores or z_P there, and to compute z_P
  from its share. It must fail; given the active party's share U as well (a planted control), the same attack
  computes z_P exactly.
"""
from __future__ import annotations

import json
from collections import defaultdict
from pathlib import Path

import numpy as np
import pytest
import yaml

from tests.node.conftest import SMALL_JOB, breast_parties
from tests.node.keyspy_launcher import digest
from tests.node.test_wire import LAUNCHER as KEYSPY
from tests.node.test_wire import bare_products, exponent_records, private_engines
from tests.procs import NodesThrough
from vfl.protocol.layout import Layout
from vfl.transport.chunking import parse, read_payloads
from vfl.transport.proto import node_pb2 as pb
from vfl.transport.recording import read_records

MODEL_JOB = "scored-model"
PARTY = "/vfl.node.Party/"
SCORING_TYPES = {"OpenScoring": (pb.OpenScoring, pb.OpenScoringReply), "ScoreRows": (pb.ScoreRows, pb.ScoreRowsReply)}
PLAINTEXT_OK = {"model_id", "layout", "active_public_key", "active_djn_base", "session", "max_ids", "ids", "status"}
CIPHERTEXTS = {"u_ciphertexts", "z_ciphertexts"}


def _cli(*args: str):
    import os
    import subprocess
    import sys
    repo = Path(__file__).resolve().parents[2]
    return subprocess.run([sys.executable, "-m", "vfl.cli.main", *args], capture_output=True, text=True, timeout=180,
                          env={**os.environ, "PYTHONPATH": str(repo)})


@pytest.fixture(scope="module")
def scoring_run(tmp_path_factory):
    import vfl.api
    from vfl.api import Client, Federation
    workdir = tmp_path_factory.mktemp("scoring-adversary")
    record_dir, spy_dir = workdir / "wire", workdir / "keyspy"
    parties = breast_parties(id_prefix="patient-record-")
    job = json.loads(json.dumps(SMALL_JOB))
    job["train"]["epochs"] = 1
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("VFL_WIRE_RECORD_DIR", str(record_dir))
        mp.setenv("VFL_KEYSPY_DIR", str(spy_dir))
        mp.setenv("VFL_KEYSPY_MUTATION", "")
        mp.setattr(vfl.api, "subprocess", NodesThrough(KEYSPY))
        with Federation(parties, workdir=workdir / "fed", secret_seed=7) as fed:
            fed.fit(task="binary", job_id=MODEL_JOB, progress=False, **job)
            for party in ("guest", "host"):
                out = workdir / "fed" / party / "models" / "credit"
                run = _cli("export", MODEL_JOB, "--config", str(fed.configs[party]), "--out", str(out))
                assert run.returncode == 0, run.stderr
                config = yaml.safe_load(fed.configs[party].read_text())
                config["serving"] = {"models": {"credit": {"path": str(out), "table": "table"}}}
                fed.configs[party].write_text(yaml.safe_dump(config, sort_keys=False))
                fed.restart(party)
            host_ids = set(str(i) for i in parties[1].data["id"])
            ids = [str(i) for i in parties[0].data["id"]]
            held = [i for i in ids if i in host_ids]
            lacking = next(i for i in ids if i not in host_ids)
            # 12 single IDs and two batches: 14 calls to the passive party, each with rows it holds
            requests = [[i] for i in held[:12]] + [held[12:44], held[44:50] + [lacking, "patient-record-nobody"]]
            client = Client.from_node_config(fed.configs["guest"])
            try:
                replies = [client.score("credit", r) for r in requests]
            finally:
                client.close()
    return {"workdir": workdir / "fed", "record_dir": record_dir, "spy_dir": spy_dir, "replies": replies,
            "host_ids": host_ids}


def scoring_calls(record_dir: Path) -> list[tuple[str, object, object]]:
    """(method, request, reply) of every OpenScoring and ScoreRows the passive node served, in order (reply None for
    a refused call).

    A restarted node appends to the same file and numbers its calls from 1 again: a request for a call number that
    already has a response starts the next process's records."""
    chunks: dict[tuple, dict[str, list]] = defaultdict(lambda: {"request": [], "response": []})
    for wire in sorted(record_dir.glob("*.wire")):
        process, answered = 0, set()
        for method, direction, _, call, data in read_records(wire):
            if direction == "request" and call in answered:
                process, answered = process + 1, set()
            if direction == "response":
                answered.add(call)
            name = method[len(PARTY):] if method.startswith(PARTY) else ""
            if name in SCORING_TYPES:
                chunks[(wire.name, process, call, name)][direction].append(parse(pb.Chunk, data))
    out = []
    for (_, _, _, name), parts in sorted(chunks.items()):
        messages = [parse(SCORING_TYPES[name][i], next(read_payloads(iter(parts[d])))) if parts[d] else None
                    for i, d in enumerate(("request", "response"))]
        out.append((name, *messages))
    return out


def all_recorded_bytes(record_dir: Path) -> list[tuple[str, bytes]]:
    return [(f"{method} {direction}", data) for wire in sorted(record_dir.glob("*.wire"))
            for method, direction, _, _, data in read_records(wire)
            if "Scoring" in method or method.endswith(("OpenScoring", "ScoreRows"))]


def activation_patterns(h_int: np.ndarray, layout: Layout) -> set[bytes]:
    """h of one scored row as fixed-point integers and as floats, in the encodings a leak would use."""
    out = set()
    h = h_int.astype(np.float64) / 2.0 ** layout.f_h
    for row_int, row in zip(np.atleast_2d(h_int), np.atleast_2d(h)):
        for dtype in ("<i8", ">i8", "<i4"):
            out.add(row_int.astype(dtype).tobytes())
        for dtype in ("<f4", "<f8", ">f4", ">f8"):
            if np.abs(row).max() > 0:
                out.add(row.astype(dtype).tobytes())
    return {p for p in out if len(p) >= 16 and any(p)}


def scoring_leaks(calls, records: dict, engines: dict, blobs: list[tuple[str, bytes]]) -> list[str]:
    """Everything that crossed during scoring that should not have (see the module docstring)."""
    problems, seen, fresh_seen = [], set(), set()
    opened = [req for name, req, reply in calls if name == "OpenScoring" and reply is not None]
    if not opened:
        return ["no OpenScoring was recorded"]
    n = int.from_bytes(opened[0].active_public_key, "big")
    layout = Layout.from_json(opened[0].layout)
    width = ((n * n).bit_length() + 7) // 8
    scored_rows = 0
    for k, (name, request, reply) in enumerate(calls):
        for message in (request, reply):
            if message is None:
                continue
            for field, value in message.ListFields():
                if field.name not in PLAINTEXT_OK | CIPHERTEXTS:
                    problems.append(f"{name} #{k}: unexpected field {field.name}")
                if field.name in CIPHERTEXTS:
                    cts = [int.from_bytes(value[i:i + width], "big") for i in range(0, len(value), width)]
                    if len(value) % width or any(not 0 < c < n * n or c % n == 1 for c in cts):
                        problems.append(f"{name} #{k}: {field.name} is not a list of ciphertexts under the serving key")
                    if seen & set(cts):
                        problems.append(f"{name} #{k}: {field.name} repeats a ciphertext sent before")
                    seen.update(cts)
        if name == "ScoreRows" and reply is not None and reply.z_ciphertexts:
            ids = json.loads(request.ids)
            if not all(isinstance(i, str) for i in ids) or len(reply.status) != len(ids):
                problems.append(f"ScoreRows #{k}: the request is not a list of IDs with a status each")
            cts = [int.from_bytes(reply.z_ciphertexts[i:i + width], "big")
                   for i in range(0, len(reply.z_ciphertexts), width)]
            record = records.get(("forward", digest(cts[0])))
            if record is None:
                problems.append(f"ScoreRows #{k}: no exponent record of the passive party's forward")
                continue
            import gmpy2
            bare = bare_products("forward", record, layout, n)
            fresh = [int(c * gmpy2.invert(b, n) % n) for c, b in zip(cts, bare)]
            if any(f == 1 for f in fresh):
                problems.append(f"ScoreRows #{k}: z returned without re-randomization (its randomness is [U]'s "
                                "raised to the passive party's activations)")
            elif len(set(fresh)) < len(fresh) or fresh_seen & set(fresh):
                problems.append(f"ScoreRows #{k}: z re-randomized with randomness used before")
            fresh_seen.update(fresh)
            for pattern in activation_patterns(record["exponents"], layout):
                for where, blob in blobs:
                    if pattern in blob:
                        problems.append(f"{where}: holds the passive party's activations of ScoreRows #{k}")
                        break
            if n in engines:   # the active party decrypts z = h W, which it is allowed to learn
                from vfl.he.errors import CryptoError
                from vfl.protocol import interactive as proto
                try:
                    scored_rows += len(proto.active_decode_forward(engines[n], cts, len(record["exponents"]), layout))
                except CryptoError as exc:
                    problems.append(f"ScoreRows #{k}: z does not decrypt to h W ({type(exc).__name__})")
    if not scored_rows:
        problems.append("the checker decrypted no scored row")
    return problems


def _inputs(run):
    calls = scoring_calls(run["record_dir"])
    return calls, exponent_records(run["spy_dir"]), private_engines(run["spy_dir"]), all_recorded_bytes(run["record_dir"])


def test_scoring_sends_only_ids_and_ciphertexts_and_no_activation(scoring_run):
    calls, records, engines, blobs = _inputs(scoring_run)
    opened = [name for name, _, reply in calls if name == "OpenScoring" and reply is not None]
    assert len(opened) == 1        # one session, [U] sent once (a refused attempt before the passive node registered
                                   # the model may precede it)
    assert sum(name == "ScoreRows" for name, _, _ in calls) == 14
    assert scoring_leaks(calls, records, engines, blobs) == []
    results = [r for reply in scoring_run["replies"] for r in reply["results"]]
    assert {r["status"] for r in results if r["id"] in scoring_run["host_ids"]} == {"ok"}
    assert {r["status"] for r in results if r["id"] not in scoring_run["host_ids"]} == {"unknown_id"}


def test_the_wire_checker_catches_an_unmasked_product_and_activations_on_the_wire(scoring_run):
    """Planted controls: the same calls with one z replaced by the bare product (a passive party that skipped the
    re-randomization), and with one row's activations appended to a recorded message."""
    calls, records, engines, blobs = _inputs(scoring_run)
    k, (name, request, reply) = next((k, c) for k, c in enumerate(calls) if c[0] == "ScoreRows" and c[2].z_ciphertexts)
    opened = next(req for name, req, rep in calls if name == "OpenScoring" and rep is not None)
    n = int.from_bytes(opened.active_public_key, "big")
    layout = Layout.from_json(opened.layout)
    width = ((n * n).bit_length() + 7) // 8
    record = records[("forward", digest(int.from_bytes(reply.z_ciphertexts[:width], "big")))]
    bare = bare_products("forward", record, layout, n)
    unmasked = pb.ScoreRowsReply(z_ciphertexts=b"".join(c.to_bytes(width, "big") for c in bare), status=reply.status)
    spoiled = list(calls)
    spoiled[k] = (name, request, unmasked)
    records = {**records, ("forward", digest(bare[0])): record}
    assert any("without re-randomization" in p for p in scoring_leaks(spoiled, records, engines, blobs))
    h = next(iter(activation_patterns(record["exponents"], layout)))
    leaked = blobs + [("ScoreRows reply", reply.SerializeToString() + h)]
    assert any("activations" in p for p in scoring_leaks(calls, records, engines, leaked))


# ------------------------------------------------------------------------------------------ the passive party

def _passive_holdings(run) -> tuple[bytes, dict]:
    """Every byte the passive party holds after scoring: its node's files and every scoring message it saw."""
    from vfl.data import sealed   # its job files as it reads them: sealed ones opened with its own at-rest key
    home = run["workdir"] / "host"
    blobs = [sealed.read_bytes(p) for p in home.rglob("*") if p.is_file()]
    log = run["workdir"] / "host.log"
    if log.exists():
        blobs.append(log.read_bytes())
    calls = scoring_calls(run["record_dir"])
    blobs += [m.SerializeToString() for _, req, rep in calls for m in (req, rep) if m is not None]
    from vfl.models.format import load_part, share_from_json
    _, meta = load_part(home / "models" / "credit")
    return b"\n".join(blobs), {"share": share_from_json(meta["shares"]["guest"]), "calls": calls}


def _score_patterns(values: list[float]) -> set[bytes]:
    out = set()
    for v in values:
        out |= {np.float64(v).tobytes(), np.float32(v).tobytes(), repr(float(v)).encode()}
    return {p for p in out if len(p) >= 4}


def _z_from_shares(run, shares: list[np.ndarray]) -> list[np.ndarray]:
    """What the passive party computes of z_P for each ScoreRows from its activations and the given shares."""
    from vfl.protocol import interactive as proto
    calls = scoring_calls(run["record_dir"])
    records = exponent_records(run["spy_dir"])
    opened = next(req for name, req, reply in calls if name == "OpenScoring" and reply is not None)
    layout = Layout.from_json(opened.layout)
    n = int.from_bytes(opened.active_public_key, "big")
    width = ((n * n).bit_length() + 7) // 8
    out = []
    for name, _, reply in calls:
        if name == "ScoreRows" and reply.z_ciphertexts:
            h_int = records[("forward", digest(int.from_bytes(reply.z_ciphertexts[:width], "big")))]["exponents"]
            w = sum(proto.product_weights(s, layout) for s in shares)
            out.append(np.array(proto.int_matmul(h_int, w), dtype=np.float64) / 2.0 ** (layout.f_h + layout.f_w))
    return out


def _true_z(run) -> list[np.ndarray]:
    from vfl.protocol import interactive as proto
    calls = scoring_calls(run["record_dir"])
    engines = private_engines(run["spy_dir"])
    opened = next(req for name, req, reply in calls if name == "OpenScoring" and reply is not None)
    layout = Layout.from_json(opened.layout)
    n = int.from_bytes(opened.active_public_key, "big")
    width = ((n * n).bit_length() + 7) // 8
    out = []
    for name, request, reply in calls:
        if name == "ScoreRows" and reply.z_ciphertexts:
            cts = [int.from_bytes(reply.z_ciphertexts[i:i + width], "big")
                   for i in range(0, len(reply.z_ciphertexts), width)]
            rows = int((np.frombuffer(reply.status, dtype=np.uint8) == 0).sum())
            out.append(proto.active_decode_forward(engines[n], cts, rows, layout))
    return out


def test_the_passive_party_learns_neither_the_scores_nor_z(scoring_run):
    holdings, held = _passive_holdings(scoring_run)
    scores = [s for reply in scoring_run["replies"] for r in reply["results"] for s in r["scores"]]
    assert scores
    found = [p for p in _score_patterns(scores) if p in holdings]
    assert not found, f"the passive party holds {len(found)} encodings of the scores"
    true_z = _true_z(scoring_run)
    guesses = _z_from_shares(scoring_run, [held["share"]])       # its own share: all it has of W
    assert len(guesses) == len(true_z) == 14
    assert not any(np.allclose(g, t, atol=1e-3) for g, t in zip(guesses, true_z)), \
        "the passive party computed z_P from what it holds"
    for t in true_z:
        for row in t:
            assert not any(p in holdings for p in (row.astype("<f4").tobytes(), row.astype("<f8").tobytes()))


def test_planted_control_the_same_attack_with_the_active_share_computes_z(scoring_run):
    """Given A's share U (which the passive party never holds), the attack above gets z_P exactly: it can tell."""
    from vfl.models.format import load_part, share_from_json
    _, held = _passive_holdings(scoring_run)
    _, guest = load_part(scoring_run["workdir"] / "guest" / "models" / "credit")
    u = share_from_json(guest["shares"]["host"])
    guesses = _z_from_shares(scoring_run, [held["share"], u])
    assert all(np.allclose(g, t, atol=1e-4) for g, t in zip(guesses, _true_z(scoring_run)))
    holdings = b"".join([b"x", np.float64(scoring_run["replies"][0]["results"][0]["scores"][0]).tobytes()])
    assert any(p in holdings for p in _score_patterns([scoring_run["replies"][0]["results"][0]["scores"][0]]))
