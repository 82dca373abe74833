"""Online scoring with an exported model: training's forward step for a few rows, with everything per model cached.

Per passive party P and model, a *session* (OpenScoring) fixes what every request reuses:

* the active party A draws a serving key and encrypts its share U of W_P once, at every slot group ([U]_A, d x
  groups ciphertexts); P keeps the ciphertexts for the session. A request then carries IDs only.
* P takes A's public key and DJN base and starts a background pool of re-randomization obfuscators under it, from
  the OS generator (vfl/he/randomness.py), so the one modular exponentiation per output ciphertext that must be
  fresh is computed off the request path.

Per request (ScoreRows) P looks its features up, computes h = bottom(x) and returns
[z]_A = prod [U]^H * Enc(H V), re-randomized (`interactive.passive_forward`, the very function training uses), for
the rows it holds; A decrypts z_P = h_P W_P and nothing else. So, as in training: A learns z_P for the rows it asks
and no more; P learns which IDs are asked (it must, to look them up) and nothing of A's features, of U or of the
scores (everything it receives is under A's key); W_P stays split (no party ever holds U + V).
"""
from __future__ import annotations

import numpy as np

from vfl.errors import ProtocolError
from vfl.he.batch import Fresh, KeyedEngine, to_wire
from vfl.protocol import interactive as proto
from vfl.protocol.layout import Layout
from vfl.protocol.messages import (ROW_SCORED, OpenScoring, OpenScoringReply, ScoreRowsReply, decode_status)
from vfl.protocol.schemes import paillier
from vfl.protocol.schemes.base import Compute

#: obfuscators P keeps ready per session: enough for a burst of 8 batches of 256 rows at 2048 bits (2 rows per
#: ciphertext at the default widths), refilled by a background thread between bursts
PRECOMPUTED = 1024


def layout_json(layout: Layout) -> bytes:
    return layout.to_json()


class ScoringActiveHalf:
    """A's side of one session with one passive party: its key, [U]_A encrypted once, and decryption of z."""

    def __init__(self, peer: str, layout: Layout, share: np.ndarray, own_key: KeyedEngine):
        self.peer, self.layout, self.ops_a = peer, layout, own_key
        u_rows = proto.product_weights(share, layout)
        self.u_wire = to_wire(proto.weight_bases(own_key, u_rows, layout.forward_layout()))

    def open_request(self, model_id: str) -> OpenScoring:
        return OpenScoring(model_id=model_id, layout=layout_json(self.layout),
                           active_public_key=paillier.public_key_bytes(self.ops_a),
                           active_djn_base=paillier.djn_base_bytes(self.ops_a), u_ciphertexts=self.u_wire)

    def decode(self, reply: ScoreRowsReply, count: int) -> tuple[np.ndarray, np.ndarray]:
        """(status per requested ID, z_P of the scored ones in request order, rows x m float)."""
        status = decode_status(reply.status, count)
        scored = int((status == ROW_SCORED).sum())
        if scored == 0:
            if reply.z_ciphertexts:
                raise ProtocolError(f"score reply from {self.peer}: ciphertexts although no ID was scored")
            return status, np.zeros((0, self.layout.m))
        slot = self.layout.forward_layout()
        z_cts = paillier.receive(reply.z_ciphertexts, self.ops_a, slot.ciphertexts_for(scored),
                                 f"score reply from {self.peer}")
        return status, proto.active_decode_forward(self.ops_a, z_cts, scored, self.layout)


def check_open(request: OpenScoring, layout: Layout, min_key_bits: int) -> None:
    """P refuses a session whose layout differs from its own part's or whose key is below its policy."""
    if request.layout != layout_json(layout):
        raise ProtocolError(f"open scoring: the active party's model part of job {request.model_id!r} agrees on a "
                            "different interactive layout than this party's (are both parts from the same job?)")
    if layout.key_bits < min_key_bits:
        raise ProtocolError(f"open scoring: the model's {layout.key_bits}-bit keys are below this party's policy "
                            f"(policy.min_key_bits {min_key_bits})")


class ScoringPassiveHalf:
    """P's side of one session: A's key (with precomputed obfuscators), [U]_A, and its own share V."""

    def __init__(self, request: OpenScoring, layout: Layout, share: np.ndarray, compute: Compute,
                 precompute: int = PRECOMPUTED):
        self.layout = layout
        self.share = proto.WeightShare(share)
        self.ops_a = paillier.peer_key(request.active_public_key, request.active_djn_base, layout.key_bits, compute,
                                       layout.exponent_sum_bits())
        groups = layout.forward_layout().groups
        self.u_bases = paillier.receive(request.u_ciphertexts, self.ops_a, layout.d * groups, "open scoring")
        keep_ready = getattr(self.ops_a, "keep_ready", None)
        if keep_ready is not None and precompute > 0:
            keep_ready(precompute)

    def score(self, h: np.ndarray) -> Fresh:
        """[h W]_A for activations h (rows x d, float), re-randomized: training's forward step."""
        h_int = proto.encode_activations(h, self.layout)
        return proto.passive_forward(self.ops_a, self.u_bases, h_int, self.share, self.layout)

    def reply(self, status: np.ndarray, h: np.ndarray) -> ScoreRowsReply:
        """The reply to one ScoreRows: the status of every ID, [z]_A of the scored rows (h holds only those)."""
        z = to_wire(self.score(h)) if len(h) else b""
        return ScoreRowsReply(z_ciphertexts=z, status=np.asarray(status, dtype=np.uint8).tobytes())

    def close(self) -> None:
        self.ops_a.close()


def open_reply(session: str, max_ids: int) -> OpenScoringReply:
    return OpenScoringReply(session=session, max_ids=max_ids)
