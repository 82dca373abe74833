"""The OKVS (3-hash XOR table encoded by peeling): correctness, obliviousness-style properties, retries."""
from __future__ import annotations

import os

import numpy as np
import pytest

from psi.core import okvs


def seeds(attempt: int) -> bytes:
    return bytes([attempt]) * 24


def random_pairs(n: int) -> tuple[bytes, bytes]:
    return os.urandom(16 * n), os.urandom(16 * n)


@pytest.mark.parametrize("n", [0, 1, 2, 3, 10, 97, 1000, 50_000])
def test_decode_of_encode_returns_every_value(n):
    keys, values = random_pairs(n)
    attempt, table = okvs.encode(keys, values, seeds)
    assert table.shape == (okvs.table_cells(n, attempt), 16)
    assert okvs.decode(table, keys, seeds(attempt)).tobytes() == values


def test_structured_keys_and_numpy_inputs():
    """Keys need not be random: consecutive integers (low-entropy bytes) still spread and peel."""
    n = 20_000
    keys = np.zeros((n, 16), dtype=np.uint8)
    keys[:, :8] = np.arange(n, dtype="<u8").view(np.uint8).reshape(n, 8)
    values = np.frombuffer(os.urandom(16 * n), dtype=np.uint8).reshape(n, 16)
    attempt, table = okvs.encode(keys, values, seeds)
    assert np.array_equal(okvs.decode(table, keys, seeds(attempt)), values)


def test_table_size_is_a_public_function_of_n_and_attempt():
    for n in (0, 1, 5, 100, 12345, 10**6):
        sizes = [okvs.table_cells(n, a) for a in range(okvs.MAX_ATTEMPTS)]
        assert all(s % 3 == 0 for s in sizes)
        assert sizes[0] >= 1.23 * n + 32
        assert len(set(sizes[:okvs.GROWTH_AFTER])) == 1          # retries at the base size first ...
        assert sizes == sorted(sizes) and sizes[-1] > sizes[0]   # ... then grow
    with pytest.raises(ValueError):
        okvs.table_cells(10, okvs.MAX_ATTEMPTS)


def test_unencoded_keys_decode_to_values_that_look_uniform():
    """Decoding at keys that were never encoded: no value of the table comes back, and the bits are
    balanced (a table of uniform values is itself uniform, so such decodes are uniform)."""
    n, probes = 5000, 40_000
    keys, values = random_pairs(n)
    attempt, table = okvs.encode(keys, values, seeds)
    other = os.urandom(16 * probes)
    out = okvs.decode(table, other, seeds(attempt))
    encoded = {values[i:i + 16] for i in range(0, len(values), 16)}
    assert not encoded & {bytes(r) for r in out}
    bits = np.unpackbits(out, axis=1).mean(axis=0)        # per bit position, fraction of ones
    assert np.all(np.abs(bits - 0.5) < 0.02), bits         # 40k samples: sd 0.0025, so 8 sd
    counts = np.bincount(out.ravel(), minlength=256)
    expected = out.size / 256
    chi2 = float(((counts - expected) ** 2 / expected).sum())
    assert chi2 < 400, chi2                                 # 255 degrees of freedom: mean 255, sd ~23
    # the table's cells themselves are balanced too
    assert abs(np.unpackbits(table).mean() - 0.5) < 0.01


def test_wrong_seed_or_wrong_table_gives_garbage():
    keys, values = random_pairs(300)
    attempt, table = okvs.encode(keys, values, seeds)
    assert okvs.decode(table, keys, seeds(attempt + 1)).tobytes() != values
    with pytest.raises(ValueError, match="multiple of 3"):
        okvs.decode(table[:-1], keys, seeds(attempt))


def test_duplicate_keys_cannot_be_encoded_and_fail_clearly():
    keys, values = random_pairs(50)
    keys = keys + keys[:16]                                # key 0 twice, with another value
    values = values + os.urandom(16)
    with pytest.raises(okvs.OkvsError, match="failed for 16 seeds"):
        okvs.encode(keys, values, seeds)


def test_a_failed_peeling_is_retried_with_the_next_seed(monkeypatch):
    calls = []
    real = okvs.encode_with_seed

    def flaky(keys, values, seed, cells):
        calls.append((seed, cells))
        return None if len(calls) < 3 else real(keys, values, seed, cells)

    monkeypatch.setattr(okvs, "encode_with_seed", flaky)
    keys, values = random_pairs(100)
    attempt, table = okvs.encode(keys, values, seeds)
    assert attempt == 2 and [s for s, _ in calls] == [seeds(0), seeds(1), seeds(2)]
    assert okvs.decode(table, keys, seeds(2)).tobytes() == values


def test_peeling_usually_succeeds_at_the_first_seed():
    """1.23 n + 32 cells is above the 3-hypergraph peeling threshold: most first attempts succeed."""
    first = 0
    for i in range(40):
        keys, values = random_pairs(2000)
        first += okvs.encode_with_seed(keys, values, os.urandom(24), okvs.table_cells(2000)) is not None
    assert first >= 30
