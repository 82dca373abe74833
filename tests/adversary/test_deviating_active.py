"""A *deviating* active party wins: documented expected failures (docs/protocol.md, "Threat model and its limits").

The bar of the protocol is semi-honest parties. These adversaries break the protocol's rules in ways a passive
node cannot detect today, and they learn what the who-learns-what table says A does not learn. Each test
asserts the table's claim and is marked `xfail(strict=True)`: it fails now, as documented, and it will turn
into an unexpected pass (a red run) as soon as a defense lands, so that the docs get updated with it.

They run in one process on the passive party's real protocol functions under real Paillier (1024-bit): the
node runs exactly these functions, and it accepts the messages used here (repeated evaluation forwards on the
same rows, any [U] and any [D] of the right size), so the same attacks work over gRPC.
"""
from __future__ import annotations

import numpy as np
import pytest

from vfl import he
from vfl.protocol import interactive as proto
from vfl.protocol.layout import default_layout
from vfl.he.batch import KeyedEngine
from vfl.he.packing import unpack_rows

D, M, ROWS = 4, 4, 6


@pytest.fixture(scope="module")
def parties():
    ops_a = KeyedEngine(he.new_private_ops(1024, workers=1))
    layout = default_layout(1024, D, M, 22, 24, 40, 32.0, 64, seed=3)
    passive_rng = np.random.default_rng()          # P's own secrets: the adversary never sees them
    v, masked = proto.passive_init(layout, 0.4, passive_rng)
    u = proto.active_init(layout, 0.4, masked, np.random.default_rng())
    h = np.maximum(passive_rng.normal(0.0, 1.0, size=(ROWS, D)), 0.0)   # P's activations (ReLU outputs)
    public_a = KeyedEngine(he.new_public_ops(int(ops_a.n), djn_base=ops_a.djn_base))
    return {"ops_a": ops_a, "public_a": public_a, "layout": layout, "u": u, "v": v, "h": h}


def _z_int(ops_a, z_cts, rows: int, layout) -> np.ndarray:
    return unpack_rows(ops_a.decrypt_ints(z_cts), rows, layout.forward_layout(), "z").astype(np.int64)


@pytest.mark.xfail(strict=True, raises=AssertionError, reason="documented limit: a deviating A that sends chosen [U] in repeated "
                                       "evaluation forwards learns h_P (docs/protocol.md, threat model)")
def test_chosen_u_does_not_reveal_activations(parties):
    """A sends [U] and then [U + E_j] (E_j: a unit in row j) on the same rows: P answers [H (U' + V)] each
    time, and the difference of two answers is H E_j = column j of H. A holds its key, U and P's answers."""
    ops_a, public_a, layout, v = parties["ops_a"], parties["public_a"], parties["layout"], parties["v"]
    h_int = proto.encode_activations(parties["h"], layout)          # what P computes; the judge's truth

    def forward_with(chosen: np.ndarray) -> np.ndarray:                # P's node runs passive_forward
        bases = proto.weight_bases(ops_a, chosen, layout.forward_layout())
        return _z_int(ops_a, proto.passive_forward(public_a, bases, h_int, v, layout), ROWS, layout)

    own = proto.product_weights(parties["u"].weights, layout)   # its true share keeps U' + V in range
    base = forward_with(own)
    guess = np.zeros((ROWS, D), dtype=np.int64)
    for j in range(D):
        unit = own.copy()
        unit[j, 0] += 1
        guess[:, j] = (forward_with(unit) - base)[:, 0]
    assert not np.array_equal(guess, h_int), "A recovered P's activations exactly"


@pytest.mark.xfail(strict=True, raises=AssertionError, reason="documented limit: a deviating A that sends a chosen gradient [D] learns "
                                       "inner products of P's activations (docs/protocol.md, threat model)")
def test_chosen_gradient_does_not_reveal_activation_inner_products(parties):
    """A evaluates some rows, sends a training step whose [D] is one unit gradient on training row i, lets both
    shares update, and evaluates the same rows again: z changes by -lr/B * h_eval h_i^T in one column, so A
    reads the inner products of P's activations with row i (the Gram matrix, h up to a rotation, row by row)."""
    ops_a, public_a, layout = parties["ops_a"], parties["public_a"], parties["layout"]
    u, v = proto.WeightShare(parties["u"].weights.copy()), proto.WeightShare(parties["v"].weights.copy())
    h_eval = proto.encode_activations(parties["h"], layout)
    h_train = proto.encode_activations(np.maximum(np.random.default_rng().normal(size=(8, D)), 0.0), layout)
    lr, row, scale = 0.5, 2, 16.0

    def evaluate() -> np.ndarray:
        bases = proto.weight_bases(ops_a, proto.product_weights(u.weights, layout), layout.forward_layout())
        z = proto.active_decode_forward(ops_a, proto.passive_forward(public_a, bases, h_eval, v, layout), ROWS, layout)
        return z

    before = evaluate()
    chosen = np.zeros((len(h_train), M))
    chosen[row, 0] = scale                                      # a per-example gradient of A's choosing
    d_int = proto.encode_gradients(chosen, layout)
    masked, passive_share = proto.passive_weight_gradient(public_a, proto.active_encrypt_gradients(ops_a, d_int, layout),
                                                          h_train, layout)
    proto.apply_update(v, passive_share, len(h_train), lr, 0.0, 0.0, layout)                        # at P
    proto.apply_update(u, proto.active_decode_weight_gradient(ops_a, masked, layout), len(h_train), lr, 0.0, 0.0,
                       layout)                                                                      # at A
    inner = (before - evaluate())[:, 0] * len(h_train) / (lr * scale)   # A's reading of h_eval . h_train[row]
    truth = (h_eval / 2.0**layout.f_h) @ (h_train[row] / 2.0**layout.f_h)
    assert not np.allclose(inner, truth, atol=1e-3), "A recovered inner products of P's activations"
