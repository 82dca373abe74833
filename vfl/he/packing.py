"""The one slot codec of the project: fixed point, and rows of integers <-> packed Paillier plaintexts.

Fixed point: a real x at f fraction bits is round(x * 2^f), after clamping to the range the caller agreed.

Packing: a plaintext is  sum_s v_s 2^(b s) + c 2^(b S)  (mod n): S signed slots of b bits (a :class:`SlotLayout`
of ``groups`` rows of ``width`` values) and, above them, an optional checksum slot c = sum_s a_s v_s with
public pseudo-random weights a_s. Packing is Horner's rule over the slots and linear mod n, so slot values
may be negative, and intermediate values anything (huge masked shares, say): only decoded results must fit.
The checksum catches the case where they do not (a miss has probability about 2^-24 per ciphertext), so an
overflow raises :class:`SlotOverflowError` instead of returning garbage.

Plaintexts are Python ints; the engine (vfl.he.engine) works mod n and decrypts centered in (-n/2, n/2].
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Sequence

import numpy as np

from vfl.he.errors import LayoutError, SlotOverflowError

CHECKSUM_WEIGHT_BITS = 24


@dataclass(frozen=True)
class SlotLayout:
    """`groups` rows of `width` values per ciphertext, `slot_bits` each, optionally with a checksum on top."""
    width: int
    groups: int
    slot_bits: int
    checksum: bool
    seed: int

    @property
    def slots(self) -> int:
        return self.width * self.groups

    def weights(self) -> np.ndarray:
        """Public checksum weights a_s in [1, 2^24), one per slot."""
        rng = np.random.default_rng([self.seed, self.width, self.groups, self.slot_bits])
        return rng.integers(1, 1 << CHECKSUM_WEIGHT_BITS, size=self.slots, dtype=np.int64)

    def ciphertexts_for(self, rows: int) -> int:
        return -(-rows // self.groups)


def plan(width: int, slot_bits: int, key_bits: int, checksum: bool, seed: int) -> SlotLayout:
    """Pack as many rows of `width` slots per ciphertext as the plaintext space allows."""
    usable = key_bits - 2  # |plaintext| < n/2, and n has key_bits bits
    top = slot_bits + CHECKSUM_WEIGHT_BITS + 12 if checksum else 0
    groups = (usable - top) // (slot_bits * width)
    if groups < 1:
        raise LayoutError(f"a row of {width} slots of {slot_bits} bits does not fit a {key_bits}-bit key")
    return SlotLayout(width=width, groups=int(groups), slot_bits=slot_bits, checksum=checksum, seed=seed)


# ------------------------------------------------------------------------------------ fixed point

def to_fixed(values: np.ndarray, fraction_bits: int, bound: float) -> np.ndarray:
    """round(clamp(values, +-bound) * 2^fraction_bits) as int64 (the bound keeps every value inside int64)."""
    return np.rint(np.clip(values, -bound, bound) * (1 << fraction_bits)).astype(np.int64)


def from_fixed(values: np.ndarray, fraction_bits: int) -> np.ndarray:
    """Integers (int64 or Python ints) at 2^-fraction_bits as float64."""
    return np.asarray(values).astype(np.float64) / float(1 << fraction_bits)


def fixed(value: float, bits: int) -> int:
    """One constant (a learning rate, a momentum) at 2^-bits."""
    return int(round(value * (1 << bits)))


# ------------------------------------------------------------------------------------ packing

def _horner(values: Sequence[int], bits: int) -> int:
    acc = 0
    for v in reversed(values):
        acc = (acc << bits) + int(v)
    return acc


def pack_rows(rows: np.ndarray, layout: SlotLayout) -> list[int]:
    """Pack `groups` consecutive rows per plaintext (last one zero-padded), with their checksum."""
    rows = np.asarray(rows, dtype=object)
    count, width = rows.shape
    if width != layout.width:
        raise ValueError(f"rows have {width} values, the layout packs {layout.width}")
    weights = [int(a) for a in layout.weights()] if layout.checksum else None
    out: list[int] = []
    for start in range(0, count, layout.groups):
        flat = [int(v) for v in rows[start:start + layout.groups].reshape(-1)]
        flat += [0] * (layout.slots - len(flat))
        plain = _horner(flat, layout.slot_bits)
        if weights is not None:
            plain += sum(a * v for a, v in zip(weights, flat)) << (layout.slot_bits * layout.slots)
        out.append(plain)
    return out


def pack_row_at_group(row: Sequence[int], group: int, layout: SlotLayout) -> int:
    """One row placed in slot group `group` (other slots zero), with its checksum contribution.

    These are the bases of the multi-exponentiation: the product over groups t of base_t^(x_t) puts
    x_t * row in group t, so one ciphertext carries `groups` output rows.
    """
    width, bits = layout.width, layout.slot_bits
    plain = _horner(row, bits) << (bits * width * group)
    if layout.checksum:
        weights = layout.weights()[group * width:(group + 1) * width]
        plain += sum(int(a) * int(v) for a, v in zip(weights, row)) << (bits * layout.slots)
    return plain


def unpack_rows(plaintexts: Sequence[int], count: int, layout: SlotLayout, what: str) -> np.ndarray:
    """Decode signed slots (plaintexts already centered in (-n/2, n/2]) and verify each checksum."""
    bits, half, mask = layout.slot_bits, 1 << (layout.slot_bits - 1), (1 << layout.slot_bits) - 1
    weights = [int(a) for a in layout.weights()] if layout.checksum else None
    values = np.empty((len(plaintexts), layout.slots), dtype=object)
    for c, x in enumerate(plaintexts):
        x = int(x)
        for s in range(layout.slots):
            v = x & mask
            if v >= half:
                v -= 1 << bits
            values[c, s] = v
            x = (x - v) >> bits
        if weights is not None:
            if x != sum(a * int(v) for a, v in zip(weights, values[c])):
                raise SlotOverflowError(
                    f"{what}: a packed value exceeded its {bits}-bit slot (checksum mismatch in ciphertext {c}); "
                    "the interactive layer's outputs left the fixed-point range. Lower the learning rates or "
                    "the activation bound, or raise crypto precision limits")
        elif x != 0:
            raise SlotOverflowError(f"{what}: packed value {c} has bits above its last slot (overflow)")
    rows = values.reshape(-1, layout.width)[:count]
    if len(rows) < count:
        raise LayoutError(f"{what}: expected {count} rows, the ciphertexts hold {len(rows)}")
    return rows


def group_exponents(x: np.ndarray, layout: SlotLayout) -> np.ndarray:
    """Exponent matrix for pack_row_at_group bases: E[c, j*groups + t] = x[c*groups + t, j].

    x has one row per output row and one column per base row (j); rows beyond the end get exponent 0.
    """
    count, inner = x.shape
    n_ct = layout.ciphertexts_for(count)
    padded = np.zeros((n_ct * layout.groups, inner), dtype=np.int64)
    padded[:count] = x
    # (n_ct, groups, inner) -> (n_ct, inner, groups) -> flatten so column index = j * groups + t
    return padded.reshape(n_ct, layout.groups, inner).transpose(0, 2, 1).reshape(n_ct, inner * layout.groups)
