"""The N-party building blocks: the clamped inverse scalar pair, the OPRF round trip, tags, zero-shares."""
from __future__ import annotations

import os

import numpy as np
import pytest

from psi.core import curve25519, oprf
from psi.core.curve25519 import ORDER, blind_one, blind_points, clamp, inverse_scalar_pair, is_clamped
from psi.core.hashing import Canonicalization, hash_and_blind, hash_to_curve

from .conftest import random_ids


def test_scalar_pair_is_clamped_and_inverse_mod_l():
    for _ in range(50):
        a, a_inv = inverse_scalar_pair()
        assert is_clamped(a) and is_clamped(a_inv)
        ia, ib = int.from_bytes(a, "little"), int.from_bytes(a_inv, "little")
        assert ia % 8 == 0 and ib % 8 == 0 and 2**254 <= ia < 2**255 and 2**254 <= ib < 2**255
        assert ia * ib % ORDER == 1
    assert ORDER == 2**252 + 27742317777372353535851937790883648493
    assert clamp(b"\xff" * 32) == b"\xf8" + b"\xff" * 30 + b"\x7f" and not is_clamped(b"\xff" * 32)


def test_unblinding_identity_for_any_curve_point():
    """X25519(a_inv, X25519(k, X25519(a, H))) == X25519(k, H), including points with a torsion component
    (Elligator 2 outputs are arbitrary curve points, so among 40 of them most have one)."""
    a, a_inv = inverse_scalar_pair()
    k = curve25519.new_scalar()
    for ident in random_ids(40, 90):
        h = hash_to_curve(ident, b"salt-for-the-test-0001")
        assert blind_one(a_inv, blind_one(k, blind_one(a, h))) == blind_one(k, h)
    # the same a as a residue mod l, but not in clamped form: X25519 clamps it into another scalar
    bad = (int.from_bytes(a, "little") % ORDER).to_bytes(32, "little")
    assert not is_clamped(bad)
    assert blind_one(a_inv, blind_one(k, blind_one(bad, h))) != blind_one(k, h)


def test_active_party_recovers_the_passives_oprf_tags():
    """A's path (query, reply, unblind, derive) gives the same tag||mask as the passive's direct path."""
    ids, salt, canon = random_ids(30, 91), os.urandom(32), Canonicalization()
    a, a_inv = inverse_scalar_pair()
    k, t = curve25519.new_scalar(), os.urandom(32)
    replies = blind_points(k, hash_and_blind(ids, salt, canon, a), 32)
    tags_a = oprf.unblind_and_derive(a_inv, replies, "s1", "bank")
    entries = oprf.passive_entries(ids, salt, canon, k, None, "s1", "bank", t, 1, 2, False, False)
    e = np.frombuffer(entries, np.uint8).reshape(-1, 32)
    ta = np.frombuffer(tags_a, np.uint8).reshape(-1, 32)
    assert np.array_equal(e[:, :16], ta[:, :16])                               # same tags
    shares = np.frombuffer(oprf.zero_shares(ids, t, "s1", 1, 2, False), np.uint8).reshape(-1, 16)
    assert np.array_equal(e[:, 16:] ^ ta[:, 16:], shares)                      # value = share ^ mask
    # tags are bound to the party name and the session
    assert oprf.unblind_and_derive(a_inv, replies, "s1", "insurer") != tags_a
    assert oprf.unblind_and_derive(a_inv, replies, "s2", "bank") != tags_a


@pytest.mark.parametrize("m", [2, 3, 5])
def test_zero_shares_xor_to_zero_only_over_all_passives(m):
    ids, t = random_ids(20, 92), os.urandom(32)
    shares = [np.frombuffer(oprf.zero_shares(ids, t, "s", j, m, False), np.uint8).reshape(-1, 16)
              for j in range(1, m + 1)]
    assert not np.bitwise_xor.reduce(shares).any()
    for mask in range(1, 2**m - 1):                    # every proper, non-empty subset
        subset = [shares[j] for j in range(m) if mask >> j & 1]
        assert np.bitwise_xor.reduce(subset).any(axis=1).all(), mask
    # cardinality mode: the full XOR is R(e), which depends on t
    with_total = [np.frombuffer(oprf.zero_shares(ids, t, "s", j, m, j == m), np.uint8).reshape(-1, 16)
                  for j in range(1, m + 1)]
    total = np.frombuffer(oprf.totals(ids, t, "s"), np.uint8).reshape(-1, 16)
    assert np.array_equal(np.bitwise_xor.reduce(with_total), total)
    assert oprf.totals(ids, os.urandom(32), "s") != oprf.totals(ids, t, "s")


def test_okvs_seed_is_public_and_distinct_per_party_session_attempt():
    seeds = {oprf.okvs_seed(s, p, a) for s in ("s1", "s2") for p in ("b", "c") for a in range(3)}
    assert len(seeds) == 12 and all(len(x) == 24 for x in seeds)
    assert oprf.okvs_seed("s1", "b", 0) == oprf.okvs_seed("s1", "b", 0)
