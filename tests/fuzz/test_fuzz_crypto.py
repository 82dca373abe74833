"""Fuzz the ciphertext and curve-point decoders (issue 15, item 8): both take bytes a peer chose.

Ciphertexts (vfl.he.wire.ciphertexts_from_bytes, vfl.he.batch.from_wire) may be refused only with CryptoError
(MalformedCiphertextError); accepted ones must lie in Z*_{n^2}. Curve points (psi.core.curve25519.check_points and
blind_points, which every point from a peer goes through) may be refused only with InvalidPoint; accepted ones
must be canonical points on the curve, and blinding them must never give the all-zero (low-order) result.
"""
from __future__ import annotations

import functools
import math

import numpy as np
from hypothesis import given
from hypothesis import strategies as st

from psi.core.curve25519 import POINT_BYTES, blind_points, check_points
from psi.errors import InvalidPoint
from tests.fuzz.profiles import FUZZ
from vfl import he
from vfl.errors import CryptoError
from vfl.he.batch import KeyedEngine, from_wire
from vfl.he.wire import ciphertext_width, ciphertexts_from_bytes

P = 2**255 - 19


@functools.cache
def engine() -> KeyedEngine:
    return KeyedEngine(he.new_private_ops(1024))


def ciphertext_bytes(width: int):
    """Whole ciphertexts (some at the edges: 0, 1, n, n^2 - 1, n^2, all-ones), cut or padded now and then."""
    n = engine().n
    edge = st.sampled_from([0, 1, n, 2 * n, n * n - 1, n * n, 256 ** width - 1])
    value = st.one_of(edge, st.integers(0, 256 ** width - 1))
    whole = st.lists(value.map(lambda v: v.to_bytes(width, "big")), max_size=4).map(b"".join)
    return st.one_of(whole, st.binary(max_size=3 * width),
                     st.tuples(whole, st.binary(min_size=1, max_size=width - 1)).map(b"".join))


@FUZZ
@given(data=st.data(), count=st.one_of(st.none(), st.integers(0, 5)))
def test_ciphertexts_decode_or_refuse(data, count):
    key = engine()
    width = ciphertext_width(key.n)
    raw = data.draw(ciphertext_bytes(width))
    try:
        values = ciphertexts_from_bytes(raw, key.n, count=count)
    except CryptoError:
        return
    assert len(raw) == len(values) * width and (count is None or len(values) == count)
    for c in values:
        assert 0 < c < key.n ** 2 and math.gcd(int(c), key.n) == 1


@FUZZ
@given(data=st.data(), count=st.one_of(st.none(), st.integers(0, 5)))
def test_keyed_batches_decode_or_refuse(data, count):
    key = engine()
    raw = data.draw(ciphertext_bytes(ciphertext_width(key.n)))
    try:
        batch = from_wire(raw, key, count)
    except CryptoError:
        return
    assert batch.n == key.n and len(key.decrypt_ints(batch)) == len(batch)   # usable under its key


def point_bytes():
    """32-byte strings, with the edges of the checks: u >= p, bit 255, zero, one, the low-order points."""
    low_order = [325606250916557431795983626356110631294008115727848805560023387167927233504,
                 39382357235489614581723060781553021112529911719440698176882885853963445705823]
    edges = [0, 1, P - 1, P, P + 1, 2**255 - 1, 2**256 - 1, *low_order, *(u + P for u in low_order)]
    edge = st.sampled_from(edges).map(lambda u: u.to_bytes(32, "little"))
    return st.one_of(edge, st.binary(min_size=32, max_size=32))


@FUZZ
@given(points=st.lists(point_bytes(), max_size=6), tail=st.binary(max_size=40))
def test_peer_points_are_checked_or_refused(points, tail):
    data = b"".join(points) + (tail if len(tail) % POINT_BYTES else b"")
    scalar = bytes(range(1, 33))
    try:
        out = blind_points(scalar, data)
    except InvalidPoint:
        return
    assert len(out) == len(data) and len(data) % POINT_BYTES == 0
    for i in range(len(data) // POINT_BYTES):
        u = int.from_bytes(data[32 * i:32 * i + 32], "little")
        assert u < P                                   # canonical
        assert out[32 * i:32 * i + 32] != bytes(32)    # not a low-order point


@FUZZ
@given(shape=st.tuples(st.integers(0, 4), st.integers(0, 40)), data=st.data())
def test_point_arrays_of_any_shape_are_checked(shape, data):
    raw = data.draw(st.binary(min_size=shape[0] * shape[1], max_size=shape[0] * shape[1]))
    try:
        check_points(np.frombuffer(raw, dtype=np.uint8).reshape(shape))
    except InvalidPoint:
        return
    assert shape[1] == POINT_BYTES
