"""Coarse ID shapes: what they hold (only fixed keys, tenths and a capped length), how a peer's is checked, and
when they explain a small intersection."""
from __future__ import annotations

import json
import re

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from vfl.data.id_shape import (KEYS_ON_THE_WIRE, MAX_LENGTH, SHARES, IdShape, id_shape, intersection_note,
                               parse_shape, shape_of_ids)
from vfl.errors import ProtocolError

INTS = [str(100000 + 37 * i) for i in range(200)]


def test_shares_are_rounded_to_tenths():
    shape = id_shape(["1040", "1041.0", "C-7", "0042"])
    assert shape.shares == {"digits": 0.5, "decimal": 0.2, "zero_padded": 0.2, "upper": 0.2, "lower": 0.0,
                            "space": 0.0, "punct": 0.5}
    assert shape.median_length == 4 and shape.same_length is False
    assert id_shape(["x" * 500]).median_length == MAX_LENGTH


@settings(max_examples=200, deadline=None)
@given(st.lists(st.text(min_size=1, max_size=40), min_size=1, max_size=30))
def test_the_wire_form_holds_no_text_of_the_ids(ids):
    """Whatever the IDs, the only strings in the JSON are the fixed key names, and every value is a number or a
    boolean: there is no field an ID, or any part of one, could travel in."""
    wire = id_shape(ids).to_wire()
    data = json.loads(wire)
    strings = set(re.findall(r'"((?:[^"\\]|\\.)*)"', wire))
    assert strings <= KEYS_ON_THE_WIRE
    assert all(isinstance(v, float) and v in {i / 10 for i in range(11)} for v in data["shares"].values())
    assert isinstance(data["median_length"], int) and isinstance(data["same_length"], bool)
    assert parse_shape(wire, "peer") == id_shape(ids)


@pytest.mark.parametrize("text, problem", [
    ('{"shares": {}, "median_length": 4, "same_length": true}', "shares must have exactly the keys"),
    ('{"median_length": 4, "same_length": true}', "keys must be"),
    ('{"shares": %s, "median_length": 4, "same_length": true, "sample": "1040"}', "keys must be"),
    ('{"shares": %s, "median_length": "4", "same_length": true}', "median_length"),
    ('{"shares": %s, "median_length": 4, "same_length": 1}', "same_length"),
    ('{"shares": %s, "median_length": 999, "same_length": true}', "median_length"),
    ("[1, 2]", "keys must be"),
    ("not json", "Expecting value"),
])
def test_a_peer_cannot_send_more_than_the_coarse_fields(text, problem):
    shares = json.dumps(dict.fromkeys(SHARES, 0.5))
    with pytest.raises(ProtocolError) as info:
        parse_shape(text % shares if "%s" in text else text, "bank-b")
    assert "bank-b" in str(info.value) and problem in str(info.value)


def test_shares_off_the_tenths_grid_are_refused():
    shares = dict.fromkeys(SHARES, 0.5)
    shares["digits"] = 0.123456   # finer than a tenth: could carry more than the coarse share
    with pytest.raises(ProtocolError, match="tenth"):
        parse_shape(json.dumps({"shares": shares, "median_length": 4, "same_length": True}), "bank-b")
    with pytest.raises(ProtocolError, match="at most 512"):
        parse_shape(" " * 600, "bank-b")
    assert parse_shape("", "bank-b") is None   # an older node sends none


def note(ids_a, ids_b, common=0):
    return intersection_note(common, {"a": len(ids_a), "b": len(ids_b)}, {"a": id_shape(ids_a), "b": id_shape(ids_b)})


def test_decimals_are_named_with_the_fix():
    text = note(INTS, [i + ".0" for i in INTS])
    assert "written as decimals ('1040.0'): a 0%, b 100%" in text and "id_format: {integer: true}" in text
    assert "digits only" not in text and "typical length" not in text   # the decimals explain both
    assert "no IDs left any party" in text


def test_zero_padding_and_case_are_named():
    assert "zero-padded ('001040'): a 0%, b 100%" in note(INTS, ["00" + i for i in INTS])
    assert "pad: N" in note(INTS, ["00" + i for i in INTS])
    upper = [f"C{i}" for i in INTS]
    text = note(upper, [u.lower() for u in upper])
    assert "with upper-case letters: a 100%, b 0%" in text and "case: lower" in text


def test_lengths_alone_are_named():
    assert "typical length: a 6 characters, b 9 characters" in note(INTS, [i + "123" for i in INTS])


def test_no_note_when_the_shapes_agree_or_the_intersection_is_not_small():
    assert note(INTS, [str(int(i) + 1) for i in INTS]) is None             # disjoint, but shaped alike
    assert note(INTS, [i + ".0" for i in INTS], common=50) is None          # 25 % of the smaller set
    assert note(INTS, [i + ".0" for i in INTS], common=19) is not None      # under 10 %
    assert intersection_note(0, {"a": 5, "b": 5}, {"a": id_shape(INTS), "b": None}) is None   # nothing to compare


def test_the_shape_follows_the_psi_canonicalization_and_samples_large_columns():
    assert shape_of_ids([" AB1 "] * 3, strip=True, lowercase=True) == id_shape(["ab1"] * 3)
    big = [str(10**9 + i) for i in range(100_000)]
    assert shape_of_ids(big, True, False) == IdShape(shares={**dict.fromkeys(SHARES, 0.0), "digits": 1.0},
                                                     median_length=10, same_length=True)
