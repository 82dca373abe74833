"""The Paillier scheme of the interactive layer: each party's half, over typed messages.

The math is vfl/protocol/interactive.py's; this module adds who holds which key, what each message carries and
the order of the calls. Keys: the active party draws one key pair per job (`new_active_key`), each passive party
one per job in its set-up; a party publishes its n and its DJN base h_s (docs/he.md), so a peer re-randomizes
under it cheaply and with statistical hiding.
"""
from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor
import numpy as np

from vfl import he
from vfl.errors import ProtocolError
from vfl.he.batch import KeyedEngine, from_wire, to_wire
from vfl.protocol import interactive as proto
from vfl.protocol.layout import Layout
from vfl.protocol.messages import (ForwardReply, ForwardRequest, InputGradientRequest, SetupReply, SetupRequest,
                                   WeightGradientReply, WeightGradientRequest, decode_int_matrix,
                                   encode_int_matrix)
from vfl.protocol.schemes.base import Call, Compute, Hyper, OpsWrapper

NAME = "paillier"


# ------------------------------------------------------------------------------------ key exchange

def new_key(key_bits: int, compute: Compute) -> KeyedEngine:
    """A fresh key pair with its private (decrypt) and public operations, held by the node's compute backend."""
    return compute.private_key(key_bits)


def public_key_bytes(ops) -> bytes:
    n = int(ops.n)
    return n.to_bytes((n.bit_length() + 7) // 8, "big")


def djn_base_bytes(ops) -> bytes:
    hs = int(ops.djn_base)
    return hs.to_bytes((hs.bit_length() + 7) // 8, "big")


def peer_key(n_bytes: bytes, djn_base: bytes, key_bits: int, compute: Compute,
             exponent_sum_bits: int | None = None) -> KeyedEngine:
    """The peer's public key, with its published DJN base for cheap, statistically safe re-randomization.

    `exponent_sum_bits` bounds sum_j |e_j| of the products this party re-randomizes under the key
    (Layout.exponent_sum_bits); the re-randomization exponent grows with it so that its hiding stays 2^-56.
    """
    if len(n_bytes) * 8 < key_bits - 8 or len(n_bytes) * 8 > key_bits + 8:
        raise ProtocolError(f"setup: peer public key has {len(n_bytes) * 8} bits, the job requires {key_bits}")
    n = int.from_bytes(n_bytes, "big")
    if n % 2 == 0 or n.bit_length() not in range(key_bits - 1, key_bits + 1):
        raise ProtocolError("setup: peer public key is not a valid Paillier modulus of the agreed size")
    hs = int.from_bytes(djn_base, "big")
    if not 0 < hs < n * n:
        raise ProtocolError("setup: peer DJN base is missing or out of range")
    try:
        slack = None if exponent_sum_bits is None else he.peer_djn_slack_bits(exponent_sum_bits)
        return compute.public_key(n, hs, slack)
    except (ValueError, he.CryptoError) as exc:
        raise ProtocolError(f"setup: peer public key refused: {exc}") from None


def keep_ready(ops, count: int) -> None:
    """Have the randomness of `count` encryptions or re-randomizations under `ops`' key computed in the background
    (vfl.he's randomness pool): the expensive half of encrypting the next batch is then done while this party
    waits for its peer. Engines without a pool (Ray's key holders) compute it on demand, as before."""
    prepare = getattr(ops, "keep_ready", None)
    if prepare is not None and count > 0:
        prepare(count)


def receive(data: bytes, key: KeyedEngine, count: int, what: str):
    """Exactly `count` ciphertexts under `key`; the engine's validation errors name the message."""
    try:
        return from_wire(data, key, count)
    except Exception as exc:  # noqa: BLE001 - a peer's bytes: every refusal is a protocol error
        raise ProtocolError(f"{what}: {exc}") from None


# ------------------------------------------------------------------------------------ active half

class ActiveHalf:
    """The active party's share U of W with one passive party, and its side of every exchange."""

    encrypted = True

    def __init__(self, peer: str, layout: Layout, hyper: Hyper, own_key: KeyedEngine, key_bits: int,
                 compute: Compute, wrap_ops: OpsWrapper):
        self.peer, self.layout, self.hyper = peer, layout, hyper
        self.key_bits, self.compute, self.wrap = key_bits, compute, wrap_ops
        self.ops_a = wrap_ops(own_key)
        self.ops_p = None
        self.share: proto.WeightShare | None = None
        self._next_u: bytes | None = None
        self._v_bases = None
        self.calls = ThreadPoolExecutor(max_workers=2, thread_name_prefix=f"link-{peer}")

    def setup_fields(self) -> dict:
        return {"active_public_key": public_key_bytes(self.ops_a), "active_djn_base": djn_base_bytes(self.ops_a)}

    def on_setup(self, reply: SetupReply, init_std: float, rng: np.random.Generator, restored: dict | None) -> None:
        layout = self.layout
        self.ops_p = self.wrap(peer_key(reply.passive_public_key, reply.passive_djn_base, self.key_bits,
                                        self.compute, layout.exponent_sum_bits()))
        if restored is not None:
            self.share = restored["share"]
        else:
            masked = decode_int_matrix(reply.init_masked, (layout.d, layout.m), proto.share_bits(layout) + 2)
            self.share = proto.active_init(layout, init_std, masked, rng)

    def keep_ready(self, rows: int) -> int:
        """Keep the randomness of one step of `rows` rows ready under the peer's key (the input gradient's
        re-randomization); returns how many encryptions one step takes under this party's own key ([U], [D]), which
        the job keeps ready once for all its links."""
        layout = self.layout
        keep_ready(self.ops_p, layout.backward_layout().ciphertexts_for(rows))
        return layout.d * layout.forward_layout().groups + rows * layout.gradient_ciphertexts_per_row()

    def forward_fields(self) -> dict:
        if self._next_u is None:
            self._prepare_weight_bases()
        u, self._next_u = self._next_u, None
        return {"u_ciphertexts": u}

    def decode_forward(self, reply: ForwardReply, rows: int, phase: str) -> np.ndarray:
        layout = self.layout
        z_cts = receive(reply.z_ciphertexts, self.ops_a, layout.forward_layout().ciphertexts_for(rows),
                        f"forward reply from {self.peer}")
        if phase == "train":
            self._v_bases = receive(reply.v_ciphertexts, self.ops_p, layout.m * layout.backward_layout().groups,
                                    f"forward reply from {self.peer} (v_ciphertexts)")
        return proto.active_decode_forward(self.ops_a, z_cts, rows, layout)

    def backward(self, call: Call, job_id: str, epoch: int, step: int, per_example: np.ndarray,
                 released: np.ndarray) -> None:
        """Send the passive party its input gradient and update the shared weight.

        The weight-gradient call goes first and runs at the passive party while this party computes the
        input gradient; this party then decrypts its gradient share and prepares the next batch's [U]
        while the passive party decrypts its input gradient.
        """
        layout = self.layout
        rows = per_example.shape[0]
        d_int = proto.encode_gradients(per_example, layout)
        released_int = d_int if released is per_example else proto.encode_gradients(released, layout)
        weight_req = WeightGradientRequest(job_id=job_id, epoch=epoch, step=step, delta_ciphertexts=to_wire(
            proto.active_encrypt_gradients(self.ops_a, d_int, layout)))
        weight_call = self.calls.submit(call, weight_req)
        grad_cts = proto.active_input_gradient(self.ops_p, self._v_bases, released_int, self.share, layout)
        input_call = self.calls.submit(call, InputGradientRequest(job_id=job_id, epoch=epoch, step=step,
                                                                  grad_ciphertexts=to_wire(grad_cts)))
        try:
            reply = weight_call.result()
            masked = receive(reply.masked_gradient, self.ops_a, layout.d * layout.gradient_ciphertexts_per_row(),
                             f"weight gradient reply from {self.peer}")
            gradient_share = proto.active_decode_weight_gradient(self.ops_a, masked, layout)
            h = self.hyper
            proto.apply_update(self.share, gradient_share, rows, h.lr, h.momentum, h.weight_decay, layout)
            self._prepare_weight_bases()
        finally:
            input_call.result()

    def _prepare_weight_bases(self) -> None:
        """Encrypt [U] for the next forward call now, while the passive party is busy."""
        u_rows = proto.product_weights(self.share.weights, self.layout)
        self._next_u = to_wire(proto.weight_bases(self.ops_a, u_rows, self.layout.forward_layout()))

    def state(self) -> dict:
        return {"share": self.share, "plain": None}

    def close(self) -> None:
        """The own key is the job's (shared by every link's half): the job closes it, not a half."""
        self.calls.shutdown(wait=False)
        if self.ops_p is not None:
            self.ops_p.close()


# ------------------------------------------------------------------------------------ passive half

class PassiveHalf:
    """The passive party's share V of W, its own key, and its side of every exchange."""

    encrypted = True
    #: the calls that complete a training step at the passive party
    backward_calls = frozenset({"weight gradient", "input gradient"})

    def __init__(self, layout: Layout, hyper: Hyper, key_bits: int, compute: Compute, wrap_ops: OpsWrapper):
        self.layout, self.hyper, self.key_bits, self.compute, self.wrap = layout, hyper, key_bits, compute, wrap_ops
        self.share: proto.WeightShare | None = None
        self.ops_a = self.ops_p = None

    def setup(self, req: SetupRequest, init_std: float, rng: np.random.Generator, restored_share) -> dict:
        """Take the active party's key, draw this party's key; share V0 and the masked half unless restored."""
        self.ops_a = self.wrap(peer_key(req.active_public_key, req.active_djn_base, self.key_bits, self.compute,
                                        self.layout.exponent_sum_bits()))
        self.ops_p = self.wrap(new_key(self.key_bits, self.compute))
        fields = {"passive_public_key": public_key_bytes(self.ops_p), "passive_djn_base": djn_base_bytes(self.ops_p)}
        if restored_share is not None:
            self.share = restored_share
        else:
            self.share, masked = proto.passive_init(self.layout, init_std, rng)
            fields["init_masked"] = encode_int_matrix(masked)
        return fields

    def keep_ready(self, rows: int) -> None:
        """Keep the randomness of one step of `rows` rows ready: [V] under this party's key, the re-randomization
        of z and of the weight gradient under the active party's."""
        layout = self.layout
        keep_ready(self.ops_p, layout.m * layout.backward_layout().groups)
        keep_ready(self.ops_a, layout.forward_layout().ciphertexts_for(rows)
                   + layout.d * layout.gradient_ciphertexts_per_row())

    def forward(self, req: ForwardRequest, h: np.ndarray, train: bool) -> tuple[ForwardReply, object]:
        """[h W]_A (and, for training, [V]_P for the input gradient); the fixed-point h stays for the backward."""
        layout = self.layout
        slot = layout.forward_layout()
        u_bases = receive(req.u_ciphertexts, self.ops_a, layout.d * slot.groups, "forward.u_ciphertexts")
        h_int = proto.encode_activations(h, layout)
        z = proto.passive_forward(self.ops_a, u_bases, h_int, self.share, layout)
        v = b""
        if train:
            v_rows = proto.product_weights(self.share.weights, layout).T
            v = to_wire(proto.weight_bases(self.ops_p, v_rows, layout.backward_layout()))
        return ForwardReply(z_ciphertexts=to_wire(z), v_ciphertexts=v), h_int

    def weight_gradient(self, req: WeightGradientRequest, h_int, rows: int) -> WeightGradientReply:
        """[h^T D + Q]_A for the active party; this party folds -Q into its share."""
        layout = self.layout
        d_cts = receive(req.delta_ciphertexts, self.ops_a, rows * layout.gradient_ciphertexts_per_row(),
                        "weight gradient.delta_ciphertexts")
        masked, share = proto.passive_weight_gradient(self.ops_a, d_cts, h_int, layout)
        h = self.hyper
        proto.apply_update(self.share, share, rows, h.lr, h.momentum, h.weight_decay, layout)
        return WeightGradientReply(masked_gradient=to_wire(masked))

    def input_gradient(self, req: InputGradientRequest, rows: int) -> np.ndarray:
        """This party's input gradient delta W^T (rows x d), decrypted under its own key."""
        g_cts = receive(req.grad_ciphertexts, self.ops_p, self.layout.backward_layout().ciphertexts_for(rows),
                        "input gradient.grad_ciphertexts")
        return proto.passive_decode_input_gradient(self.ops_p, g_cts, rows, self.layout)

    def close(self) -> None:
        """End this party's key for the job (on Ray: its key holders end with it) and the peer's engine."""
        for ops in (self.ops_p, self.ops_a):
            if ops is not None:
                ops.close()
