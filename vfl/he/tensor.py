"""Encrypted tensors with a precision and overflow budget.

An :class:`EncryptedTensor` holds a float tensor x as fixed-point integers v = round(x 2^f), packed along
one axis (`pack_axis`) into b-bit signed slots, S slots per Paillier ciphertext (:class:`SlotCodec`).

Layout: move `pack_axis` to the front, flatten the other axes to M columns; ciphertext g * M + m holds the
values x[g S : (g+1) S, m] in slots 0..S-1 (the last group is zero-padded).

Budget: every tensor carries its scale f and a bound B >= max |v| over all slots. An operation computes the
new bound *before* touching a ciphertext and refuses (:class:`OverflowBudgetError`) when B could exceed the
largest value a slot decodes exactly, 2^(b-1) - 1; so a result either decodes exactly or is never produced.

    x + y            f = max(f_x, f_y) (the other is rescaled by 2^d), B = B_x + B_y
    x + plain        B = B_x + max |round(plain 2^f)|
    k * x            int k: B = |k| B_x;  float k: encoded at 2^p, f += p, B = |round(k 2^p)| B_x
    x @ W  (pack 0)  W encoded at 2^p:  f += p,  B = B_x max_k sum_j |W_jk|      (multi-exponentiation)
    A @ x  (pack 1)  A encoded at 2^p:  f += p,  B = B_x max_i sum_j |A_ij|
    mask_uniform(k)  slot += r, r uniform in [0, 2^k):  B = B_x + 2^k
    ring mask (k)    needs B_x < 2^(k-1);  r = u + 2^k t:  B = B_x + 2^(k + cover_bits)

The budget is the guard. Decryption's check of the bits above the last slot (SlotCodec.unpack, strict) only
catches an overflow of the *top* slot; an overflow of a lower slot would decode as a wrapped value plus a carry
into the next slot, which no decoder can tell from a genuine value -- hence every operation checks first.
"""
from __future__ import annotations

import json
import math
import struct
from typing import Any

import numpy as np

from vfl.he.encoding import (FixedPoint, SlotCodec, as_int_array, like_input, max_abs_int, reduce_mod_2k,
                             ring_masks, to_numpy, uniform_masks)
from vfl.he.engine import PaillierEngine
from vfl.he.errors import KeyMismatchError, LayoutError, OverflowBudgetError, WireFormatError
from vfl.he.wire import DEFAULT_MAX_COUNT, ciphertexts_from_bytes, ciphertexts_to_bytes

DEFAULT_SLOT_BITS = 64
DEFAULT_PRECISION = 16
_MAGIC = b"VFLHE\x01"
_MAX_HEADER = 1 << 16
#: largest number of logical values a received tensor may declare (its shape's product)
DEFAULT_MAX_ELEMENTS = 1 << 31


def _is_scalar(x: Any) -> bool:
    return isinstance(x, (int, float, np.integer, np.floating)) or (hasattr(x, "ndim") and x.ndim == 0)


def _is_int_like(x: Any) -> bool:
    if isinstance(x, (bool, np.bool_)):
        return False
    if isinstance(x, (int, np.integer)):
        return True
    arr = x if isinstance(x, np.ndarray) else None
    if arr is None and hasattr(x, "dtype") and hasattr(x, "is_floating_point"):   # torch
        return not x.is_floating_point() and not x.is_complex()
    return arr is not None and (arr.dtype.kind in "iu" or (arr.dtype == object and arr.size > 0
                                                          and all(isinstance(v, (int, np.integer))
                                                                  for v in arr.reshape(-1))))


class EncryptedTensor:
    """A packed, encrypted fixed-point tensor with overflow budget tracking (see module docstring)."""

    __array_ufunc__ = None  # make numpy defer `ndarray @ EncryptedTensor` to __rmatmul__

    def __init__(self, engine: PaillierEngine, ciphertexts: list, shape: tuple[int, ...], pack_axis: int,
                 codec: SlotCodec, frac_bits: int, bound: int, torch_out: bool = False):
        self.engine = engine
        self.ciphertexts = ciphertexts
        self.shape = tuple(int(s) for s in shape)
        self.pack_axis = int(pack_axis)
        self.codec = codec
        self.frac_bits = int(frac_bits)
        self.bound = int(bound)
        self.torch_out = torch_out
        if len(ciphertexts) != self.ciphertext_count(self.shape, self.pack_axis, codec.num_slots):
            raise LayoutError(f"{len(ciphertexts)} ciphertexts do not match shape {self.shape} packed along "
                              f"axis {self.pack_axis} in {codec.num_slots} slots")

    # --- layout
    @staticmethod
    def ciphertext_count(shape: tuple[int, ...], pack_axis: int, num_slots: int) -> int:
        """Ciphertexts of a tensor of `shape` packed along `pack_axis`, exact (Python ints: no overflow)."""
        packed = int(shape[pack_axis])
        others = math.prod(int(s) for i, s in enumerate(shape) if i != pack_axis)
        return -(-packed // int(num_slots)) * others

    def _grid(self) -> tuple[int, int]:
        """(G, M): groups along the packed axis, columns of the other axes."""
        P = self.shape[self.pack_axis]
        M = math.prod(s for i, s in enumerate(self.shape) if i != self.pack_axis)
        return -(-P // self.codec.num_slots), M

    @staticmethod
    def _slot_rows(ints: np.ndarray, pack_axis: int, num_slots: int) -> np.ndarray:
        """[G*M, S] slot values of a logical integer array (see the layout in the module docstring)."""
        moved = np.moveaxis(ints, pack_axis, 0)
        P = moved.shape[0]
        flat = moved.reshape(P, -1)
        M = flat.shape[1]
        G = -(-P // num_slots)
        padded = np.zeros((G * num_slots, M), dtype=flat.dtype)
        padded[:P] = flat
        return padded.reshape(G, num_slots, M).transpose(0, 2, 1).reshape(G * M, num_slots)

    def _logical(self, rows: np.ndarray) -> np.ndarray:
        """Inverse of _slot_rows: [G*M, S] -> logical shape."""
        S = self.codec.num_slots
        G, M = self._grid()
        moved_shape = (self.shape[self.pack_axis],) + tuple(s for i, s in enumerate(self.shape) if i != self.pack_axis)
        flat = rows.reshape(G, M, S).transpose(0, 2, 1).reshape(G * S, M)[:self.shape[self.pack_axis]]
        return np.moveaxis(flat.reshape(moved_shape), 0, self.pack_axis)

    def _pack_plain(self, ints: np.ndarray) -> list[int]:
        return self.codec.pack(self._slot_rows(ints, self.pack_axis, self.codec.num_slots))

    # --- budget
    @property
    def bound_bits(self) -> int:
        return self.bound.bit_length()

    @property
    def headroom_bits(self) -> int:
        """How many more bits of growth the slots can take: (b - 1) - bits(B)."""
        return self.codec.slot_bits - 1 - self.bound_bits

    def _check(self, bound: int, op: str) -> int:
        if bound > self.codec.max_value:
            raise OverflowBudgetError(
                f"{op}: the result could reach {bound.bit_length()} bits per slot (|v| <= {bound}), but "
                f"{self.codec.slot_bits}-bit slots only hold |v| < 2^{self.codec.slot_bits - 1}; use wider slots "
                f"(slot_bits), a lower precision, or smaller operands")
        return bound

    def _derive(self, ciphertexts: list, frac_bits: int, bound: int) -> "EncryptedTensor":
        return EncryptedTensor(self.engine, ciphertexts, self.shape, self.pack_axis, self.codec, frac_bits, bound,
                               self.torch_out)

    def __repr__(self) -> str:
        return (f"EncryptedTensor(shape={self.shape}, pack_axis={self.pack_axis}, slots={self.codec.num_slots}x"
                f"{self.codec.slot_bits}b, scale=2^-{self.frac_bits}, bound_bits={self.bound_bits}, "
                f"ciphertexts={len(self.ciphertexts)})")

    # --- encryption
    @classmethod
    def encrypt(cls, engine: PaillierEngine, x: Any, precision: int = DEFAULT_PRECISION,
                slot_bits: int = DEFAULT_SLOT_BITS, num_slots: int | None = None, pack_axis: int = 0,
                max_bits: int | None = None) -> "EncryptedTensor":
        """Encode x (numpy or torch, any shape) at 2^-precision, pack along `pack_axis` and encrypt."""
        arr, was_torch = to_numpy(x)
        if arr.ndim == 0:
            arr = arr.reshape(1)
        ints = FixedPoint(precision, max_bits).encode(arr)
        return cls.encrypt_ints(engine, ints, frac_bits=precision, slot_bits=slot_bits, num_slots=num_slots,
                                pack_axis=pack_axis, _torch=was_torch)

    @classmethod
    def encrypt_ints(cls, engine: PaillierEngine, ints: Any, frac_bits: int = 0, slot_bits: int = DEFAULT_SLOT_BITS,
                     num_slots: int | None = None, pack_axis: int = 0, _torch: bool = False) -> "EncryptedTensor":
        """Encrypt an integer array whose values are already at scale 2^-frac_bits."""
        ints = as_int_array(ints)
        if ints.ndim == 0:
            ints = ints.reshape(1)
        if not -ints.ndim <= pack_axis < ints.ndim:
            raise LayoutError(f"pack_axis {pack_axis} is out of range for a {ints.ndim}-D tensor")
        pack_axis %= ints.ndim
        if 0 in ints.shape:
            raise LayoutError(f"cannot encrypt an empty tensor of shape {ints.shape}")
        codec = SlotCodec.for_key(engine.key_bits, slot_bits, num_slots)
        bound = max_abs_int(ints)
        if bound > codec.max_value:
            raise OverflowBudgetError(f"encrypt: a value needs {bound.bit_length()} bits at 2^-{frac_bits} but "
                                      f"{slot_bits}-bit slots hold |v| < 2^{slot_bits - 1}")
        plains = codec.pack(cls._slot_rows(ints, pack_axis, codec.num_slots))
        return cls(engine, engine.encrypt_ints(plains), ints.shape, pack_axis, codec, frac_bits, bound, _torch)

    # --- decryption
    def decrypt_ints(self) -> np.ndarray:
        """Exact integer slot values (object array, logical shape) at scale 2^-frac_bits."""
        plains = self.engine.decrypt_ints(self.ciphertexts)
        rows = self.codec.unpack(plains, strict=True, what="ciphertext")
        return self._logical(rows)

    def decrypt(self) -> Any:
        """Float values (numpy float64, or a torch float64 tensor when a torch tensor was encrypted)."""
        values = FixedPoint(self.frac_bits).decode(self.decrypt_ints())
        return like_input(values, self.torch_out)

    # --- arithmetic
    def _same_layout(self, other: "EncryptedTensor", op: str) -> None:
        if not self.engine.same_key(other.engine):
            raise KeyMismatchError(f"{op}: the tensors are encrypted under different public keys")
        if (self.shape, self.pack_axis, self.codec) != (other.shape, other.pack_axis, other.codec):
            raise LayoutError(f"{op}: layouts differ ({self.shape}/axis {self.pack_axis}/{self.codec} vs "
                              f"{other.shape}/axis {other.pack_axis}/{other.codec})")

    def rescale(self, frac_bits: int) -> "EncryptedTensor":
        """The same values at a finer scale 2^-frac_bits (multiplies slots by 2^(frac_bits - f))."""
        shift = int(frac_bits) - self.frac_bits
        if shift < 0:
            raise OverflowBudgetError(f"rescale: cannot lower the scale from 2^-{self.frac_bits} to 2^-{frac_bits} "
                                      "under encryption (that is a division)")
        if shift == 0:
            return self
        bound = self._check(self.bound << shift, f"rescale to 2^-{frac_bits}")
        return self._derive(self.engine.mul_scalar(self.ciphertexts, 1 << shift), int(frac_bits), bound)

    def add(self, other: Any) -> "EncryptedTensor":
        if isinstance(other, EncryptedTensor):
            self._same_layout(other, "add")
            f = max(self.frac_bits, other.frac_bits)
            self._check((self.bound << (f - self.frac_bits)) + (other.bound << (f - other.frac_bits)), "add")
            a, b = self.rescale(f), other.rescale(f)
            return self._derive(self.engine.add(a.ciphertexts, b.ciphertexts), f, a.bound + b.bound)
        return self.add_plain(other)

    def add_plain(self, other: Any) -> "EncryptedTensor":
        """x + plain (plain broadcast to x's shape, encoded at x's scale)."""
        arr, _ = to_numpy(other)
        try:
            arr = np.broadcast_to(arr, self.shape)
        except ValueError:
            raise LayoutError(f"add_plain: a plain of shape {arr.shape} does not broadcast to {self.shape}") from None
        ints = FixedPoint(self.frac_bits).encode(arr)
        bound = self._check(self.bound + max_abs_int(ints), "add_plain")
        return self._derive(self.engine.add_plain(self.ciphertexts, self._pack_plain(ints)), self.frac_bits, bound)

    def __add__(self, other: Any) -> "EncryptedTensor":
        return self.add(other)

    __radd__ = __add__

    def __neg__(self) -> "EncryptedTensor":
        return self._derive(self.engine.negate(self.ciphertexts), self.frac_bits, self.bound)

    def __sub__(self, other: Any) -> "EncryptedTensor":
        if isinstance(other, EncryptedTensor):
            return self.add(-other)
        arr, _ = to_numpy(other)
        return self.add_plain(-arr)

    def __rsub__(self, other: Any) -> "EncryptedTensor":
        return (-self).add_plain(other)

    def mul(self, scalar: Any, precision: int | None = None) -> "EncryptedTensor":
        """k * x for a plain scalar k: integers exactly, floats encoded at 2^-precision (default: x's)."""
        if not _is_scalar(scalar):
            raise LayoutError("mul: only a plain scalar can multiply a packed tensor (slots share the exponent); "
                              "use matmul for matrices")
        if _is_int_like(scalar) or (hasattr(scalar, "dtype") and np.asarray(scalar).dtype.kind in "iu"):
            k, f = int(scalar), self.frac_bits
        else:
            p = self.frac_bits if precision is None else precision
            k, f = int(FixedPoint(p).encode(np.asarray(float(scalar)))), self.frac_bits + p
        bound = self._check(self.bound * abs(k), f"mul by {scalar}")
        return self._derive(self.engine.mul_scalar(self.ciphertexts, k), f, bound)

    def __mul__(self, scalar: Any) -> "EncryptedTensor":
        return self.mul(scalar)

    __rmul__ = __mul__

    def _encode_plain_matrix(self, plain: Any, precision: int | None) -> tuple[np.ndarray, int]:
        if _is_int_like(plain):
            return as_int_array(np.asarray(plain) if not hasattr(plain, "numpy") else plain.numpy()), 0
        p = self.frac_bits if precision is None else precision
        return FixedPoint(p).encode(plain), p

    def matmul(self, plain: Any, precision: int | None = None) -> "EncryptedTensor":
        """x @ W for a 2-D x packed along axis 0 and a plain matrix W (float at 2^-precision, or integers)."""
        if len(self.shape) != 2 or self.pack_axis != 0:
            raise LayoutError("matmul (x @ W) needs a 2-D tensor packed along axis 0 (the batch axis); "
                              f"this one has shape {self.shape} packed along axis {self.pack_axis}")
        W, p = self._encode_plain_matrix(plain, precision)
        if W.ndim != 2 or W.shape[0] != self.shape[1]:
            raise LayoutError(f"matmul: cannot multiply {self.shape} by a plain matrix of shape {W.shape}")
        d, m = W.shape
        col_sums = [sum(abs(int(v)) for v in W[:, k]) for k in range(m)]
        bound = self._check(self.bound * max(col_sums), f"matmul by a {d}x{m} matrix at 2^-{p}")
        G, _ = self._grid()
        E = np.zeros((G * m, G * d), dtype=W.dtype)
        for g in range(G):                       # block g: outputs g*m + k from bases g*d + j
            E[g * m:(g + 1) * m, g * d:(g + 1) * d] = W.T
        out = self.engine.multiexp(self.ciphertexts, E)
        return EncryptedTensor(self.engine, out, (self.shape[0], m), 0, self.codec, self.frac_bits + p, bound,
                               self.torch_out)

    def rmatmul(self, plain: Any, precision: int | None = None) -> "EncryptedTensor":
        """A @ x for a 2-D x packed along axis 1 and a plain matrix A."""
        if len(self.shape) != 2 or self.pack_axis != 1:
            raise LayoutError("rmatmul (A @ x) needs a 2-D tensor packed along axis 1; this one has shape "
                              f"{self.shape} packed along axis {self.pack_axis}")
        A, p = self._encode_plain_matrix(plain, precision)
        if A.ndim != 2 or A.shape[1] != self.shape[0]:
            raise LayoutError(f"rmatmul: cannot multiply a plain matrix of shape {A.shape} by {self.shape}")
        P, R = A.shape
        row_sums = [sum(abs(int(v)) for v in A[i]) for i in range(P)]
        bound = self._check(self.bound * max(row_sums), f"rmatmul by a {P}x{R} matrix at 2^-{p}")
        H, _ = self._grid()                      # ciphertext h * R + r holds row r, columns h*S..h*S+S-1
        if H == 1:
            E = A
        else:
            E = np.zeros((H * P, H * R), dtype=A.dtype)
            for h in range(H):                   # block h: outputs h*P + i from bases h*R + r
                E[h * P:(h + 1) * P, h * R:(h + 1) * R] = A
        out = self.engine.multiexp(self.ciphertexts, E)
        return EncryptedTensor(self.engine, out, (P, self.shape[1]), 1, self.codec, self.frac_bits + p, bound,
                               self.torch_out)

    def __matmul__(self, plain: Any) -> "EncryptedTensor":
        return self.matmul(plain)

    def __rmatmul__(self, plain: Any) -> "EncryptedTensor":
        return self.rmatmul(plain)

    def sum(self, axis: int) -> "EncryptedTensor":
        """Sum over a non-packed axis of a 2-D tensor (a matmul with ones)."""
        if len(self.shape) != 2 or axis == self.pack_axis:
            raise LayoutError("sum: only over the non-packed axis of a 2-D tensor")
        if axis == 1:
            return self.matmul(np.ones((self.shape[1], 1), dtype=np.int64))
        return self.rmatmul(np.ones((1, self.shape[0]), dtype=np.int64))

    # --- randomness and masking
    def rerandomize(self) -> "EncryptedTensor":
        """Fresh encryption randomness on every ciphertext (do this before sending a computed result)."""
        return self._derive(self.engine.rerandomize(self.ciphertexts), self.frac_bits, self.bound)

    def mask_uniform(self, k: int | None = None, stat_bits: int = 40, ring: bool = False,
                     cover_bits: int = 40) -> tuple["EncryptedTensor", np.ndarray]:
        """(x + r, r): a fresh uniform mask per element, added under encryption.

        Statistical variant (default): r uniform in [0, 2^k), k = bits(B) + stat_bits unless given; the
        decryptor learns x + r, which hides x to within 2^-stat_bits.
        Ring variant (``ring=True``, k required): r = u + 2^k t (see encoding.ring_masks); the decryptor keeps
        (x + r) mod 2^k (:func:`vfl.he.encoding.reduce_mod_2k`), perfectly uniform, and x = that - r mod 2^k.
        The ring must hold the values: the bound B must satisfy B < 2^(k-1), else OverflowBudgetError.
        The mask is returned as an object array of integers at the tensor's scale 2^-frac_bits.
        """
        if ring:
            if k is None:
                raise ValueError("mask_uniform(ring=True) needs the ring width k")
            if k < 1 or self.bound >= 1 << (k - 1):
                raise OverflowBudgetError(
                    f"mask_uniform(ring=True, k={k}): values up to |v| <= {self.bound} ({self.bound_bits} bits at "
                    f"2^-{self.frac_bits}) do not fit the ring Z_2^{k}, whose shares reconstruct only |v| < "
                    f"2^{k - 1}; use k >= {self.bound_bits + 1}")
            r = ring_masks(self.shape, k, cover_bits)
            top = 1 << (k + cover_bits) if cover_bits > 0 else 1 << k
        else:
            k = self.bound_bits + stat_bits if k is None else k
            r = uniform_masks(self.shape, k)
            top = 1 << k
        bound = self._check(self.bound + top, f"mask_uniform(k={k})")
        masked = self._derive(self.engine.add_plain(self.ciphertexts, self._pack_plain(r)), self.frac_bits, bound)
        return masked, r

    @staticmethod
    def ring_reduce(values: Any, k: int) -> np.ndarray:
        """The decryptor's ring share: values mod 2^k."""
        return reduce_mod_2k(values, k)

    # --- wire
    def to_bytes(self) -> bytes:
        """Header (magic, JSON layout) followed by the fixed-width ciphertexts.

        Refuses (MalformedCiphertextError) a tensor with a ciphertext that carries no randomness (c = 1 mod n,
        e.g. after ``* 0`` or a product with an all-zero matrix column): call :meth:`rerandomize` first.
        """
        header = json.dumps({"shape": list(self.shape), "pack_axis": self.pack_axis,
                             "slot_bits": self.codec.slot_bits, "num_slots": self.codec.num_slots,
                             "frac_bits": self.frac_bits, "bound": str(self.bound), "torch": self.torch_out,
                             "key_bits": self.engine.key_bits}, separators=(",", ":")).encode()
        return _MAGIC + struct.pack(">I", len(header)) + header + ciphertexts_to_bytes(self.ciphertexts,
                                                                                       self.engine.public_key)

    @classmethod
    def from_bytes(cls, engine: PaillierEngine, data: bytes, max_count: int = DEFAULT_MAX_COUNT,
                   max_elements: int = DEFAULT_MAX_ELEMENTS) -> "EncryptedTensor":
        """Parse and validate a tensor sent by :meth:`to_bytes` under `engine`'s key.

        The declared shape may hold at most `max_elements` values and need at most `max_count` ciphertexts;
        both are computed exactly (Python integers) before any ciphertext is parsed.
        """
        data = bytes(data)
        if len(data) < len(_MAGIC) + 4 or not data.startswith(_MAGIC):
            raise WireFormatError("encrypted tensor: bad magic (not a vfl.he tensor, or an unsupported version)")
        (hlen,) = struct.unpack(">I", data[len(_MAGIC):len(_MAGIC) + 4])
        start = len(_MAGIC) + 4
        if hlen > _MAX_HEADER or start + hlen > len(data):
            raise WireFormatError(f"encrypted tensor: header length {hlen} is out of range")
        try:
            h = json.loads(data[start:start + hlen])
            shape = tuple(h["shape"])
            pack_axis, slot_bits, num_slots = h["pack_axis"], h["slot_bits"], h["num_slots"]
            frac_bits, bound, key_bits, torch_out = h["frac_bits"], int(h["bound"]), h["key_bits"], h["torch"]
        except (ValueError, KeyError, TypeError) as exc:
            raise WireFormatError(f"encrypted tensor: malformed header ({exc})") from None
        ints_ok = all(isinstance(v, int) and not isinstance(v, bool)
                      for v in (*shape, pack_axis, slot_bits, num_slots, frac_bits, key_bits))
        if not ints_ok or not 1 <= len(shape) <= 8 or any(not 1 <= s <= 1 << 31 for s in shape):
            raise WireFormatError(f"encrypted tensor: invalid shape {shape!r}")
        if not 0 <= pack_axis < len(shape):
            raise WireFormatError(f"encrypted tensor: pack_axis {pack_axis} is out of range for shape {shape}")
        if key_bits != engine.key_bits:
            raise WireFormatError(f"encrypted tensor: sent under a {key_bits}-bit key, this key has {engine.key_bits}")
        if not 0 <= frac_bits <= 1000 or not isinstance(torch_out, bool):
            raise WireFormatError(f"encrypted tensor: invalid scale 2^-{frac_bits}")
        try:
            codec = SlotCodec(slot_bits, num_slots, engine.key_bits)
        except (LayoutError, TypeError) as exc:
            raise WireFormatError(f"encrypted tensor: invalid slot layout ({exc})") from None
        if not 0 <= bound <= codec.max_value:
            raise WireFormatError(f"encrypted tensor: value bound of {bound.bit_length()} bits does not fit its "
                                  f"{slot_bits}-bit slots")
        elements = math.prod(shape)
        if elements > max_elements:
            raise WireFormatError(f"encrypted tensor: shape {list(shape)} declares {elements} values, over the limit "
                                  f"of {max_elements}")
        count = cls.ciphertext_count(shape, pack_axis, num_slots)
        if count > max_count:
            raise WireFormatError(f"encrypted tensor: shape {list(shape)} needs {count} ciphertexts, over the limit "
                                  f"of {max_count}")
        cts = ciphertexts_from_bytes(data[start + hlen:], engine.public_key, count=count, max_count=max_count)
        return cls(engine, cts, shape, pack_axis, codec, frac_bits, bound, torch_out)


def encrypt(engine: PaillierEngine, x: Any, **kwargs: Any) -> EncryptedTensor:
    """Shorthand for :meth:`EncryptedTensor.encrypt`."""
    return EncryptedTensor.encrypt(engine, x, **kwargs)


__all__ = ["EncryptedTensor", "encrypt"]
