"""The secure interactive layer under real Paillier, in one process: it matches plaintext split learning
up to fixed-point error, over several training steps."""
from __future__ import annotations

import numpy as np
import pytest

from vfl import he
from vfl.errors import CryptoError
from vfl.he.batch import Fresh, KeyedEngine, to_wire
from vfl.he.errors import KeyMismatchError
from vfl.he.packing import SlotOverflowError
from vfl.protocol import interactive as proto
from vfl.protocol.layout import default_layout


@pytest.fixture(scope="module")
def keys():
    ops_a = he.new_private_ops(1024, workers=1)
    ops_p = he.new_private_ops(1024, workers=1)
    return (KeyedEngine(ops_a), KeyedEngine(ops_p), KeyedEngine(he.new_public_ops(int(ops_a.n), djn_base=ops_a.djn_base)),
            KeyedEngine(he.new_public_ops(int(ops_p.n), djn_base=ops_p.djn_base)))


def test_secure_steps_match_plaintext_split_learning(keys):
    ops_a, ops_p, pub_a_at_p, pub_p_at_a = keys
    d, m, lr, mu = 6, 5, 0.2, 0.9
    layout = default_layout(1024, d, m, 14, 16, 40, 32.0, 16, seed=4)
    rng = np.random.default_rng(0)
    v, masked = proto.passive_init(layout, 0.4, rng)
    u = proto.active_init(layout, 0.4, masked, rng)
    w = (u.weights + v.weights).astype(float) / 2**layout.f_s  # only the test sees W
    velocity = np.zeros_like(w)
    # the last batch is short, as an epoch's last batch usually is: momentum must carry mean gradients
    for batch in (9, 9, 2, 9):
        h = rng.normal(0, 1.5, size=(batch, d))
        delta = rng.normal(0, 0.05, size=(batch, m))  # dL/dz of a mean loss
        # forward: A sends [U]_A, P returns [hW]_A, A decrypts
        h_int = proto.encode_activations(h, layout)
        u_bases = proto.weight_bases(ops_a, proto.product_weights(u.weights, layout), layout.forward_layout())
        v_bases = proto.weight_bases(ops_p, proto.product_weights(v.weights, layout).T, layout.backward_layout())
        z_cts = proto.passive_forward(pub_a_at_p, u_bases, h_int, v, layout)
        z = proto.active_decode_forward(ops_a, z_cts, batch, layout)
        assert np.allclose(z, h @ w, atol=2e-3)
        # backward
        d_int = proto.encode_gradients(delta * batch, layout)
        g_cts = proto.active_input_gradient(pub_p_at_a, v_bases, d_int, u, layout)
        grad_h = proto.passive_decode_input_gradient(ops_p, g_cts, batch, layout)
        assert np.allclose(grad_h, delta @ w.T, atol=2e-4)
        d_cts = proto.active_encrypt_gradients(ops_a, d_int, layout)
        masked_g, share_p = proto.passive_weight_gradient(pub_a_at_p, d_cts, h_int, layout)
        share_a = proto.active_decode_weight_gradient(ops_a, masked_g, layout)
        proto.apply_update(u, share_a, batch, lr, mu, 0.0, layout)
        proto.apply_update(v, share_p, batch, lr, mu, 0.0, layout)
        velocity = mu * velocity + h.T @ delta
        w = w - lr * velocity
        assert np.allclose((u.weights + v.weights).astype(float) / 2**layout.f_s, w, atol=1e-4)


def test_output_overflow_is_refused_not_garbage(keys):
    ops_a, _, pub_a_at_p, _ = keys
    layout = default_layout(1024, 3, 2, 14, 16, 40, 32.0, 8, seed=1)
    rng = np.random.default_rng(1)
    v, masked = proto.passive_init(layout, 0.4, rng)
    u = proto.active_init(layout, 0.4, masked, rng)
    u.weights = u.weights + (1 << (layout.f_s + 8))  # |W| ~ 256: h W leaves the 2^10 output range
    h_int = proto.encode_activations(np.full((4, 3), 30.0), layout)
    u_bases = proto.weight_bases(ops_a, proto.product_weights(u.weights, layout), layout.forward_layout())
    z_cts = proto.passive_forward(pub_a_at_p, u_bases, h_int, v, layout)
    with pytest.raises(SlotOverflowError, match="slot"):
        proto.active_decode_forward(ops_a, z_cts, 4, layout)


def test_fresh_randomness_on_everything_sent(keys):
    ops_a, _, pub_a_at_p, _ = keys
    layout = default_layout(1024, 3, 2, 14, 16, 40, 32.0, 8, seed=2)
    rng = np.random.default_rng(2)
    v, masked = proto.passive_init(layout, 0.4, rng)
    u = proto.active_init(layout, 0.4, masked, rng)
    h_int = proto.encode_activations(rng.normal(size=(4, 3)), layout)
    u_bases = proto.weight_bases(ops_a, proto.product_weights(u.weights, layout), layout.forward_layout())
    first = proto.passive_forward(pub_a_at_p, u_bases, h_int, v, layout)
    second = proto.passive_forward(pub_a_at_p, u_bases, h_int, v, layout)
    assert all(int(a) != int(b) for a, b in zip(first, second))
    assert ops_a.decrypt_ints(first) == ops_a.decrypt_ints(second)


def test_a_party_cannot_compute_on_the_other_partys_ciphertexts(keys):
    """Batches carry their key: P's [V] bases given where A's [U] belong raise instead of computing garbage."""
    ops_a, ops_p, pub_a_at_p, _ = keys
    layout = default_layout(1024, 3, 2, 14, 16, 40, 32.0, 8, seed=3)
    rng = np.random.default_rng(3)
    v, masked = proto.passive_init(layout, 0.4, rng)
    h_int = proto.encode_activations(rng.normal(size=(4, 3)), layout)
    wrong = proto.weight_bases(ops_p, proto.product_weights(v.weights, layout), layout.forward_layout())
    with pytest.raises(KeyMismatchError):
        proto.passive_forward(pub_a_at_p, wrong, h_int, v, layout)
    with pytest.raises(KeyMismatchError):
        ops_a.decrypt_ints(wrong)


def test_only_fresh_batches_leave_a_party(keys):
    """A product or a sum of ciphertexts is refused by the wire encoder by its type; its re-randomization is sent."""
    ops_a, _, pub_a_at_p, _ = keys
    layout = default_layout(1024, 3, 2, 14, 16, 40, 32.0, 8, seed=4)
    u_bases = proto.weight_bases(ops_a, np.ones((3, 2), dtype=object), layout.forward_layout())
    assert isinstance(u_bases, Fresh)
    exponents = np.ones((1, len(u_bases)), dtype=np.int64)
    product = pub_a_at_p.multiexp(u_bases, exponents)
    summed = pub_a_at_p.add_plain(product, [5])
    for derived in (product, summed, summed[:1]):
        assert not isinstance(derived, Fresh)
        with pytest.raises(CryptoError, match="only fresh or re-randomized"):
            to_wire(derived)
    sent = to_wire(pub_a_at_p.rerandomize(summed))
    assert len(sent) == he.ciphertext_width(ops_a.n)
    with pytest.raises(TypeError):
        Fresh.interleave([u_bases, summed], [(0, 0)])  # reordering a derived batch does not make it fresh
