"""Rows of integers <-> packed plaintexts of a SlotLayout, with the checksum slot on top.

Plaintexts are Python ints (the engine works mod n). Packing is Horner's rule over slots, so slot values
may be negative or larger than a slot: the encoding is linear, and only decoded results must fit.
"""
from __future__ import annotations

from typing import Sequence

import numpy as np

from vfl.errors import CryptoError
from vfl.protocol.layout import SlotLayout


class SlotOverflowError(CryptoError):
    """A decoded packed value does not match its checksum: some slot overflowed its range."""


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
        raise CryptoError(f"{what}: expected {count} rows, the ciphertexts hold {len(rows)}")
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
