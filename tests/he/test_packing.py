"""Packing and the interactive-layer algebra, checked with exact integer arithmetic mod n.

`ModNOps` is a stand-in for the Paillier engine that keeps plaintexts mod n in the clear. It makes the
protocol's linear algebra (slot groups, checksums, shares) testable exactly and fast; the same protocol
functions run under real Paillier in tests/protocol/test_interactive_paillier.py. The engine view is the
production one (vfl.he.batch.KeyedEngine), so batches carry their key here too.
"""
from __future__ import annotations

import numpy as np
import pytest

from vfl.he.batch import KeyedEngine
from vfl.he.packing import SlotOverflowError, group_exponents, pack_row_at_group, pack_rows, plan, unpack_rows
from vfl.protocol import interactive as proto
from vfl.protocol.layout import default_layout

N = (1 << 2047) + 1234567  # any odd modulus of the right size works for the mod-n algebra


class ModNOps:
    """Stand-in engine: 'ciphertexts' are plaintexts mod n, so every homomorphic op is the plain op."""

    def __init__(self, n: int = N):
        self.n = n

    def encrypt_ints(self, plaintexts):
        return [p % self.n for p in plaintexts]

    def add_plain(self, cts, plaintexts):
        return [(c + p) % self.n for c, p in zip(cts, plaintexts)]

    def multiexp(self, bases, exponents):
        return [sum(int(e) * int(b) for e, b in zip(row, bases)) % self.n for row in exponents]

    def rerandomize(self, cts):
        return list(cts)

    def decrypt_ints(self, cts):
        return [c - self.n if c > self.n // 2 else c for c in cts]


def centered(values, n=N):
    return [v % n if v % n <= n // 2 else v % n - n for v in values]


def test_pack_unpack_roundtrip_signed_extremes():
    slot = plan(16, 39, 2048, True, seed=5)
    rng = np.random.default_rng(0)
    half = 1 << 38
    rows = rng.integers(-half, half, size=(7, 16), dtype=np.int64)
    rows[0, :] = half - 1
    rows[1, :] = -half
    back = unpack_rows(centered(pack_rows(rows, slot)), 7, slot, "test")
    assert np.array_equal(back.astype(np.int64), rows)


def test_slot_overflow_is_detected_not_returned():
    slot = plan(16, 39, 2048, True, seed=5)
    rows = np.zeros((3, 16), dtype=object)
    rows[1, 4] = 1 << 38  # one past the largest positive slot value
    with pytest.raises(SlotOverflowError, match="checksum"):
        unpack_rows(centered(pack_rows(rows, slot)), 3, slot, "test")


def test_group_bases_and_exponents_compute_row_products():
    slot = plan(4, 40, 1024, True, seed=1)
    ops = KeyedEngine(ModNOps())
    rng = np.random.default_rng(1)
    w = rng.integers(-1000, 1000, size=(3, 4))              # 3 base rows of width 4
    x = rng.integers(-50, 50, size=(slot.groups * 2 + 1, 3))  # output rows, one exponent per base row
    bases = ops.encrypt_ints([pack_row_at_group(row, t, slot) for row in w for t in range(slot.groups)])
    out = ops.multiexp(bases, group_exponents(x, slot))
    got = unpack_rows(ops.decrypt_ints(out), len(x), slot, "test")
    assert np.array_equal(got.astype(np.int64), x @ w)


def _layout(d=5, m=4):
    return default_layout(2048, d, m, 14, 16, 40, 32.0, 64, seed=3)


def test_interactive_layer_matches_plaintext_math():
    layout = _layout()
    ops_a, ops_p = KeyedEngine(ModNOps()), KeyedEngine(ModNOps(N + 2))
    rng = np.random.default_rng(2)
    v, masked = proto.passive_init(layout, 0.3, rng)
    u = proto.active_init(layout, 0.3, masked, rng)
    w = (u.weights + v.weights).astype(float) / 2**layout.f_s
    h = rng.normal(0, 2, size=(10, layout.d))
    delta = rng.normal(0, 0.5, size=(10, layout.m))
    h_int = proto.encode_activations(h, layout)
    u_bases = proto.weight_bases(ops_a, proto.product_weights(u.weights, layout), layout.forward_layout())
    z = proto.active_decode_forward(ops_a, proto.passive_forward(ops_a, u_bases, h_int, v, layout), 10, layout)
    assert np.allclose(z, h @ w, atol=1e-3)

    d_int = proto.encode_gradients(delta * 10, layout)
    v_bases = proto.weight_bases(ops_p, proto.product_weights(v.weights, layout).T, layout.backward_layout())
    g_cts = proto.active_input_gradient(ops_p, v_bases, d_int, u, layout)
    grad_h = proto.passive_decode_input_gradient(ops_p, g_cts, 10, layout)
    assert np.allclose(grad_h, delta @ w.T, atol=1e-3)

    masked_g, share_p = proto.passive_weight_gradient(ops_a, proto.active_encrypt_gradients(ops_a, d_int, layout),
                                                      h_int, layout)
    share_a = proto.active_decode_weight_gradient(ops_a, masked_g, layout)
    g_sum = (share_a + share_p).astype(float) / 2**(layout.f_h + layout.f_g)
    assert np.allclose(g_sum / 10, h.T @ delta, atol=1e-3)
    # the active party's share alone is masked far beyond the gradient's size
    assert min(abs(int(x)) for x in share_a.reshape(-1)) > 2**60

    proto.apply_update(u, share_a, 10, 0.1, 0.9, 0.0, layout)
    proto.apply_update(v, share_p, 10, 0.1, 0.9, 0.0, layout)
    w_new = (u.weights + v.weights).astype(float) / 2**layout.f_s
    assert np.allclose(w_new, w - 0.1 * (h.T @ delta), atol=1e-4)


def test_shares_hide_weights():
    layout = _layout()
    rng = np.random.default_rng(3)
    v, masked = proto.passive_init(layout, 0.3, rng)
    u = proto.active_init(layout, 0.3, masked, rng)
    # each share is a uniform-looking integer dozens of bits wider than any weight
    for share in (u.weights, v.weights):
        bits = [abs(int(x)).bit_length() for x in share.reshape(-1)]
        assert np.median(bits) > layout.f_s + 8 + layout.stat_bits - 3
    w = (u.weights + v.weights).astype(float) / 2**layout.f_s
    assert np.abs(w).max() < 2
