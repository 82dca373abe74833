"""Shared keys for the vfl.he tests: 1024-bit keys for speed, one 2048-bit and one 3072-bit key for the few
full-size checks."""
from __future__ import annotations

import pytest

from vfl import he


@pytest.fixture(scope="session")
def keys1024():
    return he.generate_keypair(1024)


@pytest.fixture(scope="session")
def keys2048():
    return he.generate_keypair(2048)


@pytest.fixture(scope="session")
def keys3072():
    return he.generate_keypair(3072)


@pytest.fixture(scope="session")
def engine(keys1024):
    """Key owner's engine (private key, DJN randomness), one worker."""
    public_key, private_key = keys1024
    return he.PaillierEngine(public_key, private_key)


@pytest.fixture(scope="session")
def peer_engine(keys1024):
    """A peer's engine under the same public key (full randomness, no pool)."""
    return he.PaillierEngine(keys1024[0], None, pool_size=0)


@pytest.fixture(scope="session")
def engine2048(keys2048):
    public_key, private_key = keys2048
    return he.PaillierEngine(public_key, private_key)
