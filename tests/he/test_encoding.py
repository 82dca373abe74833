import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from vfl import he
from vfl.he.encoding import FixedPoint, SlotCodec

N1024 = (1 << 1023) + 1234567  # only the size matters for packing (an odd 1024-bit number)

floats = st.floats(min_value=-1e6, max_value=1e6, allow_nan=False, allow_infinity=False)


@settings(max_examples=60, deadline=None)
@given(st.lists(floats, min_size=1, max_size=20), st.integers(0, 40))
def test_fixed_point_round_trip_within_half_ulp(values, f):
    fp = FixedPoint(f)
    x = np.array(values)
    v = fp.encode(x)
    assert np.all(np.abs(fp.decode(v) - x) <= 2.0 ** -(f + 1) * (1 + 1e-12) + np.abs(x) * 2 ** -52)


def test_fixed_point_exact_for_dyadic_values_and_torch_input():
    fp = FixedPoint(8)
    x = torch.tensor([-3.5, 0.0, 1.25, -0.00390625, 127.99609375], dtype=torch.float32)
    v = fp.encode(x)
    assert v.dtype == np.int64 and v.tolist() == [-896, 0, 320, -1, 32767]
    assert fp.decode(v).tolist() == x.double().tolist()


def test_fixed_point_refuses_nan_inf_and_too_large():
    fp = FixedPoint(16, max_bits=20)
    with pytest.raises(he.EncodingError, match="index 1"):
        fp.encode(np.array([1.0, np.nan]))
    with pytest.raises(he.EncodingError, match="NaN and infinity"):
        fp.encode(np.array([np.inf]))
    with pytest.raises(he.EncodingError, match="20 bits"):
        fp.encode(np.array([0.0, 16.0]))
    assert fp.encode(np.array([15.99])).tolist() == [round(15.99 * 65536)]


def test_fixed_point_large_values_become_exact_python_ints():
    v = FixedPoint(60).encode(np.array([1e6, -2.0 ** 70]))
    assert v.dtype == object and v.tolist() == [10 ** 6 << 60, -(1 << 130)]


def slot_values(bits):
    lim = 1 << (bits - 1)
    return st.integers(-lim, lim - 1)


@settings(max_examples=80, deadline=None)
@given(st.data(), st.integers(2, 80))
def test_pack_unpack_signed_exact(data, bits):
    slots = he.max_slots(1024, bits)
    rows = data.draw(st.integers(1, 4))
    values = np.array(data.draw(st.lists(st.lists(slot_values(bits), min_size=slots, max_size=slots),
                                         min_size=rows, max_size=rows)), dtype=object)
    codec = SlotCodec(bits, slots, 1024)
    plains = codec.pack(values)
    # through the ring Z_n as encryption would: residues mod n, decoded centered
    back = codec.unpack([p % N1024 for p in plains], n=N1024)
    assert back.tolist() == values.tolist()


def test_extreme_slot_values_decode():
    codec = SlotCodec(16, 63, 1024)
    lo, hi = -(1 << 15), (1 << 15) - 1
    row = np.array([[lo, hi] * 31 + [lo]], dtype=object)
    assert codec.unpack([codec.pack(row)[0] % N1024], n=N1024).tolist() == row.tolist()
    row = np.array([[hi] * 62 + [lo]], dtype=object)
    assert codec.unpack([codec.pack(row)[0] % N1024], n=N1024).tolist() == row.tolist()


def test_layout_exceeding_the_plaintext_space_is_refused():
    assert he.max_slots(2048, 64) == 31 and he.max_slots(1024, 64) == 15
    SlotCodec(64, 31, 2048)
    with pytest.raises(he.LayoutError, match="at most 31"):
        SlotCodec(64, 32, 2048)
    with pytest.raises(he.LayoutError):
        SlotCodec(1024, 1, 1024)
    with pytest.raises(he.LayoutError, match="offset"):
        SlotCodec(64, 15).pack(np.zeros((1, 4), dtype=np.int64), offset=12)


def test_engine_codec_is_checked_against_its_key(engine):
    assert engine.slot_codec(64).num_slots == 15
    with pytest.raises(he.LayoutError):
        engine.slot_codec(64, 16)


def test_overflowed_slot_is_detected_on_unpack():
    codec = SlotCodec(8, 4)
    plain = codec.pack(np.array([[1, 2, 3, 100]]))[0] + codec.pack(np.array([[0, 0, 0, 100]]))[0]  # 200 > 127
    with pytest.raises(he.SlotOverflowError, match="slot 3"):
        codec.unpack([plain])


def test_linearity_allows_huge_intermediate_slots():
    """Shares U, V of ~80 bits packed separately; only U + V = W must fit the slot."""
    rng = np.random.default_rng(3)
    codec = SlotCodec(32, 31, 2048)
    w = rng.integers(-1000, 1000, size=(1, 31)).astype(object)
    v = np.array([[int(x) for x in he.uniform_masks(31, 80)]], dtype=object)
    u = w - v
    total = (codec.pack(u)[0] + codec.pack(v)[0])
    assert codec.unpack([total]).tolist() == w.tolist()


def test_offsets_and_grouped_rows():
    codec = SlotCodec(20, 12)
    a = codec.pack(np.array([[1, -2, 3]]), offset=3)[0]
    b = codec.pack(np.array([[-4, 5, -6]]), offset=6)[0]
    assert codec.unpack([a + b])[0].tolist() == [0, 0, 0, 1, -2, 3, -4, 5, -6, 0, 0, 0]
    rows = np.arange(-21, 21).reshape(14, 3)
    plains = codec.pack_grouped(rows)
    assert len(plains) == 4  # 4 rows of 3 per plaintext
    assert codec.unpack_grouped(plains, 14, 3).tolist() == rows.tolist()


def test_uniform_masks_range_and_spread():
    m = he.uniform_masks((2000,), 12)
    vals = np.array(m.tolist())
    assert vals.min() >= 0 and vals.max() < 4096
    assert len(set(vals.tolist())) > 1500      # ~1595 distinct expected for 2000 draws from 4096
    assert abs(vals.mean() - 2047.5) < 200
    assert he.statistical_mask_bits(30) == 70


def test_ring_masks_reconstruct():
    k = 16
    x = np.array([-5, 0, 7, 32767, -32768], dtype=object)
    r = he.ring_masks(x.shape, k, cover_bits=40)
    masked = x + r
    share_a = he.reduce_mod_2k(masked, k)        # what the decryptor keeps
    share_b = he.reduce_mod_2k(-r, k)            # what the masker keeps
    assert he.ring_reconstruct(share_a, share_b, k).tolist() == x.tolist()
    assert all(0 <= int(v) < 1 << k for v in share_a)
    assert all(int(v) >> k < 1 << 41 for v in r)


# chi-square critical value for 15 degrees of freedom at p = 0.001
CHI2_15_P001 = 37.70


def test_ring_share_is_exactly_uniform_whatever_x():
    """Exhaustive over a small ring: for every x and any cover t, u -> (x + u + 2^k t) mod 2^k is a bijection
    of Z_2^k, so a uniform u gives a uniform share whatever x is (perfect hiding of x mod 2^k)."""
    k = 4
    for x in range(-(1 << (k - 1)), 1 << (k - 1)):
        for t in (0, 1, (1 << 40) - 1):
            masked = np.array([x + u + (t << k) for u in range(1 << k)], dtype=object)
            assert sorted(he.reduce_mod_2k(masked, k).tolist()) == list(range(1 << k))


def test_ring_masks_hide_x_statistically(monkeypatch):
    """The code's own masks: the decryptor's share has the same (uniform) distribution for the two most
    different x of Z_2^4. A seeded byte source replaces os.urandom (in vfl.he.encoding only), so this is
    reproducible; a mask that is not uniform mod 2^k (e.g. drawn from [0, 2^(k-1))) fails it by far."""
    from types import SimpleNamespace
    from vfl.he import encoding
    rng = np.random.default_rng(11)
    monkeypatch.setattr(encoding, "os", SimpleNamespace(urandom=lambda size: rng.bytes(size)))
    k, draws = 4, 16 * 1000
    counts = {}
    for x in (-8, 7):
        r = he.ring_masks((draws,), k, cover_bits=20)
        share = he.reduce_mod_2k(x + r, k)
        counts[x] = np.bincount(np.array(share.tolist(), dtype=np.int64), minlength=16)
        expected = draws / 16
        assert ((counts[x] - expected) ** 2 / expected).sum() < CHI2_15_P001      # uniform on Z_2^4
    a, b = counts[-8], counts[7]
    assert ((a - b) ** 2 / (a + b)).sum() < CHI2_15_P001      # two-sample test: same distribution for both x
    # the check has teeth: the unmasked values, or a half-width mask, are far from uniform
    biased = he.reduce_mod_2k(-8 + he.uniform_masks((draws,), k - 1), k)
    skewed = np.bincount(np.array(biased.tolist(), dtype=np.int64), minlength=16)
    assert ((skewed - draws / 16) ** 2 / (draws / 16)).sum() > 100 * CHI2_15_P001


def test_unpack_detects_only_a_top_slot_overflow():
    """What strict unpacking can and cannot see (the docstring's claim): the guard is the budget."""
    codec = SlotCodec(8, 4)
    lower = codec.pack(np.array([[200, 0, 0, 0]]))[0]      # slot 0 overflowed: undetectable
    assert codec.unpack([lower]).tolist() == [[-56, 1, 0, 0]]
    top = codec.pack(np.array([[0, 0, 0, 200]]))[0]        # the top slot overflowed: detected
    with pytest.raises(he.SlotOverflowError, match="slot 3"):
        codec.unpack([top])
    assert "NOT detected" in SlotCodec.unpack.__doc__ and "most violations" not in SlotCodec.__doc__
