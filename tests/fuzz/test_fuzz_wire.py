"""Fuzz the decoders of what arrives over gRPC (issue 15, item 8): a peer controls every byte of it.

Targets: the chunk stream (vfl.transport.chunking.read_payloads / read_one / parse) into every node.proto message a
node receives, their conversion to typed messages (vfl.transport.serde.from_pb), the payload codecs of the typed
messages (rows, floats, the masked initial share), the Setup layout (Layout.from_json) and the peer's public key
(paillier.peer_key); and PSI's envelope decoder (psi.transport.codec.decode). Each may refuse its input only with
the project's errors (VflError for vfl, PsiError for psi).
"""
from __future__ import annotations

import json

from hypothesis import assume, given
from hypothesis import strategies as st

from psi.errors import PsiError
from psi.transport import psi_pb2
from psi.transport.codec import decode
from tests.fuzz.profiles import FUZZ
from vfl.errors import VflError
from vfl.protocol.layout import Layout, default_layout
from vfl.protocol.messages import REPLY_TO, decode_floats, decode_int_matrix, decode_rows
from vfl.transport import serde
from vfl.transport.chunking import read_one, read_payloads
from vfl.transport.proto import node_pb2 as pb
from vfl.compute import LocalCompute

# every message a node decodes: the Party service's requests (passive side) and replies (active side), job events
MESSAGE_TYPES = sorted({serde.pb_type(t) for pair in REPLY_TO.items() for t in pair} | {pb.JobSubmit, pb.JobWatch},
                       key=lambda t: t.__name__)
REQUEST_TYPES = [serde.pb_type(t) for t in REPLY_TO]

def repeated(field) -> bool:
    """Whether a protobuf field is repeated (protobuf 7 has is_repeated; earlier versions only the label)."""
    flag = getattr(field, "is_repeated", None)
    return flag if flag is not None else field.label == field.LABEL_REPEATED


chunks = st.lists(st.builds(pb.Chunk, data=st.binary(max_size=300), last=st.booleans()), max_size=6)


@FUZZ
@given(stream=chunks, message_type=st.sampled_from(MESSAGE_TYPES), limit=st.integers(0, 2000))
def test_chunk_streams_decode_or_refuse(stream, message_type, limit):
    try:
        message = read_one(iter(stream), message_type, max_bytes=limit)
    except VflError:
        return
    if message_type in REQUEST_TYPES or message_type.DESCRIPTOR.name in serde.MESSAGE_TYPES:
        serde.from_pb(message)


@FUZZ
@given(stream=chunks)
def test_event_streams_decode_or_refuse(stream):
    try:
        for payload in read_payloads(iter(stream), max_bytes=1000):
            read_one(iter([pb.Chunk(data=payload, last=True)]), pb.JobEvent)
    except VflError:
        pass


@FUZZ
@given(message_type=st.sampled_from(REQUEST_TYPES), data=st.data())
def test_well_formed_protobufs_with_any_field_values_convert(message_type, data):
    """Structurally valid messages (what a peer's own protobuf library would send), with any field values."""
    fields = {}
    for field in message_type.DESCRIPTOR.fields:
        strategy = {field.TYPE_STRING: st.text(max_size=50), field.TYPE_BYTES: st.binary(max_size=100),
                    field.TYPE_BOOL: st.booleans(), field.TYPE_INT32: st.integers(-2**31, 2**31 - 1),
                    field.TYPE_INT64: st.integers(-2**63, 2**63 - 1), field.TYPE_DOUBLE: st.floats(),
                    field.TYPE_FLOAT: st.floats(width=32)}.get(field.type)
        if strategy is not None and not repeated(field):
            fields[field.name] = data.draw(strategy, label=field.name)
    message = message_type(**fields)
    typed = serde.from_pb(read_one(iter([pb.Chunk(data=message.SerializeToString(), last=True)]), message_type))
    assert type(typed).__name__ == message_type.DESCRIPTOR.name


@FUZZ
@given(data=st.binary(max_size=200), table_rows=st.integers(0, 1000), max_batch=st.integers(1, 100))
def test_forward_rows_decode_or_refuse(data, table_rows, max_batch):
    try:
        rows = decode_rows(data, table_rows, max_batch)
    except VflError:
        return
    assert 1 <= len(rows) <= max_batch and rows.min() >= 0 and rows.max() < table_rows


@FUZZ
@given(data=st.binary(max_size=200), rows=st.integers(0, 10), cols=st.integers(0, 10))
def test_float_payloads_decode_or_refuse(data, rows, cols):
    try:
        assert decode_floats(data, (rows, cols), "fuzz").shape == (rows, cols)
    except VflError:
        pass


json_values = st.recursive(st.none() | st.booleans() | st.integers() | st.floats() | st.text(max_size=20),
                           lambda inner: st.lists(inner, max_size=5) | st.dictionaries(st.text(max_size=8), inner,
                                                                                         max_size=5), max_leaves=20)


@FUZZ
@given(text=st.one_of(st.binary(max_size=300), json_values.map(lambda v: json.dumps(v).encode()),
                      st.integers(1, 100_000).map(lambda n: b"[" * n + b"]" * n),
                      st.builds(lambda shape, values: json.dumps({"shape": shape, "values": values}).encode(),
                                json_values, json_values)))
def test_masked_initial_share_decodes_or_refuses(text):
    try:
        decode_int_matrix(text, (2, 2), 64)
    except VflError:
        pass


VALID_LAYOUT = json.loads(default_layout(1024, 4, 4, 14, 16, 40, 32.0, 64, 0).to_json())


@FUZZ
@given(changes=st.dictionaries(st.sampled_from(sorted(VALID_LAYOUT) + ["extra"]), json_values, max_size=4),
       drop=st.sets(st.sampled_from(sorted(VALID_LAYOUT)), max_size=2))
def test_setup_layout_decodes_or_refuses(changes, drop):
    values = {k: v for k, v in {**VALID_LAYOUT, **changes}.items() if k not in drop}
    try:
        layout = Layout.from_json(json.dumps(values))
    except VflError:
        return
    layout.forward_layout(), layout.backward_layout(), layout.gradient_layout(), layout.exponent_sum_bits()


@FUZZ
@given(text=st.one_of(st.text(max_size=200), st.integers(1, 50_000).map(lambda n: "[" * n + "]" * n)))
def test_setup_layout_text_decodes_or_refuses(text):
    try:
        Layout.from_json(text)
    except VflError:
        pass


@FUZZ
@given(n_bytes=st.binary(min_size=120, max_size=136), base=st.binary(max_size=300))
def test_peer_public_keys_are_checked(n_bytes, base):
    from vfl.protocol.schemes import paillier
    try:
        paillier.peer_key(n_bytes, base, 1024, LocalCompute(1))
    except VflError:
        pass


# ------------------------------------------------------------------------------------------ PSI envelopes

@FUZZ
@given(data=st.binary(max_size=400))
def test_psi_envelopes_from_any_bytes_decode_or_refuse(data):
    envelope = psi_pb2.Envelope()
    try:
        envelope.ParseFromString(data)
    except Exception:  # noqa: BLE001 - gRPC's deserializer refuses these before the codec sees them
        assume(False)
    try:
        decode(envelope)
    except PsiError:
        pass


def _envelope(body: str, draw) -> psi_pb2.Envelope:
    envelope = psi_pb2.Envelope(session_id=draw(st.text(max_size=40)))
    message = getattr(envelope, body)
    for field in message.DESCRIPTOR.fields:
        if repeated(field) and field.message_type is None:
            getattr(message, field.name).extend(draw(st.lists(st.text(max_size=10), max_size=3)))
        elif field.message_type is not None and field.message_type.GetOptions().map_entry:
            value_field = field.message_type.fields_by_name["value"]
            values = st.binary(max_size=40) if value_field.type == value_field.TYPE_BYTES else \
                st.integers(0, 2**63 - 1) if value_field.cpp_type in (value_field.CPPTYPE_INT64, value_field.CPPTYPE_UINT64) \
                else st.text(max_size=10)
            getattr(message, field.name).update(draw(st.dictionaries(st.text(max_size=10), values, max_size=3)))
        elif field.type == field.TYPE_BYTES:
            setattr(message, field.name, draw(st.binary(max_size=200)))
        elif field.type == field.TYPE_STRING:
            setattr(message, field.name, draw(st.text(max_size=40)))
        elif field.type == field.TYPE_BOOL:
            setattr(message, field.name, draw(st.booleans()))
        elif field.cpp_type in (field.CPPTYPE_INT32, field.CPPTYPE_ENUM):
            setattr(message, field.name, draw(st.integers(-2**31, 2**31 - 1)))
        elif field.cpp_type == field.CPPTYPE_UINT32:
            setattr(message, field.name, draw(st.integers(0, 2**32 - 1)))
        elif field.cpp_type == field.CPPTYPE_INT64:
            setattr(message, field.name, draw(st.integers(-2**63, 2**63 - 1)))
        elif field.cpp_type == field.CPPTYPE_UINT64:
            setattr(message, field.name, draw(st.integers(0, 2**64 - 1)))
    message.SetInParent()
    return envelope


BODIES = [f.name for f in psi_pb2.Envelope.DESCRIPTOR.oneofs_by_name["body"].fields]


@FUZZ
@given(body=st.sampled_from(BODIES), data=st.data())
def test_psi_envelopes_with_any_field_values_decode_or_refuse(body, data):
    envelope = _envelope(body, data.draw)
    try:
        message = decode(envelope)
    except PsiError:
        return
    assert message.session_id == envelope.session_id


def test_every_psi_body_is_fuzzed():
    """A guard: the structured target covers every message of the envelope's oneof."""
    assert {"hello", "chunk", "sealed", "done", "abort"} <= set(BODIES)


def test_the_chunk_target_reaches_every_node_message():
    assert {t.__name__ for t in REQUEST_TYPES} >= {"OpenJob", "SetupRequest", "ForwardRequest", "CloseJobRequest"}
