"""Peer DJN re-randomization keeps its 2^-56 hiding for every layout the spec allows."""
import pytest

from vfl import he
from vfl.protocol.schemes import paillier
from vfl.protocol.layout import default_layout
from vfl.compute import LocalCompute


def layout(precision_bits=22, gradient_bits=24, activation_bound=32.0, max_batch=512, d=16, m=16):
    return default_layout(2048, d, m, precision_bits, gradient_bits, 40, activation_bound, max_batch, 0)


def test_default_layout_needs_no_more_than_the_default_slack():
    bits = layout().exponent_sum_bits()
    # activations < 2^28 (22 fraction bits, bound 32, sign) summed over at most 512 rows
    assert bits == 28 + 9
    assert he.peer_djn_slack_bits(bits) == he.randomness.PEER_DJN_SLACK_BITS


def test_wide_layouts_get_a_longer_exponent():
    wide = layout(precision_bits=24, gradient_bits=24, activation_bound=1024.0, max_batch=65536)
    bits = wide.exponent_sum_bits()
    assert bits == (24 + 10 + 1) + 16
    assert he.peer_djn_slack_bits(bits) == bits + 56 > he.randomness.PEER_DJN_SLACK_BITS


def test_job_runtime_sizes_the_peer_engine_from_the_layout():
    priv = paillier.new_key(1024, LocalCompute(1))
    wide = layout(precision_bits=24, activation_bound=1024.0, max_batch=65536)
    ops = paillier.peer_key(paillier.public_key_bytes(priv), paillier.djn_base_bytes(priv), 1024, LocalCompute(1),
                           wide.exponent_sum_bits())
    owner_bits = (int(priv.n).bit_length() + 1) // 2
    assert ops.randomness.slack_bits == wide.exponent_sum_bits() + 56
    assert ops.randomness.spec.exponent_bits == owner_bits + wide.exponent_sum_bits() + 56
    # and the re-randomized ciphertexts still decrypt to the same plaintexts
    c = priv.encrypt_ints([5, -7])
    assert priv.decrypt_ints(ops.rerandomize(c)) == [5, -7]


def test_slack_below_the_default_is_refused():
    priv = paillier.new_key(1024, LocalCompute(1))
    with pytest.raises(ValueError, match="at least"):
        he.PeerDjnRandomness(int(priv.n), int(priv.djn_base), slack_bits=40)


def test_packed_products_count_every_slot_group():
    # m = 1 packs many rows per forward ciphertext: one output combines d bases at each of its groups
    narrow = default_layout(4096, 64, 1, 24, 24, 40, 1024.0, 16, 0)
    groups = narrow.forward_layout().groups
    assert groups > 1
    terms = 64 * groups
    assert narrow.exponent_sum_bits() >= narrow.activation_bits + (terms - 1).bit_length()
