"""vfl.he.ifma: exponentiations on AVX-512 IFMA (Intel's crypto_mb) give gmpy2's integers, and the engine's
decryption is the same with and without it.

The IFMA tests need the `fast` extra (ipp-crypto) and a CPU with IFMA; they are skipped elsewhere, where the fallback
tests still run (the library turned off, or a modulus it does not take, is gmpy2's path)."""
from __future__ import annotations

import secrets

import gmpy2
import pytest
from gmpy2 import mpz
from phe import paillier

from vfl import he
from vfl.he import engine as engine_module
from vfl.he import ifma

needs_ifma = pytest.mark.skipif(not ifma.available(), reason=f"no IFMA exponentiation here: {ifma.backend()}")


def _odd(bits: int) -> mpz:
    return mpz(secrets.randbits(bits) | (1 << (bits - 1)) | 1)


@needs_ifma
@pytest.mark.parametrize("bits", [1024, 2048, 3072, 4096, 2047, 1000])
def test_powmod_list_equals_gmpy2_at_every_modulus_size(bits):
    """One exponent for all and one per base, counts that do not fill the eight lanes, bases above the modulus."""
    m = _odd(bits)
    assert ifma.mod_bits_for(int(m)) is not None
    for count in (1, 7, 8, 9, 17):
        bases = [mpz(secrets.randbits(bits + 40)) for _ in range(count)]  # reduced first
        e = mpz(secrets.randbits(1024))
        assert ifma.powmod_list(bases, e, m) == [gmpy2.powmod(b, e, m) for b in bases]
        exps = [mpz(secrets.randbits(secrets.choice([1, 30, 700, 1100]))) for _ in range(count)]
        assert ifma.powmod_list(bases, exps, m) == [gmpy2.powmod(b, x, m) for b, x in zip(bases, exps)]


@needs_ifma
def test_decryption_exponents_of_real_keys(keys1024, keys2048, keys3072):
    """c^(p-1) mod p^2 and c^(q-1) mod q^2, as crt_decrypt computes them, for each allowed key size."""
    for _, private_key in (keys1024, keys2048, keys3072):
        for prime in (mpz(private_key.p), mpz(private_key.q)):
            square = prime * prime
            assert ifma.mod_bits_for(int(square)) is not None
            cts = [mpz(secrets.randbits(2 * square.bit_length())) for _ in range(11)]
            assert ifma.powmod_list(cts, prime - 1, square) == list(gmpy2.powmod_base_list(cts, prime - 1, square))


def test_moduli_the_library_does_not_take_go_to_gmpy2():
    assert ifma.mod_bits_for(2 ** 2047 + 2) is None   # even
    assert ifma.mod_bits_for(2 ** 1500 + 1) is None   # between sizes: the top word would be empty
    assert ifma.mod_bits_for(2 ** 5000 + 1) is None   # above 4096 bits
    m = mpz(2 ** 1500 + 1)
    bases = [mpz(secrets.randbits(1400)) for _ in range(5)]
    assert ifma.powmod_list(bases, 65537, m) == [gmpy2.powmod(b, 65537, m) for b in bases]
    assert ifma.powmod_list(bases, 0, _odd(2048)) == [1] * 5
    with pytest.raises(ValueError):
        ifma.powmod_list(bases, [1, 2], m)
    with pytest.raises(ValueError):
        ifma.powmod_list(bases, -1, m)


@pytest.mark.parametrize("fixture", ["keys1024", "keys2048"])
def test_decryption_is_the_same_with_and_without_ifma(fixture, request, monkeypatch):
    """The engine decrypts its own and phe's ciphertexts to the same integers on either path."""
    public_key, private_key = request.getfixturevalue(fixture)
    engine = he.PaillierEngine(public_key, private_key)
    top = public_key.n.bit_length() - 3
    plain = [secrets.randbits(top) - (1 << (top - 1)) for _ in range(19)] + [0, 1, -1]
    ours = engine.encrypt_ints(plain)
    theirs = [public_key.encrypt(v).ciphertext(be_secure=True) for v in plain[:5]]
    fast = engine.decrypt_ints(ours), engine.decrypt_ints(theirs)
    with ifma.turned_off():                                  # the gmpy2 path, as without the library
        slow = engine.decrypt_ints(ours), engine.decrypt_ints(theirs)
    monkeypatch.setattr(ifma, "_load", lambda: None)         # and as where it cannot be loaded
    assert (engine.decrypt_ints(ours), engine.decrypt_ints(theirs)) == slow
    assert fast == slow == (plain, plain[:5])
    assert [private_key.decrypt(paillier.EncryptedNumber(public_key, int(c))) for c in ours[:3]] == plain[:3]
    assert engine_module.ifma is ifma


def test_turned_off_by_the_environment(monkeypatch):
    monkeypatch.setenv("VFL_HE_IFMA", "0")
    assert ifma._open() == (None, "turned off by VFL_HE_IFMA")
    monkeypatch.setenv("VFL_HE_IFMA", "1")
    monkeypatch.setenv("VFL_HE_IFMA_LIB", "/nonexistent")
    lib, why = ifma._open()
    assert lib is None and "not installed" in why
