"""Fixed-point encoding of float tensors, slot packing of signed integers, and uniform masks.

Fixed point (scale 2^f):   encode(x) = round(x * 2^f),   decode(v) = v / 2^f.

Packing (b-bit slots, S slots):   P = sum_k v_k 2^(b k)   as an integer, encrypted as P mod n.

The encoding is *linear modulo n*: adding packed plaintexts adds slots, multiplying by an integer multiplies
every slot. Intermediate slot values may therefore be anything (even far larger than a slot); only the final
values must satisfy |v_k| < 2^(b-1). Decoding reads the plaintext centered in (-n/2, n/2] and peels slots
from the bottom with signed digits and borrows:

    v_0 = smod(P, 2^b),  P_1 = (P - v_0) / 2^b,  v_1 = smod(P_1, 2^b), ...      smod in [-2^(b-1), 2^(b-1))

which recovers every v_k exactly, signs included, provided b*S <= bits(n) - 1 (so that |P| < 2^(bS-1) <= n/2)
and each |v_k| < 2^(b-1). A non-zero remainder after the last slot proves an overflow (:class:`SlotOverflowError`),
but only an overflow that reaches the top: a lower slot that overflowed is read as a wrapped value plus a carry
into the slot above, indistinguishable from genuine values (see :meth:`SlotCodec.unpack`).

Masks: integers uniform in [0, 2^k) drawn from the OS CSPRNG (``os.urandom``). Adding such a mask to a value
|x| < 2^L hides x statistically with distance <= 2^(L-k) (use k = L + 40), or -- ring variant -- hides
x mod 2^k perfectly when the receiver keeps only the slot value mod 2^k (see :func:`ring_masks`).
"""
from __future__ import annotations

import math
import os
from typing import Any, Iterable, Sequence

import numpy as np

from vfl.he.errors import EncodingError, LayoutError, SlotOverflowError

INT64_SAFE_BITS = 62


# ------------------------------------------------------------------------------------------ fixed point

def to_numpy(x: Any) -> tuple[np.ndarray, bool]:
    """(float64 array, was_torch) for a numpy array, torch tensor, list or scalar."""
    if hasattr(x, "detach") and hasattr(x, "cpu"):  # torch.Tensor without importing torch
        return x.detach().cpu().double().numpy(), True
    return np.asarray(x, dtype=np.float64), False


def like_input(values: np.ndarray, was_torch: bool) -> Any:
    if was_torch:
        import torch
        return torch.from_numpy(np.ascontiguousarray(values))
    return values


def max_abs_int(values: np.ndarray) -> int:
    """max |v| over an int64 or object array of Python ints (0 when empty)."""
    if values.size == 0:
        return 0
    if values.dtype == object:
        return max(abs(int(v)) for v in values.reshape(-1))
    return int(np.max(np.abs(values.astype(np.int64))))


def as_int_array(values: Any) -> np.ndarray:
    """An int64 array when every |v| < 2^62, else an object array of Python ints."""
    arr = np.asarray(values)
    if arr.dtype == object:
        flat = [int(v) for v in arr.reshape(-1)]
        if all(-(1 << INT64_SAFE_BITS) < v < (1 << INT64_SAFE_BITS) for v in flat):
            return np.array(flat, dtype=np.int64).reshape(arr.shape)
        out = np.empty(arr.shape, dtype=object)
        out.reshape(-1)[:] = flat
        return out
    if arr.dtype.kind not in "iub":
        raise EncodingError(f"expected integers, got an array of dtype {arr.dtype}")
    return arr.astype(np.int64)


class FixedPoint:
    """Fixed-point codec with `frac_bits` fraction bits: v = round(x * 2^frac_bits) (ties to even).

    `max_bits`, when given, refuses values whose encoding needs more than that many magnitude bits
    (|v| >= 2^max_bits). Results are int64 arrays when every |v| < 2^62, else object arrays of Python ints.
    """

    def __init__(self, frac_bits: int, max_bits: int | None = None):
        if not isinstance(frac_bits, (int, np.integer)) or not 0 <= frac_bits <= 1000:
            raise EncodingError(f"fixed-point precision must be 0..1000 fraction bits, got {frac_bits!r}")
        self.frac_bits = int(frac_bits)
        self.max_bits = max_bits

    def __repr__(self) -> str:
        return f"FixedPoint(frac_bits={self.frac_bits}, max_bits={self.max_bits})"

    def encode(self, x: Any) -> np.ndarray:
        arr, _ = to_numpy(x)
        finite = np.isfinite(arr)
        if not finite.all():
            bad = int(np.flatnonzero(~finite.reshape(-1))[0])
            raise EncodingError(f"cannot encode {arr.reshape(-1)[bad]} at flat index {bad}: NaN and infinity "
                                "have no fixed-point encoding")
        scaled = np.rint(np.ldexp(arr, self.frac_bits))
        if not np.isfinite(scaled).all():
            bad = int(np.flatnonzero(~np.isfinite(scaled).reshape(-1))[0])
            raise EncodingError(f"value {arr.reshape(-1)[bad]} at flat index {bad} overflows at 2^{self.frac_bits}")
        biggest = float(np.max(np.abs(scaled))) if scaled.size else 0.0
        if self.max_bits is not None and biggest >= 2.0 ** self.max_bits:
            bad = int(np.argmax(np.abs(scaled).reshape(-1)))
            raise EncodingError(f"value {arr.reshape(-1)[bad]} at flat index {bad} needs more than "
                                f"{self.max_bits} bits at precision 2^-{self.frac_bits}")
        if biggest < 2.0 ** INT64_SAFE_BITS:
            return scaled.astype(np.int64)
        out = np.empty(scaled.shape, dtype=object)
        out.reshape(-1)[:] = [int(v) for v in scaled.reshape(-1)]  # floats are dyadic: int() is exact
        return out

    def decode(self, values: Any, frac_bits: int | None = None) -> np.ndarray:
        """float64 array v / 2^f (correctly rounded to the nearest double)."""
        f = self.frac_bits if frac_bits is None else frac_bits
        arr = np.asarray(values)
        if arr.dtype != object and arr.dtype.kind in "iu":
            if max_abs_int(arr) < (1 << 53):
                return np.ldexp(arr.astype(np.float64), -f)
            arr = arr.astype(object)
        out = np.empty(arr.shape, dtype=np.float64)
        flat = out.reshape(-1)
        for i, v in enumerate(arr.reshape(-1)):
            v = int(v)
            # int / 2^f with Python's correctly rounded true division (exact for exactly representable results)
            flat[i] = v / (1 << f) if f < 1024 else math.ldexp(float(v), -f)
        return out


# ------------------------------------------------------------------------------------------ packing

def max_slots(key_bits: int, slot_bits: int) -> int:
    """Most b-bit signed slots a plaintext of an n of `key_bits` bits can carry: (key_bits - 2) // b.

    The most negative packing, -sum_k 2^(b-1) 2^(bk), has magnitude just over 2^(bS-1); it must stay below
    n/2 >= 2^(key_bits-2) to decode with the right sign, hence bS <= key_bits - 2.
    """
    return (key_bits - 2) // slot_bits


class SlotCodec:
    """Packs signed integers into `num_slots` slots of `slot_bits` bits: P = sum_k v_k 2^(b k).

    Raw layer: no budget tracking. `pack` accepts any integers (the packing is linear mod n, so slots may
    hold intermediate values larger than a slot); it is the caller's job that the *decoded* values fit,
    i.e. |v| < 2^(b-1). `unpack` cannot check that in general (see its docstring): the guard is the bound
    tracking of :mod:`vfl.he.tensor` or the caller's own bounds.

    Rows can share a plaintext: :meth:`pack` with ``offset=o`` puts value k of a row at slot o + k, and
    :meth:`pack_grouped` puts ``num_slots // width`` consecutive rows in one plaintext.
    """

    def __init__(self, slot_bits: int, num_slots: int, key_bits: int | None = None):
        if slot_bits < 2 or num_slots < 1:
            raise LayoutError(f"a slot layout needs slot_bits >= 2 and num_slots >= 1, got {slot_bits}, {num_slots}")
        self.slot_bits = int(slot_bits)
        self.num_slots = int(num_slots)
        if key_bits is not None:
            self.check_key(key_bits)

    def __repr__(self) -> str:
        return f"SlotCodec(slot_bits={self.slot_bits}, num_slots={self.num_slots})"

    def __eq__(self, other: object) -> bool:
        return isinstance(other, SlotCodec) and (self.slot_bits, self.num_slots) == (other.slot_bits, other.num_slots)

    def __hash__(self) -> int:
        return hash((self.slot_bits, self.num_slots))

    @classmethod
    def for_key(cls, key_bits: int, slot_bits: int, num_slots: int | None = None) -> "SlotCodec":
        """As many slots as fit (or `num_slots`, checked) for an n of `key_bits` bits."""
        fit = max_slots(key_bits, slot_bits)
        if fit < 1:
            raise LayoutError(f"one {slot_bits}-bit slot does not fit a {key_bits}-bit key")
        return cls(slot_bits, fit if num_slots is None else num_slots, key_bits)

    @property
    def total_bits(self) -> int:
        return self.slot_bits * self.num_slots

    @property
    def max_value(self) -> int:
        """Largest magnitude a slot decodes exactly: 2^(b-1) - 1."""
        return (1 << (self.slot_bits - 1)) - 1

    def check_key(self, key_bits: int) -> None:
        """Refuse a layout that exceeds the plaintext space: b * S must be <= bits(n) - 1."""
        key_bits = int(key_bits)
        if self.total_bits > key_bits - 1:
            raise LayoutError(f"{self.num_slots} slots of {self.slot_bits} bits need {self.total_bits} bits, but a "
                              f"{key_bits}-bit key carries at most {key_bits - 1} (use at most "
                              f"{max_slots(key_bits, self.slot_bits)} slots)")

    # --- pack
    def pack(self, rows: Any, offset: int = 0) -> list[int]:
        """One plaintext per row; value k of a row goes to slot offset + k. Rows are 2-D [rows, width]."""
        arr = np.asarray(rows)
        if arr.ndim == 1:
            arr = arr[None, :]
        if arr.ndim != 2:
            raise LayoutError(f"pack expects a 2-D [rows, values] array, got shape {arr.shape}")
        width = arr.shape[1]
        if offset < 0 or offset + width > self.num_slots:
            raise LayoutError(f"a row of {width} values at slot offset {offset} does not fit {self.num_slots} slots")
        b = self.slot_bits
        shift = b * offset
        out = []
        for row in arr.tolist():
            acc = 0
            for v in reversed(row):
                acc = (acc << b) + int(v)
            out.append(acc << shift)
        return out

    def pack_grouped(self, rows: Any, width: int | None = None) -> list[int]:
        """Pack `num_slots // width` consecutive rows per plaintext (row t of a group at offset t*width)."""
        arr = np.asarray(rows)
        width = arr.shape[1] if width is None else width
        if arr.ndim != 2 or arr.shape[1] != width:
            raise LayoutError(f"pack_grouped expects rows of {width} values, got shape {arr.shape}")
        groups = self.num_slots // width
        if groups < 1:
            raise LayoutError(f"a row of {width} values does not fit {self.num_slots} slots")
        count = arr.shape[0]
        pad = (-count) % groups
        if pad:
            arr = np.concatenate([arr, np.zeros((pad, width), dtype=arr.dtype)])
        return self.pack(arr.reshape(-1, groups * width))

    # --- unpack
    def unpack(self, plaintexts: Iterable[int], n: int | None = None, strict: bool = True,
               what: str = "plaintext") -> np.ndarray:
        """[len, num_slots] object array of signed slot values.

        Plaintexts are centered integers (or residues mod `n`, centered here into (-n/2, n/2]).

        What `strict` detects, exactly: a plaintext P that is not of the form sum_k v_k 2^(b k) with every
        v_k in [-2^(b-1), 2^(b-1)), i.e. P outside [-2^(bS-1), 2^(bS-1)) -- bits left above the last slot --
        raises :class:`SlotOverflowError`. That is an overflow of the *top* slot (slot S - 1), or a carry from a
        lower slot that rippled through every slot above it. An overflow of any lower slot is NOT detected: it is
        decoded as the value wrapped into [-2^(b-1), 2^(b-1)) plus a carry of +-1 into the next slot, e.g. 8-bit
        slots [200, 0, 0, 0] decode as [-56, 1, 0, 0]; no decoder can tell that from genuine values. Nor is a
        sum that wrapped modulo n (|P| >= n/2). The guard against overflow is the budget: the bound tracking of
        :class:`vfl.he.tensor.EncryptedTensor` (refuses before computing) or, on the raw layer, the caller's own
        bounds; this check is only a partial second line of defence.
        """
        b, S = self.slot_bits, self.num_slots
        mask, half = (1 << b) - 1, 1 << (b - 1)
        full = 1 << b
        plains = [int(x) for x in plaintexts]
        out = np.empty((len(plains), S), dtype=object)
        half_n = None if n is None else int(n) // 2
        for i, x in enumerate(plains):
            if n is not None:
                x %= int(n)
                if x > half_n:
                    x -= int(n)
            row = out[i]
            for k in range(S):
                v = x & mask          # Python ints: two's complement semantics for negative x
                if v >= half:
                    v -= full
                row[k] = v
                x = (x - v) >> b
            if strict and x != 0:
                raise SlotOverflowError(f"{what} {i}: bits left above slot {S - 1} of {b}-bit slots; "
                                        "a slot overflowed (decoded values must satisfy |v| < 2^(b-1))")
        return out

    def unpack_grouped(self, plaintexts: Sequence[int], count: int, width: int, n: int | None = None,
                       strict: bool = True) -> np.ndarray:
        """Inverse of :meth:`pack_grouped`: the first `count` rows of `width` values."""
        groups = self.num_slots // width
        slots = self.unpack(plaintexts, n=n, strict=strict)[:, :groups * width]
        rows = slots.reshape(-1, width)
        if rows.shape[0] < count:
            raise LayoutError(f"expected {count} rows, the plaintexts hold {rows.shape[0]}")
        return rows[:count]


# ------------------------------------------------------------------------------------------ masks

def uniform_masks(shape: int | tuple[int, ...], bits: int) -> np.ndarray:
    """Object array of integers uniform in [0, 2^bits), from the OS CSPRNG (os.urandom)."""
    shape = (shape,) if isinstance(shape, int) else tuple(shape)
    count = math.prod(int(s) for s in shape)
    if bits < 1:
        raise EncodingError(f"mask width must be at least 1 bit, got {bits}")
    nbytes = (bits + 7) // 8
    top = (1 << bits) - 1
    raw = os.urandom(nbytes * count)
    out = np.empty(count, dtype=object)
    for i in range(count):
        out[i] = int.from_bytes(raw[i * nbytes:(i + 1) * nbytes], "little") & top
    return out.reshape(shape)


def statistical_mask_bits(value_bits: int, stat_bits: int = 40) -> int:
    """Mask width k = L + s that hides |x| < 2^L with statistical distance <= 2^-s."""
    return int(value_bits) + int(stat_bits)


def ring_masks(shape: int | tuple[int, ...], k: int, cover_bits: int = 40) -> np.ndarray:
    """Ring-variant masks r = u + 2^k t, u uniform in [0, 2^k), t uniform in [0, 2^cover_bits).

    The receiver keeps (x + r) mod 2^k = (x + u) mod 2^k, which is uniform whatever x is (perfect hiding of x
    mod 2^k). The bits above k hold t + carry; t hides the one-bit carry of x + u statistically (2^-cover_bits).
    A slot must have at least k + cover_bits + 2 bits to hold x + r without touching its neighbour.
    """
    u = uniform_masks(shape, k)
    if cover_bits <= 0:
        return u
    t = uniform_masks(shape, cover_bits)
    return u + t * (1 << k)


def reduce_mod_2k(values: Any, k: int, centered: bool = False) -> np.ndarray:
    """values mod 2^k per entry (in [0, 2^k), or in [-2^(k-1), 2^(k-1)) when `centered`)."""
    arr = np.asarray(values, dtype=object)
    m = (1 << k) - 1
    half, full = 1 << (k - 1), 1 << k
    out = np.empty(arr.shape, dtype=object)
    flat = out.reshape(-1)
    for i, v in enumerate(arr.reshape(-1)):
        r = int(v) & m
        flat[i] = r - full if centered and r >= half else r
    return out


def ring_reconstruct(share_a: Any, share_b: Any, k: int) -> np.ndarray:
    """x from two ring shares with x = a + b mod 2^k and |x| < 2^(k-1) (centered result)."""
    return reduce_mod_2k(np.asarray(share_a, dtype=object) + np.asarray(share_b, dtype=object), k, centered=True)
