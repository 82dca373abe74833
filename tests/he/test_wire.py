import pytest

from vfl import he
from vfl.errors import CryptoError


def test_round_trip_fixed_width(engine, engine2048):
    for eng, width in ((engine, 256), (engine2048, 512)):
        cts = eng.encrypt_ints([1, -2, 3])
        data = he.ciphertexts_to_bytes(cts, eng.public_key)
        assert he.ciphertext_width(eng.public_key) == width and len(data) == 3 * width
        assert he.ciphertexts_from_bytes(data, eng.public_key, count=3) == cts
        assert eng.from_bytes(eng.to_bytes(cts)) == cts


def _bad(engine, index, value):
    cts = [int(c) for c in engine.encrypt_ints([1, 2, 3])]
    w = he.ciphertext_width(engine.public_key)
    data = bytearray(he.ciphertexts_to_bytes(cts, engine.public_key))
    data[index * w:(index + 1) * w] = value.to_bytes(w, "big")
    return bytes(data)


def test_out_of_range_ciphertexts_are_rejected_with_their_index(engine):
    n2 = engine.public_key.nsquare
    for value in (0, n2, (1 << (8 * 256)) - 1):
        with pytest.raises(he.MalformedCiphertextError, match="ciphertext 1 is not in the range 0 < c < n\\^2") as info:
            he.ciphertexts_from_bytes(_bad(engine, 1, value), engine.public_key)
        assert info.value.index == 1 and isinstance(info.value, CryptoError)


def test_ciphertext_sharing_a_factor_with_n_is_rejected(engine):
    p, q, n = engine.private_key.p, engine.private_key.q, engine.public_key.n
    for value in (p * 12345, p, q, q * (n - 5), n, 3 * n):
        with pytest.raises(he.MalformedCiphertextError, match="ciphertext 2 shares a factor") as info:
            he.ciphertexts_from_bytes(_bad(engine, 2, value), engine.public_key)
        assert info.value.index == 2


def test_length_count_and_limits(engine):
    data = he.ciphertexts_to_bytes(engine.encrypt_ints([1, 2]), engine.public_key)
    with pytest.raises(he.MalformedCiphertextError, match="index 1, is truncated"):
        he.ciphertexts_from_bytes(data[:-1], engine.public_key)
    with pytest.raises(he.MalformedCiphertextError, match="expected 3 ciphertexts, got 2"):
        he.ciphertexts_from_bytes(data, engine.public_key, count=3)
    with pytest.raises(he.MalformedCiphertextError, match="limit of 1"):
        he.ciphertexts_from_bytes(data, engine.public_key, max_count=1)
    with pytest.raises(he.MalformedCiphertextError, match="must be bytes"):
        he.ciphertexts_from_bytes("text", engine.public_key)
    assert he.ciphertexts_from_bytes(b"", engine.public_key) == []


def test_refuses_to_send_garbage(engine):
    with pytest.raises(he.MalformedCiphertextError, match="refusing to send"):
        he.ciphertexts_to_bytes([0], engine.public_key)


def test_refuses_to_send_ciphertexts_without_randomness(engine):
    """c = 1 mod n means rho = 1: multiplying by 0 gives 1, adding a plaintext m then gives 1 + n m."""
    c = engine.encrypt_ints([42])[0]
    zero = engine.mul_scalar([c], 0)
    assert zero == [1]
    n = engine.n
    for i, bad in ((0, zero), (1, [c, engine.add_plain(zero, [7])[0]]), (1, [c, 1 + n * 12345])):
        with pytest.raises(he.MalformedCiphertextError, match=f"ciphertext {i} carries no encryption randomness"):
            he.ciphertexts_to_bytes(bad, engine.public_key)
    fresh = engine.rerandomize(engine.add_plain(zero, [7]))
    assert engine.decrypt_ints(he.ciphertexts_from_bytes(he.ciphertexts_to_bytes(fresh, engine.public_key),
                                                         engine.public_key)) == [7]
