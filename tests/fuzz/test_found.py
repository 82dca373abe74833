"""What the fuzz targets found, kept as plain tests (each failed on the code before its fix).

Every one of these was an exception outside the project's error classes, raised by input a peer controls: the node
turned it into an "internal error" with an error id (and a traceback in its log) instead of a clear refusal.
"""
from __future__ import annotations

import json

import pytest

from vfl.errors import ConfigError, ProtocolError
from vfl.job.spec import interactive_layout, parse_job_spec
from vfl.protocol.layout import Layout, default_layout
from vfl.protocol.messages import decode_int_matrix

BASE = {"active": "a", "parties": {"a": {"dataset": "x"}, "b": {"dataset": "y"}}, "crypto": {"key_bits": 1024}}
LAYOUT = json.loads(default_layout(1024, 4, 4, 14, 16, 40, 32.0, 64, 0).to_json())


@pytest.mark.parametrize("section", ["train", "split"])
def test_a_negative_seed_is_refused_by_the_spec_parser(section):
    """Before: `train.seed: -1` passed the parser, and the job failed at its first batch with numpy's
    "ValueError: expected non-negative integer" (the layout's checksum weights are seeded with it)."""
    with pytest.raises(ConfigError, match=rf"^{section}\.seed: must be >= 0"):
        parse_job_spec({**BASE, section: {"seed": -1}})
    spec = parse_job_spec({**BASE, "train": {"seed": 2**63 - 1}})
    interactive_layout(spec, spec.party("b"), spec.train.seed).forward_layout().weights()


@pytest.mark.parametrize("field, value, before", [
    ("activation_bound", None, "TypeError: must be real number, not NoneType"),
    ("activation_bound", -4.0, "ValueError: math domain error"),
    ("activation_bound", "32", "TypeError"),
    ("seed", -1, "ValueError: expected non-negative integer"),
    ("seed", "0", "TypeError: can only concatenate str"),
    ("key_bits", 1024.0, "a float key size passed `in ALLOWED_KEY_BITS`"),
    ("d", True, "a bool passed isinstance(value, int)"),
])
def test_a_setup_layout_with_a_bad_field_is_refused(field, value, before):
    """The active party sends the layout in Setup; the passive party checked only its integer fields' ranges."""
    with pytest.raises(ProtocolError, match=rf"layout\.{field} = .* (is out of range|is not supported)"):
        Layout.from_json(json.dumps({**LAYOUT, field: value}).encode())


@pytest.mark.parametrize("decode", [lambda text: Layout.from_json(text),
                                    lambda text: decode_int_matrix(text, (2, 2), 64)], ids=["layout", "share"])
def test_json_nested_thousands_deep_is_refused(decode):
    """Before: json.loads raised RecursionError, which neither decoder caught."""
    with pytest.raises(ProtocolError, match="nested too deeply"):
        decode(b"[" * 5000 + b"]" * 5000)


@pytest.mark.parametrize("values, before", [('["Infinity", 1, 2, 3]', "ValueError (caught)"),
                                            ("[Infinity, 1, 2, 3]", "OverflowError: cannot convert float infinity"),
                                            ("[1.5, 1, 2, 3]", "silently truncated to 1"),
                                            ("[true, 1, 2, 3]", "read as 1")])
def test_the_masked_initial_share_takes_integers_only(values, before):
    """Found by `make fuzz` (the long profile): json.loads reads Infinity as a float, and int() of it raised
    OverflowError; a float entry was truncated without a word."""
    with pytest.raises(ProtocolError, match="invalid masked initial share"):
        decode_int_matrix(f'{{"shape": [2, 2], "values": {values}}}'.encode(), (2, 2), 64)
    assert decode_int_matrix(b'{"shape": [2, 2], "values": ["-7", 1, "2", 3]}', (2, 2), 64).tolist() == [[-7, 1], [2, 3]]


@pytest.mark.parametrize("text", ["model: {bottom: {1: x, hidden: [4]}}", "train: {null: 1, epochs: 2}",
                                  "crypto: {true: 1, 2.5: 2, key_bits: 1024}"])
def test_a_section_with_keys_that_are_not_strings_is_refused(text):
    """Found by atheris (make fuzz): an unknown key that is a number, null or a boolean beside string keys made
    Section.reject_unknown sort mixed types and raise TypeError."""
    from vfl.job.spec import parse_job_spec_yaml
    spec = "job_id: k1\nactive: a\nparties: {a: {dataset: x}, b: {dataset: y}}\n"
    with pytest.raises(ConfigError, match="unknown key"):
        parse_job_spec_yaml(spec + text + "\n")
