"""Canonical IDs per dataset (`id_format:` in a node config's dataset entry).

PSI matches IDs as exact text, so the same customer written `1040` at one party and `1040.0` (what pandas writes
for an integer column that has a missing value), `00001040` or ` 1040` at another is two different customers. A
dataset's `id_format` rewrites this party's IDs into the form the parties agreed on before anything else sees
them: PSI, the split by ID and the saved alignment all use the rewritten IDs. Each party configures its own
dataset, so no party needs to see another's IDs to agree.

Steps, in this order (each optional):
  strip:   remove surrounding whitespace
  case:    lower | upper
  integer: integer-like values in their plain form: '1040.0', '00001040', '+1040', '1.04e3' -> '1040';
           any other value is an error naming its row
  pad:     left-pad with '0' to this many characters ('1040' -> '00001040' for pad: 8), as str.zfill does
"""
from __future__ import annotations

import re
from dataclasses import dataclass
from decimal import Decimal, InvalidOperation

import numpy as np

from vfl.data.columns import Where
from vfl.errors import ConfigError, quote

CASES = ("lower", "upper")
MAX_PAD = 64
_NUMBER = re.compile(r"^[+-]?(\d+(\.\d*)?|\.\d+)([eE][+-]?\d+)?$")
_MAX_DIGITS = 64   # an exponent like 1e999999 must not become a million-digit ID


@dataclass(frozen=True)
class IdFormat:
    strip: bool = False
    case: str | None = None
    integer: bool = False
    pad: int | None = None

    @property
    def active(self) -> bool:
        return self.strip or self.case is not None or self.integer or self.pad is not None

    def apply(self, ids: np.ndarray, where: Where) -> np.ndarray:
        """The canonical form of every ID; the first one that cannot be converted is a DataError naming its row."""
        if not self.active:
            return ids
        out = np.empty(len(ids), dtype=object)
        for i, value in enumerate(ids):
            out[i] = self.one(value, where, i)
        return out

    def one(self, value: str, where: Where, i: int) -> str:
        if self.strip:
            value = value.strip()
        if self.case == "lower":
            value = value.lower()
        elif self.case == "upper":
            value = value.upper()
        if self.integer:
            value = _plain_integer(value, where, i)
        if self.pad is not None:
            value = value.zfill(self.pad)
        if not value:
            raise where.error(i, "id is empty after id_format")
        return value


def _plain_integer(value: str, where: Where, i: int) -> str:
    text = value.strip()
    if not _NUMBER.match(text):
        raise where.error(i, f"id {value!r} is not an integer (id_format.integer expects values such as "
                             "'1040', '1040.0' or '001040')")
    try:
        number = Decimal(text)
        if abs(number.adjusted()) > _MAX_DIGITS:
            raise InvalidOperation
        integral = number.to_integral_value()
    except InvalidOperation:
        raise where.error(i, f"id {value!r} is not an integer of at most {_MAX_DIGITS} digits") from None
    if number != integral:
        raise where.error(i, f"id {value!r} has a fractional part, so it is not an integer (id_format.integer)")
    return str(int(integral))


def parse_id_format(data, where: str) -> IdFormat | None:
    """`id_format:` of a dataset entry: a mapping of the steps above (unknown keys are refused)."""
    if data is None:
        return None
    if not isinstance(data, dict):
        raise ConfigError(f"{where}: must be a mapping such as {{integer: true}}, got {quote(data)}")
    unknown = sorted(set(map(str, data)) - {"strip", "case", "integer", "pad"})
    if unknown:
        raise ConfigError(f"{where}: unknown key(s) {unknown} (known: strip, case, integer, pad)")
    for key in ("strip", "integer"):
        if key in data and not isinstance(data[key], bool):
            raise ConfigError(f"{where}.{key}: must be true or false, got {quote(data[key])}")
    case = data.get("case")
    if case is not None and case not in CASES:
        raise ConfigError(f"{where}.case: must be one of {list(CASES)}, got {quote(case)}")
    pad = data.get("pad")
    if pad is not None and (isinstance(pad, bool) or not isinstance(pad, int) or not 1 <= pad <= MAX_PAD):
        raise ConfigError(f"{where}.pad: must be a width from 1 to {MAX_PAD}, got {quote(pad)}")
    return IdFormat(strip=bool(data.get("strip", False)), case=case, integer=bool(data.get("integer", False)),
                    pad=pad)
