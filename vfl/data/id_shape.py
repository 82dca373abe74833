"""Coarse shape statistics of an ID column, so that a PSI that finds (almost) nothing can say why.

When one party writes `1040` and another `1040.0` or `00001040`, PSI finds no common IDs and nothing else looks
wrong. Each party describes its own IDs by a handful of shares and one length, every passive party sends its
description to the active party, and the active party compares them when the intersection is small.

What crosses is deliberately coarse, and never an ID or part of one: seven shares rounded to tenths (0.0 .. 1.0)
of IDs that are digits only, look like decimals, are zero-padded digits, hold an upper- or lower-case letter,
inner whitespace or punctuation; the median length (capped at MAX_LENGTH); and whether all IDs have the same
length. `parse_shape` accepts exactly this from a peer and nothing more.
"""
from __future__ import annotations

import json
import re
from dataclasses import dataclass
from typing import Iterable, Sequence

from vfl.errors import ProtocolError

SHARES = ("digits", "decimal", "zero_padded", "upper", "lower", "space", "punct")
#: every string the wire form contains: key names only, never a value of the column
KEYS_ON_THE_WIRE = frozenset(SHARES) | {"shares", "median_length", "same_length"}
MAX_LENGTH = 64
MAX_WIRE_BYTES = 512
FEW = 0.1            # "few" common IDs: under 10 % of the smallest party's rows
DIFFERENT = 0.5      # a share differs between two parties when they are at least this far apart
LENGTH_GAP = 2       # median lengths differ when at least this many characters apart

_DECIMAL = re.compile(r"^[+-]?\d+\.\d+$|^[+-]?\d+(\.\d+)?[eE][+-]?\d+$")
_DESCRIBE = {
    "digits": "digits only",
    "decimal": "written as decimals ('1040.0')",
    "zero_padded": "zero-padded ('001040')",
    "upper": "with upper-case letters",
    "lower": "with lower-case letters",
    "space": "with spaces inside",
    "punct": "with punctuation such as '-', '_' or '.'",
}
_HINTS = {
    "decimal": "IDs written as decimals (pandas writes an integer column that has a missing value as '1040.0'): "
               "set `id_format: {integer: true}` on that party's dataset",
    "zero_padded": "zero-padded IDs: set `id_format: {integer: true}` where they are padded, or "
                   "`id_format: {pad: N}` where they are not",
    "upper": "letter case: set `id_format: {case: lower}` on every party's dataset (or `psi: {lowercase: true}` "
             "in the job spec)",
    "lower": "letter case: set `id_format: {case: lower}` on every party's dataset (or `psi: {lowercase: true}` "
             "in the job spec)",
    "digits": "digits only at some parties, letters at others: check that every party names the same ID column",
}


@dataclass(frozen=True)
class IdShape:
    shares: dict[str, float]
    median_length: int
    same_length: bool

    def to_wire(self) -> str:
        return json.dumps({"shares": self.shares, "median_length": self.median_length,
                           "same_length": self.same_length}, sort_keys=True, separators=(",", ":"))


def _has(pattern: str, value: str) -> bool:
    return re.search(pattern, value) is not None


def _features(value: str) -> dict[str, bool]:
    digits = value.isdigit()
    return {"digits": digits, "decimal": bool(_DECIMAL.match(value)),
            "zero_padded": digits and len(value) > 1 and value.startswith("0"),
            "upper": any(c.isupper() for c in value), "lower": any(c.islower() for c in value),
            "space": any(c.isspace() for c in value),
            "punct": any(not (c.isalnum() or c.isspace()) for c in value)}


def id_shape(ids: Iterable[str]) -> IdShape:
    """The coarse shape of these IDs (as PSI will compare them: pass them canonicalized)."""
    counts = dict.fromkeys(SHARES, 0)
    lengths: list[int] = []
    for value in ids:
        lengths.append(len(value))
        for key, present in _features(value).items():
            counts[key] += present
    n = max(len(lengths), 1)
    lengths.sort()
    median = lengths[len(lengths) // 2] if lengths else 0
    return IdShape(shares={k: round(counts[k] / n, 1) for k in SHARES}, median_length=min(median, MAX_LENGTH),
                   same_length=len(set(lengths)) <= 1)


def parse_shape(text: str, peer: str) -> IdShape | None:
    """A peer's shape as sent (None if it sent none); anything beyond the coarse fields is a ProtocolError."""
    if not text:
        return None
    if len(text.encode()) > MAX_WIRE_BYTES:
        raise ProtocolError(f"{peer}: ID shape of {len(text.encode())} bytes (at most {MAX_WIRE_BYTES})")
    try:
        data = json.loads(text)
        if not isinstance(data, dict) or set(data) != {"shares", "median_length", "same_length"}:
            raise ValueError("keys must be shares, median_length, same_length")
        shares, median, same = data["shares"], data["median_length"], data["same_length"]
        if not isinstance(shares, dict) or set(shares) != set(SHARES):
            raise ValueError(f"shares must have exactly the keys {list(SHARES)}")
        for key, value in shares.items():
            if isinstance(value, bool) or not isinstance(value, (int, float)) or value not in _TENTHS:
                raise ValueError(f"share {key!r} must be a tenth from 0.0 to 1.0, got {value!r}")
        if isinstance(median, bool) or not isinstance(median, int) or not 0 <= median <= MAX_LENGTH:
            raise ValueError(f"median_length must be an integer from 0 to {MAX_LENGTH}")
        if not isinstance(same, bool):
            raise ValueError("same_length must be true or false")
    except ValueError as exc:
        raise ProtocolError(f"{peer}: invalid ID shape: {exc}") from None
    return IdShape(shares={k: float(shares[k]) for k in SHARES}, median_length=median, same_length=same)


_TENTHS = {round(i / 10, 1) for i in range(11)}


def _differing(shapes: dict[str, IdShape]) -> list[str]:
    """The shares (and 'length') that differ between the parties, without the ones a root cause explains:
    '1040.0' is also "not digits only", "punctuated" and longer; '001040' is also longer."""
    keys = [k for k in SHARES
            if max(s.shares[k] for s in shapes.values()) - min(s.shares[k] for s in shapes.values()) >= DIFFERENT]
    lengths = [s.median_length for s in shapes.values()]
    if max(lengths) - min(lengths) >= LENGTH_GAP:
        keys.append("length")
    if "decimal" in keys:
        keys = [k for k in keys if k not in ("digits", "punct", "length")]
    if "zero_padded" in keys:
        keys = [k for k in keys if k != "length"]
    return keys


def shape_differences(shapes: dict[str, IdShape]) -> list[str]:
    """One phrase per way the parties' IDs differ, naming each party's share, e.g.
    "written as decimals ('1040.0'): bank-a 0%, bank-b 100%"."""
    if len(shapes) < 2:
        return []
    out = []
    for key in _differing(shapes):
        if key == "length":
            out.append("typical length: " + ", ".join(f"{p} {s.median_length} characters" for p, s in shapes.items()))
        else:
            out.append(f"{_DESCRIBE[key]}: " + ", ".join(f"{p} {s.shares[key]:.0%}" for p, s in shapes.items()))
    return out


def _hints(shapes: dict[str, IdShape]) -> list[str]:
    hints: list[str] = []
    for key in _differing(shapes):
        hint = _HINTS.get(key)
        if hint and hint not in hints:
            hints.append(hint)
    return hints


def intersection_note(common: int, rows: dict[str, int], shapes: dict[str, IdShape | None]) -> str | None:
    """Why a small intersection may be a format problem, or None when it is not small or the shapes agree.

    `rows`: each party's row count; `shapes`: each party's shape (None for a party that sent none).
    """
    smallest = min(rows.values()) if rows else 0
    if smallest == 0 or common >= FEW * smallest:
        return None
    known = {party: shape for party, shape in shapes.items() if shape is not None}
    differences = shape_differences(known)
    if not differences:
        return None
    text = "the parties' ID columns are shaped differently: " + "; ".join(differences)
    hints = _hints(known)
    if hints:
        text += ". To fix: " + "; ".join(hints)
    return text + " (only these shape statistics were compared; no IDs left any party)"


SAMPLE = 10_000   # IDs looked at per party: tenths need no more, and a 10M-row table must not wait for this


def shape_of_ids(ids: Sequence[str], strip: bool, lowercase: bool) -> IdShape:
    """The shape of (an evenly spaced sample of) these IDs as the job's PSI will compare them."""
    step = max(1, len(ids) // SAMPLE)
    sample = [str(ids[i]) for i in range(0, len(ids), step)]
    if strip:
        sample = [v.strip() for v in sample]
    if lowercase:
        sample = [v.lower() for v in sample]
    return id_shape(sample)


def note_for_active(common: int, active: str, own_ids: Sequence[str], strip: bool, lowercase: bool,
                    peer_rows: dict[str, int], peer_shapes: dict[str, IdShape | None]) -> str | None:
    """intersection_note from the active party's own IDs and what each passive party sent in OpenJobReply."""
    shapes = {active: shape_of_ids(own_ids, strip, lowercase), **peer_shapes}
    return intersection_note(common, {active: len(own_ids), **peer_rows}, shapes)
