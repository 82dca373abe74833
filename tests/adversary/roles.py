"""What each role holds after a real run, and, apart from it, the ground truth the judge compares against.

A `RoleView` is the adversary's whole input: exactly what one party's node has after a real multi-process
run over mutual TLS. That is its node config (with any node-local secret seed), the job spec as it received
or wrote it, its own Paillier private keys, every message it sent or received (Party service and PSI), its
node log, and every file under its node's home directory: checkpoints, saved parts, reports.

`Truth` is what the judge uses to score an adversary's output: both parties' secrets, read from all parties'
files and from the test-only key spy (tests/node/keyspy_launcher.py). No adversary reads it.
"""
from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import yaml

from tests.node.keyspy_launcher import digest
from tests.node.test_wire import PAYLOAD_TYPES, exponent_records, private_engines
from vfl.data import sealed
from vfl.job.checkpoint import checkpoint_path, load_torch
from vfl.node.at_rest import open_at_rest
from vfl.node.config import load_node_config
from vfl.protocol.layout import SHARE_FRACTION_BITS, Layout
from vfl.transport.chunking import parse, read_payloads
from vfl.transport.proto import node_pb2 as pb
from vfl.transport.recording import read_records

PARTY_PREFIX = "/vfl.node.Party/"


@dataclass
class Call:
    """One Party-service call between the active party and `passive`, in the order calls started."""
    passive: str
    method: str
    request: Any
    reply: Any


@dataclass
class RecordedRun:
    """A finished job: every node's home, the wire recording and the key spy's records."""
    workdir: Path
    record_dir: Path
    spy_dir: Path
    job_id: str
    active: str
    passives: tuple[str, ...]

    def home(self, party: str) -> Path:
        return self.workdir / party

    def job_dir(self, party: str) -> Path:
        return self.home(party) / "jobs" / self.job_id

    def calls(self, passive: str) -> list[Call]:
        """Every Party call the active party made to `passive`, reassembled, in call order."""
        chunks: dict[tuple[int, str], dict[str, list]] = defaultdict(lambda: {"request": [], "response": []})
        for method, direction, _, call, data in read_records(self.record_dir / f"{passive}.wire"):
            if method.startswith(PARTY_PREFIX):
                chunks[(call, method)][direction].append(parse(pb.Chunk, data))
        out = []
        for (call, method), parts in sorted(chunks.items()):
            name = method[len(PARTY_PREFIX):]
            messages = []
            for i, direction in enumerate(("request", "response")):
                payload = next(read_payloads(iter(parts[direction])), None)
                messages.append(parse(PAYLOAD_TYPES[name][i], payload) if payload is not None else None)
            out.append(Call(passive, name, *messages))
        return out

    def psi_messages(self, passive: str) -> list[tuple[str, bytes]]:
        """(direction at the passive's server, raw envelope) of every PSI message with `passive`."""
        return [(direction, data) for method, direction, _, _, data in read_records(self.record_dir / f"{passive}.wire")
                if method.startswith("/psi.")]


@dataclass
class RoleView:
    """Everything one party holds after the run: the adversary in this role is given this and nothing else."""
    party: str
    role: str                                 # "active" or "passive"
    home: Path                                # node.yaml, tls/, data/, jobs/ of this party's node
    config: dict                              # its node config
    spec: dict                                # the job spec as this party holds it
    layouts: dict[str, Layout]                # per passive link this party is part of
    keys: dict[int, Any]                      # modulus -> engine with this party's own private key
    calls: list[Call]                         # every Party call this party sent or served (both messages)
    psi: list[tuple[str, bytes]]              # PSI envelopes this party exchanged
    log: str                                  # its node log
    job_dir: Path
    own_records: dict = field(default_factory=dict)  # (kind, index in calls) -> its own step inputs

    def holdings_text(self) -> bytes:
        """Every byte this party holds: its log, every file of its node (its job files opened with its own at-rest
        key, which it holds), every message it sent or received."""
        blobs = [self.log.encode()] + [sealed.read_bytes(p) for p in self.files()]
        blobs += [m.SerializeToString() for c in self.calls for m in (c.request, c.reply) if m is not None]
        blobs += [data for _, data in self.psi]
        return b"\n".join(blobs)

    def checkpoint(self, epoch: int) -> dict:
        return load_torch(checkpoint_path(self.job_dir, epoch))

    def files(self) -> list[Path]:
        return [p for p in self.home.rglob("*") if p.is_file()]


def _setup_keys(run: RecordedRun) -> dict[str, dict[str, int]]:
    """{passive: {"active": n_A, "passive": n_P}} from the Setup messages (public keys, in every view)."""
    out = {}
    for passive in run.passives:
        setup = next(c for c in run.calls(passive) if c.method == "Setup")
        out[passive] = {"active": int.from_bytes(setup.request.active_public_key, "big"),
                        "passive": int.from_bytes(setup.reply.passive_public_key, "big")}
    return out


def role_view(run: RecordedRun, party: str) -> RoleView:
    """What `party` holds: its own files, keys and messages only."""
    home = run.home(party)
    config = yaml.safe_load((home / "node.yaml").read_text())
    open_at_rest(load_node_config(home / "node.yaml"))   # the party's own at-rest key: it holds its files' plaintext
    engines = private_engines(run.spy_dir)
    keys = _setup_keys(run)
    if party == run.active:
        links = run.passives
        own_n = {k["active"] for k in keys.values()}
        spec = yaml.safe_load((run.job_dir(party) / "job.yaml").read_text())
    else:
        links = (party,)
        own_n = {keys[party]["passive"]}
        opened = next(c for c in run.calls(party) if c.method == "OpenJob")
        spec = yaml.safe_load(opened.request.spec_yaml)
    calls = [c for p in links for c in run.calls(p)]
    layouts = {p: Layout.from_json(next(c for c in run.calls(p) if c.method == "Setup").request.layout) for p in links}
    own_records = _own_spy_records(run, party, calls, keys)
    log_path = run.workdir / f"{party}.log"
    return RoleView(party=party, role="active" if party == run.active else "passive", home=home, config=config,
                    spec=spec, layouts=layouts, keys={n: engines[n] for n in own_n if n in engines}, calls=calls,
                    psi=[m for p in links for m in run.psi_messages(p)],
                    log=log_path.read_text(errors="replace") if log_path.exists() else "",
                    job_dir=run.job_dir(party), own_records=own_records)


def _own_spy_records(run: RecordedRun, party: str, calls: list[Call], keys: dict) -> dict:
    """The key spy's records of the homomorphic steps this party computed itself, keyed by (kind, call index).

    A party holds its own inputs to those steps: P its fixed-point activations and the mask Q it drew (its
    gradient share -Q), A the released per-example gradients D. Matched through the ciphertexts it sent.
    """
    records = exponent_records(run.spy_dir)
    sent = {"forward": lambda c: (c.reply.z_ciphertexts, keys[c.passive]["active"]),
            "weight_gradient": lambda c: (c.reply.masked_gradient, keys[c.passive]["active"]),
            "input_gradient": lambda c: (c.request.grad_ciphertexts, keys[c.passive]["passive"])}
    method = {"forward": "Forward", "weight_gradient": "WeightGradient", "input_gradient": "InputGradient"}
    kinds = ("input_gradient",) if party == run.active else ("forward", "weight_gradient")
    out = {}
    for i, call in enumerate(calls):
        for kind in kinds:
            if call.method == method[kind] and call.reply is not None:
                data, n = sent[kind](call)
                record = records.get((kind, ciphertext_digests(data, n))) if data else None
                if record is not None:
                    out[(kind, i)] = record
    return out


def ciphertext_digests(data: bytes, n: int) -> str:
    """The key-spy name of the first ciphertext in a wire field (see keyspy_launcher.digest)."""
    width = ((n * n).bit_length() + 7) // 8
    return digest(int.from_bytes(data[:width], "big"))


class Truth:
    """The judge's answers: secrets of every party, from all nodes' files and the key spy. Never an input."""

    def __init__(self, run: RecordedRun):
        self.run = run
        self.keys = _setup_keys(run)
        self.records = exponent_records(run.spy_dir)
        self.active_start = load_torch(checkpoint_path(run.job_dir(run.active), 0))
        self.passive_start = {p: load_torch(run.job_dir(p) / "checkpoints" / "epoch-0000.pt") for p in run.passives}

    def table_ids(self, party: str) -> set[str]:
        """Every ID in `party`'s own table (the Federation wrote it under that node's data directory)."""
        import pandas as pd
        return set(pd.read_csv(self.run.home(party) / "data" / "table.csv", dtype={"id": str})["id"])

    def initial_shares(self, passive: str) -> tuple[np.ndarray, np.ndarray]:
        """(U0, V0) at 2^f_s: the active and the passive party's initial shares of W_P."""
        return self.active_start["links"][passive]["share"].weights, self.passive_start[passive]["share"].weights

    def initial_weight(self, passive: str) -> np.ndarray:
        u0, v0 = self.initial_shares(passive)
        return (u0 + v0).astype(np.float64) / 2.0**SHARE_FRACTION_BITS

    def initial_halves(self, passive: str) -> tuple[np.ndarray, np.ndarray]:
        """(W^a, W^p) at 2^f_s: each party's private half of the initial W_P (W^p - V0 crossed the wire)."""
        from vfl.protocol.messages import decode_int_matrix
        from vfl.protocol.interactive import share_bits
        setup = next(c for c in self.run.calls(passive) if c.method == "Setup")
        layout = Layout.from_json(setup.request.layout)
        masked = decode_int_matrix(setup.reply.init_masked, (layout.d, layout.m), share_bits(layout) + 2)
        u0, v0 = self.initial_shares(passive)
        return u0 - masked, masked + v0

    def first_mask(self, passive: str) -> np.ndarray:
        """-Q of the passive party's first weight-gradient step (its own draw, from the key spy's record)."""
        n = self.keys[passive]["active"]
        call = next(c for c in self.run.calls(passive) if c.method == "WeightGradient" and c.reply is not None)
        return self.records[("weight_gradient", ciphertext_digests(call.reply.masked_gradient, n))]["share"]

    def activations(self, call: Call) -> np.ndarray | None:
        """P's fixed-point activations H behind one Forward call (the exponents it applied)."""
        n = self.keys[call.passive]["active"]
        record = self.records.get(("forward", ciphertext_digests(call.reply.z_ciphertexts, n)))
        return None if record is None else record["exponents"]

    def released_gradients(self, call: Call) -> np.ndarray | None:
        """A's fixed-point per-example gradients D as released to P in one InputGradient call."""
        n = self.keys[call.passive]["passive"]
        record = self.records.get(("input_gradient", ciphertext_digests(call.request.grad_ciphertexts, n)))
        return None if record is None else record["exponents"]
