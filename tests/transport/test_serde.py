"""Typed messages and node.proto agree field for field, and convert both ways without loss."""
from __future__ import annotations

import dataclasses

import pytest

from vfl.protocol.messages import MESSAGE_TYPES
from vfl.transport import serde


def _sample(field: dataclasses.Field, index: int):
    kind = str(field.type)
    if "bytes" in kind:
        return bytes([index % 256]) * (index + 1)
    if "str" in kind:
        return f"value-{index}"
    if "bool" in kind:
        return True
    return index + 7


@pytest.mark.parametrize("name", sorted(MESSAGE_TYPES))
def test_every_message_has_the_fields_of_its_protobuf(name):
    cls = MESSAGE_TYPES[name]
    proto_fields = {f.name for f in serde.pb_type(cls).DESCRIPTOR.fields}
    assert {f.name for f in dataclasses.fields(cls)} == proto_fields


@pytest.mark.parametrize("name", sorted(MESSAGE_TYPES))
def test_round_trip_keeps_every_field(name):
    cls = MESSAGE_TYPES[name]
    message = cls(**{f.name: _sample(f, i) for i, f in enumerate(dataclasses.fields(cls))})
    wire = serde.to_pb(message).SerializeToString()
    parsed = serde.pb_type(cls)()
    parsed.ParseFromString(wire)
    assert serde.from_pb(parsed) == message
