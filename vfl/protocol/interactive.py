"""The secure interactive layer between the active party A and one passive party P.

Notation per batch of B rows: P's clamped bottom output h (B x d), the interactive weight W (d x m),
the gradient dL/dz = delta (B x m), D = fixed-point per-example gradients (B * delta).

* W = U + V over the integers. A holds U, P holds V. Both are uniformly masked from step 0:
  V0 is uniform with `stat_bits` more bits than any weight, and U0 = W^a + (W^p - V0), where W^a and
  W^p are the two parties' private halves of the random initialisation. Neither party ever knows W.
* Forward.  A sends [U]_A (each row of U placed in every slot group). P computes
      [z]_A = prod_{j,t} [U_j at group t]^(H[row_t, j])  *  Enc_A(H V)        = [H (U + V)] = [H W]_A
  A decrypts z = h W. The small activations are the exponents; the large shares stay inside ciphertexts.
* Input gradient. P sends [V]_P. A computes [D V^T]_P * Enc_A... * Enc_P(D U^T) = [D W^T]_P; P decrypts
  its own input gradient delta W^T and nothing else.
* Weight gradient. A sends [D]_A row by row; P computes [h^T D + Q]_A with a fresh uniform mask Q of
  `stat_bits` more bits than |h^T D|; A decrypts h^T D + Q. The gradient's shares are A: h^T D + Q,
  P: -Q, and each party folds its share into its weight share (SGD with momentum is linear).

Every ciphertext a party sends carries fresh randomness from its encryption or re-randomization: the functions
here return `Fresh` batches for what leaves a party, and the wire encoder takes nothing else (vfl.he.batch).
Every batch carries its key, so an operation on the other party's ciphertexts raises instead of computing.
What crosses the wire: Paillier ciphertexts, the statistically masked init share, and nothing else.
"""
from __future__ import annotations

import secrets
from dataclasses import dataclass, field
from typing import Protocol, Sequence

import numpy as np

from vfl.errors import ProtocolError
from vfl.he.batch import Ciphertexts, Fresh
from vfl.he.packing import (SlotLayout, fixed, from_fixed, group_exponents, pack_row_at_group, pack_rows, to_fixed,
                            unpack_rows)
from vfl.protocol.layout import Layout


class PublicOps(Protocol):
    """What the protocol needs from the Paillier engine under someone's public key (a vfl.he.KeyedEngine)."""
    n: int

    def encrypt_ints(self, plaintexts: Sequence[int]) -> Fresh: ...
    def add_plain(self, ciphertexts: Ciphertexts, plaintexts: Sequence[int]) -> Ciphertexts: ...
    def multiexp(self, bases: Ciphertexts, exponents: np.ndarray) -> Ciphertexts: ...
    def rerandomize(self, ciphertexts: Ciphertexts) -> Fresh: ...


class PrivateOps(PublicOps, Protocol):
    def decrypt_ints(self, ciphertexts: Ciphertexts) -> list[int]: ...  # centered in (-n/2, n/2]


# ------------------------------------------------------------------------------------ fixed point

def encode_activations(h: np.ndarray, layout: Layout) -> np.ndarray:
    return to_fixed(h, layout.f_h, layout.activation_bound)


def encode_gradients(per_example_delta: np.ndarray, layout: Layout) -> np.ndarray:
    return to_fixed(per_example_delta, layout.f_g, float(1 << layout.delta_range_bits))


def _uniform_ints(shape: tuple[int, ...], bits: int, signed: bool) -> np.ndarray:
    out = np.empty(shape, dtype=object)
    flat = out.reshape(-1)
    for i in range(flat.size):
        v = secrets.randbits(bits + (1 if signed else 0))
        flat[i] = v - (1 << bits) if signed else v
    return out


def product_weights(share: np.ndarray, layout: Layout) -> np.ndarray:
    """A stored share (2^f_s) at product precision (2^f_w), rounded to nearest.

    Each party rounds its own share, so the two sum to W within 1 ulp and without bias (flooring both
    would shift every weight by -1 ulp on average, which shows up in regression).
    """
    shift = layout.f_s - layout.f_w
    half = 1 << (shift - 1)
    return np.array([[(int(v) + half) >> shift for v in row] for row in share], dtype=object)


def int_matmul(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Exact integer product of an int64 matrix and a Python-int matrix."""
    return np.dot(a.astype(object), b)


# ------------------------------------------------------------------------------------ shares

@dataclass
class WeightShare:
    """One party's additive share of W (d x m) at 2^f_s, and of its momentum buffer at 2^(f_h + f_g)."""
    weights: np.ndarray
    momentum: np.ndarray = field(default=None)  # type: ignore[assignment]

    def __post_init__(self) -> None:
        if self.momentum is None:
            self.momentum = np.zeros(self.weights.shape, dtype=object)
            self.momentum[...] = 0


def share_bits(layout: Layout) -> int:
    """Bits of the uniform mask V0: weights (|W| < 2^8 at 2^f_s) plus the statistical slack."""
    return layout.f_s + 8 + layout.stat_bits


def gaussian_half(shape: tuple[int, int], std: float, layout: Layout, rng: np.random.Generator) -> np.ndarray:
    """This party's half of the random initialisation, N(0, std^2 / 2), at 2^f_s."""
    half = rng.normal(0.0, std / np.sqrt(2.0), size=shape)
    return np.array([[int(round(v * (1 << layout.f_s))) for v in row] for row in half], dtype=object)


def passive_init(layout: Layout, std: float, rng: np.random.Generator) -> tuple[WeightShare, np.ndarray]:
    """P's share V0 (uniform) and the message W^p - V0 for A (statistically hides W^p)."""
    v0 = _uniform_ints((layout.d, layout.m), share_bits(layout), signed=True)
    masked = gaussian_half((layout.d, layout.m), std, layout, rng) - v0
    return WeightShare(v0), masked


def active_init(layout: Layout, std: float, masked_from_passive: np.ndarray, rng: np.random.Generator) -> WeightShare:
    """A's share U0 = W^a + (W^p - V0), so U0 + V0 = W^a + W^p."""
    return WeightShare(gaussian_half((layout.d, layout.m), std, layout, rng) + masked_from_passive)


# ------------------------------------------------------------------------------------ forward

def weight_bases(ops: PublicOps, weights: np.ndarray, slot: SlotLayout) -> Fresh:
    """Encrypt each row of `weights` (rows x slot.width) at every slot group: rows * groups ciphertexts.

    Base index j * groups + t holds row j at group t, matching `group_exponents`.
    """
    plains = [pack_row_at_group(row, t, slot) for row in weights for t in range(slot.groups)]
    return ops.encrypt_ints(plains)


def _check_count(stage: str, what: str, expected: int, got: Sequence) -> None:
    if len(got) != expected:
        raise ProtocolError(f"{stage}: expected {expected} {what} ciphertexts, got {len(got)}")


def _shared_product(ops: PublicOps, bases: Ciphertexts, x_int: np.ndarray, own_weights: np.ndarray,
                    slot: SlotLayout) -> Fresh:
    """[x (S + T)] from the peer's encrypted share S (as bases, x in the exponent) plus x T in plaintext.

    Re-randomized, because the product is returned to the key owner.
    """
    products = ops.multiexp(bases, group_exponents(x_int, slot))
    own = pack_rows(int_matmul(x_int, own_weights), slot)
    return ops.rerandomize(ops.add_plain(products, own))


def passive_forward(ops_a: PublicOps, u_bases: Ciphertexts, h_int: np.ndarray, v_share: WeightShare,
                    layout: Layout) -> Fresh:
    """P: [h W]_A from A's [U] bases, P's activations (exponents) and P's share V (added as plaintext)."""
    slot = layout.forward_layout()
    _check_count("forward", "weight", layout.d * slot.groups, u_bases)
    return _shared_product(ops_a, u_bases, h_int, product_weights(v_share.weights, layout), slot)


def active_decode_forward(ops_a: PrivateOps, z_cts: Ciphertexts, rows: int, layout: Layout) -> np.ndarray:
    """A: decrypt z = h W (float, rows x m)."""
    slot = layout.forward_layout()
    _check_count("forward", "output", slot.ciphertexts_for(rows), z_cts)
    z = unpack_rows(ops_a.decrypt_ints(z_cts), rows, slot, "forward output h*W")
    return from_fixed(z, layout.f_h + layout.f_w)


# ------------------------------------------------------------------------------------ input gradient

def active_input_gradient(ops_p: PublicOps, v_bases: Ciphertexts, d_int: np.ndarray, u_share: WeightShare,
                          layout: Layout) -> Fresh:
    """A: [D W^T]_P from P's [V^T] bases, A's per-example gradients (exponents) and A's share U."""
    slot = layout.backward_layout()
    _check_count("backward", "weight", layout.m * slot.groups, v_bases)
    return _shared_product(ops_p, v_bases, d_int, product_weights(u_share.weights, layout).T, slot)


def passive_decode_input_gradient(ops_p: PrivateOps, cts: Ciphertexts, rows: int, layout: Layout) -> np.ndarray:
    """P: its input gradient delta W^T (float, rows x d), from per-example gradients divided by B."""
    slot = layout.backward_layout()
    _check_count("backward", "gradient", slot.ciphertexts_for(rows), cts)
    g = unpack_rows(ops_p.decrypt_ints(cts), rows, slot, "input gradient delta*W^T")
    return from_fixed(g, layout.f_g + layout.f_w) / rows


# ------------------------------------------------------------------------------------ weight gradient

def active_encrypt_gradients(ops_a: PublicOps, d_int: np.ndarray, layout: Layout) -> Fresh:
    """A: [D]_A, one ciphertext per row (per row chunk when m is wider than a plaintext)."""
    slot = layout.gradient_layout()
    chunks = _row_chunks(d_int, slot.width)
    return ops_a.encrypt_ints([pack_rows(chunk[None, :], slot)[0] for row in chunks for chunk in row])


def _row_chunks(x: np.ndarray, width: int) -> list[list[np.ndarray]]:
    cols = x.shape[1]
    out = []
    for row in x:
        parts = [row[i:i + width] for i in range(0, cols, width)]
        parts[-1] = np.concatenate([parts[-1], np.zeros(width - len(parts[-1]), dtype=row.dtype)])
        out.append(parts)
    return out


def passive_weight_gradient(ops_a: PublicOps, d_cts: Ciphertexts, h_int: np.ndarray,
                            layout: Layout) -> tuple[Fresh, np.ndarray]:
    """P: [h^T D + Q]_A and P's gradient share -Q (d x m)."""
    slot = layout.gradient_layout()
    rows = h_int.shape[0]
    per_row = layout.gradient_ciphertexts_per_row()
    _check_count("backward", "gradient", rows * per_row, d_cts)
    mask_bits = layout.gradient_bound_bits() + layout.stat_bits
    q = _uniform_ints((layout.d, per_row * slot.width), mask_bits, signed=False)
    out = []
    for c in range(per_row):
        bases = d_cts[c::per_row]
        products = ops_a.multiexp(bases, np.ascontiguousarray(h_int.T))  # one output per j
        masks = pack_rows(q[:, c * slot.width:(c + 1) * slot.width], slot)
        out.append(ops_a.rerandomize(ops_a.add_plain(products, masks)))
    # row j's chunks next to each other, as the active party decodes them
    return Fresh.interleave(out, [(c, j) for j in range(layout.d) for c in range(per_row)]), -q[:, :layout.m]


def active_decode_weight_gradient(ops_a: PrivateOps, cts: Ciphertexts, layout: Layout) -> np.ndarray:
    """A: its gradient share h^T D + Q (d x m, integers at 2^(f_h + f_g), summed over the batch)."""
    slot = layout.gradient_layout()
    per_row = layout.gradient_ciphertexts_per_row()
    _check_count("backward", "masked-gradient", layout.d * per_row, cts)
    rows = unpack_rows(ops_a.decrypt_ints(cts), layout.d * per_row, slot, "masked weight gradient")
    return rows.reshape(layout.d, per_row * slot.width)[:, :layout.m]


# ------------------------------------------------------------------------------------ update

def apply_update(share: WeightShare, gradient_share: np.ndarray, batch_rows: int, lr: float, momentum: float,
                 weight_decay: float, layout: Layout) -> None:
    """SGD with momentum on a share; both parties run it on their own share with the same constants.

    g <- g / B ;  m <- mu m + g ;  W <- W - lr m - lr wd W.  The momentum holds *mean* gradients, as torch's
    SGD does: dividing the step instead (lr / B times a momentum of summed gradients) would scale every
    earlier batch's contribution by the current batch size, so a short last batch took a step up to
    128x too large. Every operation is linear, so the two shares keep summing to the shared result up to a
    unit of 2^-f_s per rounding.
    """
    mu = fixed(momentum, layout.f_lr)
    mean = [[_round_div(int(g), batch_rows) for g in row] for row in gradient_share]
    share.momentum = np.array([[(mu * int(mv) >> layout.f_lr) + g for mv, g in zip(mrow, grow)]
                               for mrow, grow in zip(share.momentum, mean)], dtype=object)
    step = fixed(lr, layout.f_lr)
    shift = layout.f_h + layout.f_g + layout.f_lr - layout.f_s
    decay = fixed(lr * weight_decay, layout.f_lr)
    new = np.empty(share.weights.shape, dtype=object)
    for i in range(share.weights.shape[0]):
        for j in range(share.weights.shape[1]):
            w = int(share.weights[i, j])
            w -= _shift(step * int(share.momentum[i, j]), shift)
            if decay:
                w -= (decay * w) >> layout.f_lr
            new[i, j] = w
    share.weights = new


def _round_div(value: int, divisor: int) -> int:
    """value / divisor rounded to nearest (exact on Python ints of any size, so on masked shares too)."""
    return (2 * value + divisor) // (2 * divisor)


def _shift(value: int, shift: int) -> int:
    return value >> shift if shift >= 0 else value << -shift
