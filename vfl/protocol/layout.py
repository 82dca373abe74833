"""Fixed-point scales and slot packing of the secure interactive layer, agreed once per job.

Packing and fixed point are vfl.he.packing's (the one codec); this module fixes the parameters.

Scales (powers of two):
  activations  H = round(clamp(h, +-bound) * 2^f_h)
  gradients    D = round(clamp(B * dL/dz, +-2^delta_range) * 2^f_g)       (per-example gradients)
  weights      shares U, V are stored at 2^f_s and used at 2^f_w (U >> (f_s - f_w))

Three slot layouts: forward (rows of m values of h W, with a checksum), backward (rows of d values of
delta W^T, with a checksum) and gradient (one row of h^T D + Q per ciphertext, split into several
ciphertexts per row when m is too wide for one: `gradient_ciphertexts_per_row`).
"""
from __future__ import annotations

import json
import math
from dataclasses import asdict, dataclass

from vfl.errors import ProtocolError, quote, shorten
from vfl.he.errors import LayoutError
from vfl.he.keys import ALLOWED_KEY_BITS
from vfl.he.packing import SlotLayout, plan

SHARE_FRACTION_BITS = 32  # weight shares are stored at 2^-32: updates round far below the 2^-14 in use


@dataclass(frozen=True)
class Layout:
    key_bits: int
    d: int                  # passive bottom output width
    m: int                  # interactive output width
    f_h: int                # activation fraction bits
    f_w: int                # weight fraction bits used in products
    f_s: int                # weight-share storage fraction bits
    f_g: int                # per-example gradient fraction bits
    f_lr: int               # learning-rate fixed-point bits
    activation_bound: float
    delta_range_bits: int   # |per-example gradient| <= 2^delta_range_bits
    output_range_bits: int  # |h W| and |delta W^T| must stay below 2^output_range_bits (checked by checksum)
    stat_bits: int          # statistical security of masks
    max_batch: int
    seed: int

    # --- derived bounds ------------------------------------------------------------------------
    @property
    def activation_bits(self) -> int:
        return self.f_h + math.ceil(math.log2(self.activation_bound)) + 1

    @property
    def delta_bits(self) -> int:
        return self.f_g + self.delta_range_bits + 1

    def forward_layout(self) -> SlotLayout:
        return plan(self.m, self.f_h + self.f_w + self.output_range_bits + 1, self.key_bits, True, self.seed)

    def backward_layout(self) -> SlotLayout:
        return plan(self.d, self.f_g + self.f_w + self.output_range_bits + 1, self.key_bits, True, self.seed + 1)

    def exponent_sum_bits(self) -> int:
        """sum_j |e_j| < 2^this for every product a party re-randomizes under its peer's key.

        The exponents are activations (|H| < 2^activation_bits) or per-example gradients (|D| < 2^delta_bits).
        A packed output ciphertext of z = H [W] combines d bases at each of its slot groups (d * groups terms),
        the weight gradient H^T [D] up to max_batch terms, the input gradient D [W^T] m * groups terms.
        Peer DJN re-randomization sizes its exponent from this (vfl.he.peer_djn_slack_bits).
        """
        forward_terms = self.d * self.forward_layout().groups
        backward_terms = self.m * self.backward_layout().groups
        activation_terms = max(forward_terms, self.max_batch, 2)
        return max(self.activation_bits + math.ceil(math.log2(activation_terms)),
                   self.delta_bits + math.ceil(math.log2(max(backward_terms, 2))))

    def gradient_bound_bits(self) -> int:
        """|h^T delta| < 2^this, from the clamps on h and delta and the batch size."""
        return self.activation_bits + self.delta_bits + math.ceil(math.log2(max(self.max_batch, 2)))

    def gradient_layout(self) -> SlotLayout:
        bits = self.gradient_bound_bits() + self.stat_bits + 2
        width = self.m
        while True:  # split a gradient row over several ciphertexts if it is too wide for one
            try:
                plan(width, bits, self.key_bits, False, self.seed + 2)
                # one gradient row per ciphertext: the rows come out of separate multi-exponentiations
                return SlotLayout(width=width, groups=1, slot_bits=bits, checksum=False, seed=self.seed + 2)
            except LayoutError:
                if width == 1:
                    raise
                width = -(-width // 2)

    def gradient_ciphertexts_per_row(self) -> int:
        """Ciphertexts that carry one row of m per-example gradients (or of h^T D + Q)."""
        return -(-self.m // self.gradient_layout().width)

    def to_json(self) -> bytes:
        return json.dumps(asdict(self), sort_keys=True).encode()

    @staticmethod
    def from_json(data: bytes) -> "Layout":
        try:
            values = json.loads(data)
            layout = Layout(**values)
        except (ValueError, TypeError) as exc:
            raise ProtocolError(f"setup: invalid layout parameters: {shorten(str(exc), 200)}") from None
        except RecursionError:  # JSON nested thousands deep
            raise ProtocolError("setup: invalid layout parameters: nested too deeply") from None
        layout.validate()
        return layout

    def validate(self) -> None:
        for name in ("d", "m", "f_h", "f_w", "f_s", "f_g", "f_lr", "delta_range_bits", "output_range_bits",
                     "stat_bits", "max_batch"):
            value = getattr(self, name)
            if not _is_int(value) or value < 1 or value > 1 << 20:
                raise ProtocolError(f"setup: layout.{name} = {quote(value)} is out of range")
        if not _is_int(self.key_bits) or self.key_bits not in ALLOWED_KEY_BITS:
            raise ProtocolError(f"setup: layout.key_bits = {quote(self.key_bits)} is not supported")
        if not _is_int(self.seed) or not 0 <= self.seed < 1 << 63:  # numpy seeds its generators with it
            raise ProtocolError(f"setup: layout.seed = {quote(self.seed)} is out of range")
        bound = self.activation_bound
        if isinstance(bound, bool) or not isinstance(bound, (int, float)) or not 1 <= bound <= 1024:
            raise ProtocolError(f"setup: layout.activation_bound = {quote(bound)} is out of range")
        if self.stat_bits < 40:
            raise ProtocolError("setup: statistical security below 40 bits is refused")
        if self.f_s < self.f_w:
            raise ProtocolError("setup: share storage precision must be at least the product precision")
        try:
            self.forward_layout(), self.backward_layout(), self.gradient_layout()
        except LayoutError as exc:
            raise ProtocolError(f"setup: layout does not fit the key: {exc}") from None


def _is_int(value) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def default_layout(key_bits: int, d: int, m: int, precision_bits: int, gradient_bits: int, stat_bits: int,
                   activation_bound: float, max_batch: int, seed: int) -> Layout:
    layout = Layout(key_bits=key_bits, d=d, m=m, f_h=precision_bits, f_w=precision_bits, f_s=SHARE_FRACTION_BITS,
                    f_g=gradient_bits, f_lr=24, activation_bound=float(activation_bound), delta_range_bits=4,
                    output_range_bits=10, stat_bits=stat_bits, max_batch=max_batch, seed=seed)
    layout.validate()
    return layout
