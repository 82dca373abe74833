import json
import struct

import numpy as np
import pytest
import torch
from hypothesis import event, given, settings
from hypothesis import strategies as st

from vfl import he
from vfl.he import EncryptedTensor
from vfl.he.encoding import FixedPoint


def fx(x, f):
    """The fixed-point integers the tensor layer uses (round half to even)."""
    return FixedPoint(f).encode(x).astype(object)


small = st.floats(min_value=-100, max_value=100, allow_nan=False, allow_infinity=False)


@settings(max_examples=20, deadline=None)
@given(st.data(), st.integers(4, 20), st.sampled_from([0, 1]))
def test_encrypt_decrypt_add_mul_match_fixed_point_and_float_math(engine, data, f, axis):
    R, C = data.draw(st.integers(1, 20)), data.draw(st.integers(1, 4))
    x = np.array(data.draw(st.lists(st.lists(small, min_size=C, max_size=C), min_size=R, max_size=R)))
    y = np.array(data.draw(st.lists(st.lists(small, min_size=C, max_size=C), min_size=R, max_size=R)))
    k = data.draw(st.integers(-1000, 1000))
    s = data.draw(small)
    tx, ty = EncryptedTensor.encrypt(engine, x, precision=f, pack_axis=axis), EncryptedTensor.encrypt(
        engine, y, precision=f, pack_axis=axis)
    xi, yi = fx(x, f), fx(y, f)
    assert tx.decrypt_ints().tolist() == xi.tolist()
    assert (tx + ty).decrypt_ints().tolist() == (xi + yi).tolist()
    assert (tx - ty).decrypt_ints().tolist() == (xi - yi).tolist()
    assert (tx * k).decrypt_ints().tolist() == (xi * k).tolist()
    assert (tx + s).decrypt_ints().tolist() == (xi + int(fx(np.array(s), f))).tolist()
    scaled = tx.mul(s, precision=10)
    assert scaled.frac_bits == f + 10
    assert scaled.decrypt_ints().tolist() == (xi * int(fx(np.array(s), 10))).tolist()
    # rtol=0: only absolute errors. Encoding rounds to the nearest multiple of 2^-f (error <= 2^-(f+1)) and
    # decoding is exact, so x comes back within half a resolution step; k x + y within (|k| + 1) half-steps,
    # plus the float64 rounding of the reference k x + y itself (|k x + y| <= 1.1e5, so below 2^-35).
    half = 2.0 ** -(f + 1)
    assert np.allclose(tx.decrypt(), x, rtol=0, atol=half)
    assert np.allclose((tx * k + ty).decrypt(), x * k + y, rtol=0, atol=half * (abs(k) + 1) + 2.0 ** -35)


@settings(max_examples=12, deadline=None)
@given(st.data())
def test_matmul_and_rmatmul_exact(engine, data):
    B, d, m = data.draw(st.integers(1, 35)), data.draw(st.integers(1, 5)), data.draw(st.integers(1, 4))
    x = np.array(data.draw(st.lists(st.lists(small, min_size=d, max_size=d), min_size=B, max_size=B)))
    w = np.array(data.draw(st.lists(st.lists(st.floats(-2, 2), min_size=m, max_size=m), min_size=d, max_size=d)))
    a = np.array(data.draw(st.lists(st.lists(st.floats(-2, 2), min_size=B, max_size=B), min_size=m, max_size=m)))
    tx = EncryptedTensor.encrypt(engine, x, precision=12)
    out = tx @ w
    assert out.shape == (B, m) and out.frac_bits == 24
    assert out.decrypt_ints().tolist() == np.dot(fx(x, 12), fx(w, 12)).tolist()
    # rtol=0: x and w are each rounded to 2^-12 (error e, delta <= 2^-13), so |x w - x~ w~| <= 2^-13 (sum |x| +
    # sum |w| + d 2^-13) <= 2^-12 (sum |x| + 2 d) with |w| <= 2; the decoded product itself is exact
    assert np.allclose(out.decrypt(), x @ w, rtol=0, atol=(np.abs(x).sum(axis=1).max() + 2 * d) * 2.0 ** -12)
    tp = EncryptedTensor.encrypt(engine, x, precision=12, pack_axis=1, slot_bits=48)
    left = a @ tp
    assert left.shape == (m, d) and left.decrypt_ints().tolist() == np.dot(fx(a, 12), fx(x, 12)).tolist()


def test_rmatmul_over_several_ciphertexts_per_row(engine):
    rng = np.random.default_rng(2)
    x = rng.normal(size=(6, 40))            # 40 columns in 15-slot ciphertexts: 3 per row
    a = rng.integers(-5, 5, size=(3, 6))
    t = EncryptedTensor.encrypt(engine, x, precision=16, pack_axis=1)
    assert len(t.ciphertexts) == 18
    assert (a @ t).decrypt_ints().tolist() == np.dot(a.astype(object), fx(x, 16)).tolist()
    assert t.sum(axis=0).decrypt_ints().tolist() == [fx(x, 16).sum(axis=0).tolist()]


def test_torch_in_torch_out(engine):
    x = torch.linspace(-3, 3, 12).reshape(4, 3)
    t = EncryptedTensor.encrypt(engine, x, precision=20)
    back = t.decrypt()
    # rtol=0, atol = half a step of the 2^-20 resolution (the identity is encoded exactly)
    assert isinstance(back, torch.Tensor) and torch.allclose(back, x.double(), rtol=0, atol=2 ** -21)
    assert torch.allclose((t @ torch.eye(3)).decrypt(), x.double(), rtol=0, atol=2 ** -21)


def test_negative_and_extreme_values_decode_exactly(engine):
    b = 16
    top = (1 << (b - 1)) - 1
    ints = np.array([[top, -top, 0, -1, 1, top - 1, -(top - 1)]]).T
    t = EncryptedTensor.encrypt_ints(engine, ints, slot_bits=b)
    assert t.codec.num_slots == he.max_slots(1024, 16) and t.bound == top
    assert t.decrypt_ints().tolist() == ints.tolist()
    assert (-t).decrypt_ints().tolist() == (-ints).tolist()
    x = np.array([-1.5, -2.0 ** -20, 2.0 ** 30, -(2.0 ** 30)])
    assert EncryptedTensor.encrypt(engine, x, precision=20).decrypt().tolist() == x.tolist()


def test_overflow_is_refused_not_garbage(engine):
    b = 16
    top = (1 << (b - 1)) - 1
    t = EncryptedTensor.encrypt_ints(engine, np.array([[top], [-5]]), slot_bits=b)
    with pytest.raises(he.OverflowBudgetError, match="add: the result could reach 16 bits"):
        t + t
    with pytest.raises(he.OverflowBudgetError, match="mul by 2"):
        t * 2
    with pytest.raises(he.OverflowBudgetError, match="add_plain"):
        t + 1
    t2 = EncryptedTensor.encrypt_ints(engine, np.array([[top - 1], [-5]]), slot_bits=b)
    assert (t2 + 1).decrypt_ints().tolist() == [[top], [-4]]      # within budget: fine
    with pytest.raises(he.OverflowBudgetError, match="encrypt"):
        EncryptedTensor.encrypt_ints(engine, np.array([top + 1]), slot_bits=b)
    x = EncryptedTensor.encrypt(engine, np.ones((4, 3)), precision=8, slot_bits=24)
    with pytest.raises(he.OverflowBudgetError, match="matmul"):
        x @ np.full((3, 2), 100.0)         # 256 * 3 * 25600 > 2^23
    assert (x @ np.full((3, 2), 1.0)).decrypt().tolist() == [[3.0, 3.0]] * 4     # exact: 1.0 is dyadic
    with pytest.raises(he.OverflowBudgetError, match="rescale"):
        x.rescale(4)
    assert issubclass(he.OverflowBudgetError, he.CryptoError)


def test_budget_bound_is_never_exceeded_by_actual_values(engine):
    rng = np.random.default_rng(9)
    x = rng.uniform(-1, 1, size=(30, 4))
    t = EncryptedTensor.encrypt(engine, x, precision=16, slot_bits=40)
    y = ((t * -3) @ rng.uniform(-1, 1, size=(4, 4))) + 0.5
    assert max(abs(int(v)) for v in y.decrypt_ints().reshape(-1)) <= y.bound <= y.codec.max_value


def test_layout_errors(engine):
    t = EncryptedTensor.encrypt(engine, np.zeros((3, 2)))
    with pytest.raises(he.LayoutError, match="packed along axis 0"):
        np.zeros((2, 3)) @ t
    with pytest.raises(he.LayoutError, match="cannot multiply"):
        t @ np.zeros((3, 3))
    with pytest.raises(he.LayoutError, match="only a plain scalar"):
        t * np.ones((3, 2))
    with pytest.raises(he.LayoutError, match="at most 15"):
        EncryptedTensor.encrypt(engine, np.zeros(3), num_slots=16)
    other = EncryptedTensor.encrypt(he.PaillierEngine.generate(1024), np.zeros((3, 2)))
    with pytest.raises(he.KeyMismatchError):
        t + other


def test_mask_uniform_statistical_and_ring(engine):
    x = np.array([[-3.0], [0.5], [7.25]])
    t = EncryptedTensor.encrypt(engine, x, precision=8, slot_bits=64)
    masked, r = t.mask_uniform()              # k = bits(bound) + 40
    assert masked.bound == t.bound + (1 << (t.bound_bits + 40))
    assert all(0 <= int(v) < 1 << (t.bound_bits + 40) for v in r.reshape(-1))
    assert (masked.decrypt_ints() - r).tolist() == fx(x, 8).tolist()
    ring, r2 = t.mask_uniform(k=16, ring=True, cover_bits=20)
    share = EncryptedTensor.ring_reduce(ring.decrypt_ints(), 16)
    assert he.ring_reconstruct(share, he.reduce_mod_2k(-r2, 16), 16).tolist() == fx(x, 8).tolist()
    with pytest.raises(he.OverflowBudgetError):
        t.mask_uniform(k=70)


def test_rerandomize_tensor(engine):
    t = EncryptedTensor.encrypt(engine, np.arange(6.0).reshape(3, 2))
    fresh = t.rerandomize()
    assert all(int(a) != int(b) for a, b in zip(t.ciphertexts, fresh.ciphertexts))
    assert fresh.decrypt().tolist() == t.decrypt().tolist()


def test_bytes_round_trip_and_malformed_headers(engine, peer_engine):
    t = EncryptedTensor.encrypt(engine, np.arange(-10.0, 10.0).reshape(5, 4), precision=10)
    data = t.to_bytes()
    received = EncryptedTensor.from_bytes(peer_engine, data)        # the peer only has the public key
    sent_back = EncryptedTensor.from_bytes(engine, (received * 2).rerandomize().to_bytes())
    assert sent_back.decrypt().tolist() == (np.arange(-10.0, 10.0).reshape(5, 4) * 2).tolist()

    hlen = struct.unpack(">I", data[6:10])[0]
    header = json.loads(data[10:10 + hlen])

    def with_header(**changes):
        h = dict(header, **changes)
        body = json.dumps(h).encode()
        return data[:6] + struct.pack(">I", len(body)) + body + data[10 + hlen:]

    with pytest.raises(he.WireFormatError, match="magic"):
        EncryptedTensor.from_bytes(engine, b"XX" + data[2:])
    with pytest.raises(he.WireFormatError, match="shape"):
        EncryptedTensor.from_bytes(engine, with_header(shape=[0, 4]))
    with pytest.raises(he.MalformedCiphertextError, match="expected 8 ciphertexts, got 4"):
        EncryptedTensor.from_bytes(engine, with_header(shape=[5, 8]))
    with pytest.raises(he.WireFormatError, match="slot layout"):
        EncryptedTensor.from_bytes(engine, with_header(num_slots=40))
    with pytest.raises(he.WireFormatError, match="bound"):
        EncryptedTensor.from_bytes(engine, with_header(bound=str(1 << 70)))
    with pytest.raises(he.WireFormatError, match="2048-bit key"):
        EncryptedTensor.from_bytes(engine, with_header(key_bits=2048))
    with pytest.raises(he.WireFormatError, match="limit"):
        EncryptedTensor.from_bytes(engine, data, max_count=2)
    with pytest.raises(he.MalformedCiphertextError, match="truncated"):
        EncryptedTensor.from_bytes(engine, data[:-3])


def test_full_size_2048_bit_tensor(engine2048):
    rng = np.random.default_rng(4)
    x = rng.normal(size=(70, 3))
    t = EncryptedTensor.encrypt(engine2048, x, precision=16)
    assert t.codec.num_slots == 31 and len(t.ciphertexts) == 9
    w = rng.normal(size=(3, 2))
    assert (t @ w).decrypt_ints().tolist() == np.dot(fx(x, 16), fx(w, 16)).tolist()


def test_share_linearity_protocol_pattern(engine):
    """[U]^h * Enc(hV) = [hW] with 80-bit shares U, V and a small W (the lead's forward pass shape)."""
    rng = np.random.default_rng(7)
    d, m, B = 3, 4, 5
    codec = he.SlotCodec(40, m * 3, 1024)               # 3 rows of m slots per plaintext
    W = rng.integers(-2 ** 10, 2 ** 10, size=(d, m)).astype(object)
    V = he.uniform_masks((d, m), 80) - (1 << 79)
    U = W - V
    h = rng.integers(-2 ** 12, 2 ** 12, size=(B, d))
    groups = 3
    bases = engine.encrypt_ints([codec.pack(U[j:j + 1], offset=t * m)[0] for j in range(d) for t in range(groups)])
    n_ct = -(-B // groups)
    E = np.zeros((n_ct, d * groups), dtype=np.int64)
    for row in range(B):
        for j in range(d):
            E[row // groups, j * groups + row % groups] = h[row, j]
    z = engine.multiexp(bases, E)
    hv = np.dot(h.astype(object), V)
    z = engine.add_plain(z, codec.pack_grouped(hv, m))
    got = codec.unpack_grouped(engine.decrypt_ints(z), B, m)
    assert got.tolist() == np.dot(h.astype(object), W).tolist()


# ------------------------------------------------------------------------------------------ audit fixes

def _header_and_body(data):
    hlen = struct.unpack(">I", data[6:10])[0]
    return json.loads(data[10:10 + hlen]), data[10 + hlen:]


def _with_header(header, body):
    raw = json.dumps(header).encode()
    return b"VFLHE\x01" + struct.pack(">I", len(raw)) + raw + body


@pytest.mark.parametrize("pack_axis", [0, 1, 3])
def test_huge_declared_shape_is_refused_not_wrapped_to_zero_ciphertexts(engine, pack_axis):
    """np.prod on int64 wrapped 2^93 to 0: such a header with no ciphertexts was accepted."""
    header, _ = _header_and_body(EncryptedTensor.encrypt(engine, np.zeros((2, 2))).to_bytes())
    data = _with_header(dict(header, shape=[1, 2 ** 31, 2 ** 31, 2 ** 31], pack_axis=pack_axis), b"")
    with pytest.raises(he.WireFormatError, match="declares 9903520314283042199192993792 values, over the limit"):
        EncryptedTensor.from_bytes(engine, data)
    assert EncryptedTensor.ciphertext_count((1, 2 ** 31, 2 ** 31, 2 ** 31), 0, 15) == 2 ** 93


def test_declared_sizes_are_capped_exactly(engine):
    t = EncryptedTensor.encrypt(engine, np.zeros((4, 3)), precision=4)
    header, body = _header_and_body(t.to_bytes())
    with pytest.raises(he.WireFormatError, match="over the limit of 11"):
        EncryptedTensor.from_bytes(engine, t.to_bytes(), max_elements=11)
    assert EncryptedTensor.from_bytes(engine, t.to_bytes(), max_elements=12).shape == (4, 3)
    # within the element cap but over the ciphertext cap: refused before parsing any ciphertext
    with pytest.raises(he.WireFormatError, match="needs 65536 ciphertexts, over the limit of 1024"):
        EncryptedTensor.from_bytes(engine, _with_header(dict(header, shape=[1, 1 << 16]), body), max_count=1024)


def test_ring_mask_refuses_values_the_ring_cannot_hold(engine):
    """300 masked in Z_2^8 used to reconstruct silently as 44."""
    t = EncryptedTensor.encrypt_ints(engine, np.array([[300], [-2]]), slot_bits=64)
    with pytest.raises(he.OverflowBudgetError, match=r"ring=True, k=8.*\|v\| <= 300.*use k >= 10"):
        t.mask_uniform(k=8, ring=True, cover_bits=20)
    with pytest.raises(he.OverflowBudgetError):
        t.mask_uniform(k=9, ring=True, cover_bits=20)         # 300 >= 2^8
    masked, r = t.mask_uniform(k=10, ring=True, cover_bits=20)
    share = EncryptedTensor.ring_reduce(masked.decrypt_ints(), 10)
    assert he.ring_reconstruct(share, he.reduce_mod_2k(-r, 10), 10).tolist() == [[300], [-2]]
    edge = EncryptedTensor.encrypt_ints(engine, np.array([[127], [-127]]), slot_bits=64)
    masked, r = edge.mask_uniform(k=8, ring=True, cover_bits=20)   # |v| <= 127 < 2^7 fits Z_2^8
    share = EncryptedTensor.ring_reduce(masked.decrypt_ints(), 8)
    assert he.ring_reconstruct(share, he.reduce_mod_2k(-r, 8), 8).tolist() == [[127], [-127]]
    with pytest.raises(he.OverflowBudgetError):
        EncryptedTensor.encrypt_ints(engine, np.array([[128]]), slot_bits=64).mask_uniform(k=8, ring=True)


def test_ciphertexts_without_randomness_are_not_sent(engine, peer_engine):
    t = EncryptedTensor.encrypt(engine, np.arange(6.0).reshape(3, 2), precision=8)
    zero = t * 0                                          # every ciphertext is exactly 1
    assert all(int(c) == 1 for c in zero.ciphertexts)
    with pytest.raises(he.MalformedCiphertextError,
                       match="ciphertext 0 carries no encryption randomness.*re-randomize"):
        zero.to_bytes()
    with pytest.raises(he.MalformedCiphertextError, match="no encryption randomness"):
        (zero + 5.0).to_bytes()                           # 1 + n m: reveals m
    row = t @ np.array([[0.0], [0.0]])                    # all-zero matrix: the product ciphertext is 1
    with pytest.raises(he.MalformedCiphertextError, match="no encryption randomness"):
        row.to_bytes()
    received = EncryptedTensor.from_bytes(peer_engine, (zero + 5.0).rerandomize().to_bytes())
    assert EncryptedTensor.from_bytes(engine, received.rerandomize().to_bytes()).decrypt().tolist() == [[5.0] * 2] * 3
    assert EncryptedTensor.from_bytes(engine, row.rerandomize().to_bytes()).decrypt().tolist() == [[0.0]] * 3


def test_decrypt_refuses_values_that_are_no_ciphertexts(engine, keys1024):
    """CRT decryption of c = 0 (or a multiple of p or q) used to return an arbitrary number."""
    _, priv = keys1024
    t = EncryptedTensor.encrypt(engine, np.arange(40.0).reshape(20, 2), precision=4)   # 4 ciphertexts
    for bad, match in ((0, "0 < c < n"), (engine.nsquare, "0 < c < n"), (int(engine.n), "shares a factor"),
                       (priv.p * 3, "shares a factor"), (priv.q, "shares a factor")):
        cts = list(t.ciphertexts)
        cts[2] = bad
        broken = EncryptedTensor(engine, cts, t.shape, t.pack_axis, t.codec, t.frac_bits, t.bound)
        with pytest.raises(he.MalformedCiphertextError, match=f"ciphertext 2 .*{match}") as info:
            broken.decrypt()
        assert info.value.index == 2


# --- random chains of operations: exact or refused, never wrong

values = st.floats(min_value=-1000, max_value=1000, allow_nan=False, allow_infinity=False)


def _matrix(data, rows, cols, elements=values):
    return np.array(data.draw(st.lists(st.lists(elements, min_size=cols, max_size=cols), min_size=rows,
                                       max_size=rows)), dtype=np.float64).reshape(rows, cols)


@settings(max_examples=40, deadline=None)
@given(st.data(), st.sampled_from([20, 32, 48]), st.integers(0, 12),
       st.lists(st.sampled_from(["add", "sub", "add_plain", "mul_int", "mul_float", "matmul", "matmul_int", "neg"]),
                min_size=1, max_size=6))
def test_random_chains_decode_exactly_or_are_refused(engine, data, slot_bits, f0, chain):
    """Each step either raises OverflowBudgetError or gives exactly the fixed-point reference (Python ints)."""
    R, C = data.draw(st.integers(1, 6)), data.draw(st.integers(1, 3))
    x = _matrix(data, R, C)
    ref, f = fx(x, f0), f0                               # the exact integers the tensor must hold, at 2^-f
    limit = (1 << (slot_bits - 1)) - 1
    try:
        t = EncryptedTensor.encrypt(engine, x, precision=f0, slot_bits=slot_bits)
    except he.OverflowBudgetError:
        assert max(abs(int(v)) for v in ref.reshape(-1)) > limit     # refused only when it does not fit
        return
    for op in chain:
        try:
            if op in ("add", "sub"):
                fy = data.draw(st.integers(0, 12))
                y = _matrix(data, *t.shape)
                ty = EncryptedTensor.encrypt(engine, y, precision=fy, slot_bits=slot_bits)
                new_f = max(f, fy)
                sign = 1 if op == "add" else -1
                new_ref = ref * (1 << (new_f - f)) + sign * fx(y, fy) * (1 << (new_f - fy))
                new_t = t + ty if op == "add" else t - ty
            elif op == "add_plain":
                plain = _matrix(data, 1, t.shape[1])     # broadcast over the rows
                new_f, new_ref = f, ref + fx(plain, f)
                new_t = t + plain
            elif op == "mul_int":
                k = data.draw(st.integers(-5000, 5000))
                new_f, new_ref, new_t = f, ref * k, t * k
            elif op == "mul_float":
                s, p = data.draw(values), data.draw(st.integers(0, 8))
                new_f, new_ref = f + p, ref * int(fx(np.array(s), p))
                new_t = t.mul(s, precision=p)
            elif op in ("matmul", "matmul_int"):
                m = data.draw(st.integers(1, 3))
                if op == "matmul":
                    p = data.draw(st.integers(0, 8))
                    w = _matrix(data, t.shape[1], m, st.floats(-50, 50, allow_nan=False))
                    new_f, new_ref, new_t = f + p, np.dot(ref, fx(w, p)), t.matmul(w, precision=p)
                else:
                    w = np.array(data.draw(st.lists(st.integers(-300, 300), min_size=t.shape[1] * m,
                                                    max_size=t.shape[1] * m)), dtype=np.int64).reshape(-1, m)
                    new_f, new_ref, new_t = f, np.dot(ref, w.astype(object)), t @ w
            else:
                new_f, new_ref, new_t = f, -ref, -t
        except he.OverflowBudgetError:
            event(f"{op}: refused")
            continue
        event(f"{op}: exact")
        t, ref, f = new_t, new_ref, new_f
        got = t.decrypt_ints()
        assert t.frac_bits == f and t.shape == ref.shape
        assert got.tolist() == ref.tolist()                                  # exact, never a wrong value
        assert max(abs(int(v)) for v in ref.reshape(-1)) <= t.bound <= limit  # the bound is sound
        assert t.decrypt().tolist() == [[int(v) / (1 << f) for v in row] for row in ref]


def test_3072_bit_encrypt_decrypt_matmul(keys3072):
    """Few values: 3072-bit keys (128-bit security) work end to end and phe decrypts our ciphertexts."""
    from phe import paillier
    pub, priv = keys3072
    eng = he.PaillierEngine(pub, priv)
    rng = np.random.default_rng(30)
    x, w = rng.normal(size=(5, 2)), rng.normal(size=(2, 2))
    t = EncryptedTensor.encrypt(eng, x, precision=16)
    assert t.codec.num_slots == he.max_slots(3072, 64) == 47 and len(t.ciphertexts) == 2
    assert t.decrypt_ints().tolist() == fx(x, 16).tolist()
    assert (t @ w).decrypt_ints().tolist() == np.dot(fx(x, 16), fx(w, 16)).tolist()
    assert he.ciphertext_width(pub) == 768
    back = EncryptedTensor.from_bytes(eng, (t @ w).rerandomize().to_bytes())
    assert back.decrypt_ints().tolist() == np.dot(fx(x, 16), fx(w, 16)).tolist()
    cts = eng.encrypt_ints([5, -7])
    assert [priv.decrypt(paillier.EncryptedNumber(pub, int(c), 0)) for c in cts] == [5, -7]
