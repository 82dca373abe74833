import gmpy2
import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from phe import paillier

from vfl import he
from vfl.he import multiexp as me
from vfl.compute import LocalCompute


def phe_ct(public_key, c):
    return paillier.EncryptedNumber(public_key, int(c), 0)


def raw(enc):
    return int(enc.ciphertext(be_secure=False))


def test_encrypt_decrypt_round_trip_and_phe_decrypts_ours(engine, keys1024):
    pub, priv = keys1024
    n = pub.n
    plains = [0, 1, -1, 42, -(10 ** 30), n // 2, -(n // 2) + 1, (1 << 1000)]
    cts = engine.encrypt_ints(plains)
    assert engine.decrypt_ints(cts) == plains
    assert [priv.raw_decrypt(int(c)) for c in cts] == [p % n for p in plains]
    assert priv.decrypt(phe_ct(pub, cts[4])) == -(10 ** 30)       # phe's signed decoding agrees
    assert engine.decrypt_ints(cts, centered=False) == [p % n for p in plains]


def test_we_decrypt_phe_ciphertexts(engine, keys1024):
    pub, _ = keys1024
    values = [5, -17, 10 ** 20]
    cts = [pub.encrypt(v).ciphertext() for v in values]
    assert engine.decrypt_ints(cts) == values


def test_fresh_randomness_and_obfuscators_are_encryptions_of_zero(engine, peer_engine):
    cts = engine.encrypt_ints([7] * 5)
    assert len(set(int(c) for c in cts)) == 5
    for eng in (engine, peer_engine):
        rhos = eng.obfuscators(3)
        assert len(set(int(r) for r in rhos)) == 3
        assert engine.decrypt_ints(rhos) == [0, 0, 0]
    assert engine.randomness.kind == "djn" and engine.randomness.exponent_bits == 512
    assert peer_engine.randomness.kind == "full"


def test_djn_needs_the_private_key(keys1024):
    with pytest.raises(he.CryptoError, match="own key"):
        he.PaillierEngine(keys1024[0], None, randomness="djn")


def test_rerandomize_keeps_the_plaintext(engine, peer_engine):
    cts = engine.encrypt_ints([3, -4, 5])
    for eng in (engine, peer_engine):
        fresh = eng.rerandomize(cts)
        assert all(int(a) != int(b) for a, b in zip(cts, fresh))
        assert engine.decrypt_ints(fresh) == [3, -4, 5]


@settings(max_examples=25, deadline=None)
@given(st.lists(st.tuples(st.integers(-2 ** 70, 2 ** 70), st.integers(-2 ** 70, 2 ** 70),
                          st.integers(-2 ** 40, 2 ** 40)), min_size=1, max_size=4))
def test_ops_agree_exactly_with_phe(engine, keys1024, triples):
    pub, _ = keys1024
    a = engine.encrypt_ints([t[0] for t in triples])
    b = engine.encrypt_ints([t[1] for t in triples])
    ks = [t[2] for t in triples]
    added = engine.add(a, b)
    plus_plain = engine.add_plain(a, ks)
    times = engine.mul_scalar(a, ks)
    for i, k in enumerate(ks):
        pa, pb = phe_ct(pub, a[i]), phe_ct(pub, b[i])
        assert int(added[i]) == raw(pa + pb)
        assert int(plus_plain[i]) == raw(pa + k)
        assert int(times[i]) == raw(pa * k)                 # negative k: phe also inverts the ciphertext
        assert int(engine.mul_scalar([a[i]], k)[0]) == raw(pa * k)
    assert engine.decrypt_ints(times) == [t[0] * t[2] for t in triples]
    assert engine.decrypt_ints(engine.sub(a, b)) == [t[0] - t[1] for t in triples]
    assert engine.decrypt_ints(engine.negate(a)) == [-t[0] for t in triples]


def test_mul_by_negative_scalar_uses_the_inverse_not_a_huge_exponent(engine):
    c = engine.encrypt_ints([11])[0]
    inv = gmpy2.invert(c, engine.nsquare)
    assert engine.mul_scalar([c], -3)[0] == gmpy2.powmod(inv, 3, engine.nsquare)
    assert engine.mul_scalar([c], 0)[0] == 1 and engine.decrypt_ints(engine.mul_scalar([c], 0)) == [0]


# the protocol's exponents are activations (|H| <= 2^27 at the default 22-bit precision, activation bound 32) and
# per-example gradients (|D| <= 2^28 at 24 bits): draw up to +-2^30 and always include the edges
exponent_entries = st.one_of(st.integers(-2 ** 30, 2 ** 30),
                             st.sampled_from([0, 1, -1, 2 ** 27, -2 ** 27, 2 ** 28, -2 ** 28, 2 ** 30, -2 ** 30]))


@settings(max_examples=40, deadline=None)
@given(st.data(), st.sampled_from(["comb", "pippenger", "direct", None]), st.integers(2, 9))
def test_multiexp_matches_term_by_term_phe(engine, keys1024, data, algorithm, window):
    pub, _ = keys1024
    I, J = data.draw(st.integers(1, 5)), data.draw(st.integers(1, 6))
    E = np.array(data.draw(st.lists(st.lists(exponent_entries, min_size=J, max_size=J), min_size=I, max_size=I)),
                 dtype=np.int64)
    m = data.draw(st.lists(st.integers(-2 ** 30, 2 ** 30), min_size=J, max_size=J))
    bases = engine.encrypt_ints(m)
    out = engine.multiexp(bases, E, algorithm=algorithm, window=window if algorithm else None)
    phe_bases = [phe_ct(pub, b) for b in bases]
    for i in range(I):
        expected = sum((phe_bases[j] * int(E[i, j]) for j in range(J)), phe_ct(pub, 1))
        assert int(out[i]) == raw(expected)
    assert engine.decrypt_ints(out) == [sum(int(E[i, j]) * m[j] for j in range(J)) for i in range(I)]


def test_multiexp_big_python_int_exponents(engine):
    bases = engine.encrypt_ints([3, -5])
    E = np.array([[1 << 100, -(1 << 90) + 7], [0, 0]], dtype=object)
    out = engine.multiexp(bases, E)
    assert engine.decrypt_ints(out) == [3 * (1 << 100) - 5 * (-(1 << 90) + 7), 0]


def test_plan_picks_comb_for_few_bases_and_buckets_for_many():
    # the protocol's shapes at the default layout (2048-bit key, d = m = 16, 22/24 fixed-point bits, 2 rows per
    # ciphertext, 512-row batch): forward / input gradient = 32 bases x 256 outputs with activation (+-2^27) or
    # gradient (+-2^28) exponents; weight gradient h^T D = 512 bases x 16 outputs with activation exponents
    rng = np.random.default_rng(0)
    assert me.plan(rng.integers(-2 ** 27, 2 ** 27, size=(256, 32))).algorithm == "comb"
    assert me.plan(rng.integers(-2 ** 28, 2 ** 28, size=(256, 32))).algorithm == "comb"
    assert me.plan(rng.integers(-2 ** 27, 2 ** 27, size=(16, 512))).algorithm == "pippenger"


def test_batch_invert(engine):
    xs = engine.encrypt_ints([1, 2, 3, 4])
    inv = me.batch_invert(xs, engine.nsquare)
    assert all(x * y % engine.nsquare == 1 for x, y in zip(xs, inv))


@pytest.mark.parametrize("backend", ["thread", "process"])
def test_two_workers_give_identical_results(keys1024, backend):
    pub, priv = keys1024
    eng = he.PaillierEngine(pub, priv, workers=2, backend=backend)
    assert eng.executor.workers == 2 and eng.executor.backend == backend
    rng = np.random.default_rng(5)
    plains = [int(v) for v in rng.integers(-1000, 1000, size=9)]
    cts = eng.encrypt_ints(plains)
    assert eng.decrypt_ints(cts) == plains
    for shape in ((7, 9), (2, 9)):      # comb splits the bases, pippenger the outputs
        E = rng.integers(-2 ** 16, 2 ** 16, size=shape)
        for algorithm in ("comb", "pippenger"):
            assert eng.multiexp(cts, E, algorithm=algorithm) == he.PaillierEngine(pub, priv).multiexp(
                cts, E, algorithm=algorithm)
    assert eng.decrypt_ints(eng.mul_scalar(cts, -3)) == [-3 * p for p in plains]
    assert eng.decrypt_ints(eng.rerandomize(cts)) == plains


def test_workers_one_has_no_pool(keys1024):
    eng = he.PaillierEngine(keys1024[0], keys1024[1], workers=1)
    assert eng.executor.backend == "serial"
    with pytest.raises(ValueError):
        he.PaillierEngine(keys1024[0], keys1024[1], workers=0)


def test_background_pool_serves_precomputed_randomness(keys1024):
    pub, priv = keys1024
    with he.PaillierEngine(pub, None, pool_size=4) as peer:
        assert peer.prefill(4, timeout=60)
        cts = peer.encrypt_ints([1, 2, 3, 4, 5, 6])
        assert peer.pool.served >= 4
        assert he.PaillierEngine(pub, priv).decrypt_ints(cts) == [1, 2, 3, 4, 5, 6]
    assert peer.pool._closed


def test_decrypt_needs_private_key(peer_engine):
    with pytest.raises(he.CryptoError, match="private key"):
        peer_engine.decrypt_ints(peer_engine.encrypt_ints([1]))


def test_job_runtime_hooks(keys1024):
    ops = he.new_private_ops(1024, workers=1)
    peer = he.new_public_ops(int(ops.n), workers=1, pool_size=0)
    cts = peer.rerandomize(ops.encrypt_ints([9]))
    assert ops.decrypt_ints(he.ciphertexts_from_bytes(he.ciphertexts_to_bytes(cts, peer.public_key),
                                                      ops.public_key, count=1)) == [9]


def test_2048_bit_engine_agrees_with_phe(engine2048, keys2048):
    pub, priv = keys2048
    cts = engine2048.encrypt_ints([123, -456])
    assert [priv.decrypt(phe_ct(pub, c)) for c in cts] == [123, -456]
    E = np.array([[3, -2], [-70000, 1]])
    out = engine2048.multiexp(cts, E)
    assert int(out[1]) == raw(phe_ct(pub, cts[0]) * -70000 + phe_ct(pub, cts[1]))
    assert engine2048.decrypt_ints(out) == [3 * 123 + 2 * 456, -70000 * 123 - 456]


def test_peer_djn_rerandomization_keeps_plaintexts_and_refuses_bad_bases():
    from vfl import he
    owner = he.new_private_ops(1024)
    peer = he.new_public_ops(int(owner.n), djn_base=owner.djn_base)
    assert peer.randomness.kind == "peer_djn"
    cts = owner.encrypt_ints([3, -4, 5])
    fresh = peer.rerandomize(cts)
    assert all(int(a) != int(b) for a, b in zip(cts, fresh))
    assert owner.decrypt_ints(fresh) == [3, -4, 5]
    # exponents of the re-randomizer are longer than the owner's by the statistical slack
    assert peer.randomness.spec.exponent_bits == owner.randomness.exponent_bits + 100
    with pytest.raises((ValueError, he.CryptoError)):
        he.new_public_ops(int(owner.n), djn_base=int(owner.n))  # not a unit mod n^2


def test_decrypt_ints_refuses_values_outside_the_ciphertext_group(engine):
    """CRT decryption of 0 (or of a multiple of p or q) returned an arbitrary number instead of an error."""
    p, q, n = engine.private_key.p, engine.private_key.q, int(engine.n)
    good = engine.encrypt_ints([1, 2])
    for bad, match in ((0, "not in the range 0 < c < n"), (int(engine.nsquare), "not in the range"),
                       (-5, "not in the range"), (n, "shares a factor"), (p * 17, "shares a factor"),
                       (q, "shares a factor")):
        with pytest.raises(he.MalformedCiphertextError, match=f"ciphertext 2 .*{match}") as info:
            engine.decrypt_ints(good + [bad])
        assert info.value.index == 2
    assert engine.decrypt_ints([1]) == [0]          # 1 is a valid (randomness-free) encryption of 0


def _modulus_with_order_three_elements():
    """n = p q (512-bit primes, 3 | p - 1) and an element of order 3 mod n^2: 1 mod q^2, order 3 mod p^2."""
    start = (1 << 511) + (1 << 510)
    p = gmpy2.next_prime(start + 1000)
    while p % 3 != 1:
        p = gmpy2.next_prime(p)
    q = gmpy2.next_prime(start + (1 << 400))
    p2, q2 = p * p, q * q
    a = gmpy2.mpz(2)
    while True:
        g = gmpy2.powmod(a, p * (p - 1) // 3, p2)       # order divides 3
        if g != 1:
            break
        a += 1
    element = g + p2 * ((1 - g) * gmpy2.invert(p2, q2) % q2)   # CRT: g mod p^2, 1 mod q^2
    assert gmpy2.powmod(element, 3, p2 * q2) == 1 and element * element % (p2 * q2) != 1
    return int(p * q), int(element), int(p), int(q)


def test_peer_djn_refuses_trivially_unfit_bases():
    """A base of 1 used to be accepted, and re-randomizing then returned every ciphertext unchanged."""
    owner = he.new_private_ops(1024)
    n = int(owner.n)
    n2 = n * n
    for base, match in ((1, "1 mod n"), (1 + 5 * n, "1 mod n"), (n2 - 1, "order 2"), (n, "not a unit"),
                        (n2 + 3, "not a unit")):
        with pytest.raises(he.KeyFormatError, match=match):
            he.new_public_ops(n, djn_base=base, pool_size=0)
    # an element of order 2 other than -1: -1 mod p^2, 1 mod q^2 (found with the factors, as a cheat would)
    p, q = owner.private_key.p, owner.private_key.q
    p2, q2 = p * p, q * q
    minus_one_mod_p = (p2 - 1) + p2 * ((1 - (p2 - 1)) * int(gmpy2.invert(p2, q2)) % q2)
    with pytest.raises(he.KeyFormatError, match="order 2"):
        he.new_public_ops(n, djn_base=minus_one_mod_p, pool_size=0)
    # a small odd order, which squaring does not catch
    n3, order3, _, _ = _modulus_with_order_three_elements()
    with pytest.raises(he.KeyFormatError, match="small order"):
        he.new_public_ops(n3, djn_base=order3, pool_size=0)
    # the owner's real base passes, and the job runtime turns a refusal into a ProtocolError at set-up
    assert he.new_public_ops(n, djn_base=owner.djn_base, pool_size=0).randomness.kind == "peer_djn"
    from vfl.errors import ProtocolError
    from vfl.protocol.schemes import paillier
    with pytest.raises(ProtocolError, match="setup: peer public key refused: .*1 mod n"):
        paillier.peer_key(paillier.public_key_bytes(owner), b"\x01", 1024, LocalCompute(1))
