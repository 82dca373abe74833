"""Where a party draws what it keeps from its peers: its half of each shared weight, its models' initial weights.

The job spec travels to every party, so nothing secret may be derived from it (its seeds drive only what all
parties are meant to share: the split, the batch order and the packing's public checksum weights). A party's
secrets come from the OS generator or, for reproducible tests and benchmarks, from the node-local
`secret_seed` of its own node config, which never leaves the node and which no job spec can set:

    root = SHA-256("vfl-private-random" | secret_seed | party)      with a secret seed
    root = 32 bytes from os.urandom                                 without (production)
    seed(purpose) = HMAC-SHA256(root, purpose)

No value of the spec enters the root, so no peer can steer which stream a node uses. With a secret seed,
every job at this node draws the same values (that is the point: paired benchmark runs and resume tests start
from the same weights; a federation that wants other weights uses another seed); parties and purposes give
independent streams. A peer that knows the spec, the party names and even its own secret seed learns
nothing of another node's root.

Masks (V0, Q) and Paillier randomness are always fresh OS randomness (`secrets`, `os.urandom`) and do not
come through here: they change no result, so there is nothing to reproduce.
"""
from __future__ import annotations

import hashlib
import hmac
import os

import numpy as np
import torch

#: torch seeds are signed 64-bit
_TORCH_SEED_BITS = 63


class PrivateRandom:
    """One party's private randomness for one job: independent seeds per purpose (e.g. "bottom", "top")."""

    def __init__(self, party: str, secret_seed: int | None = None):
        if secret_seed is None:
            self._root = os.urandom(32)
        else:
            self._root = hashlib.sha256(f"vfl-private-random|{secret_seed}|{party}".encode()).digest()
        self.reproducible = secret_seed is not None

    def _digest(self, purpose: str) -> bytes:
        return hmac.new(self._root, purpose.encode(), hashlib.sha256).digest()

    def seed(self, purpose: str) -> int:
        """A 63-bit seed for torch (`torch.manual_seed`, `init_module`)."""
        return int.from_bytes(self._digest(purpose)[:8], "big") >> (64 - _TORCH_SEED_BITS)

    def numpy(self, purpose: str) -> np.random.Generator:
        """A numpy generator seeded with 256 bits."""
        return np.random.default_rng(int.from_bytes(self._digest(purpose), "big"))

    def seed_torch(self, purpose: str) -> None:
        """Seed torch's global generator (layer defaults, dropout) for this party's work in this job."""
        torch.manual_seed(self.seed(purpose))


def for_node(config, party: str) -> PrivateRandom:
    """The private randomness of `party` at the node with this config (its `secret_seed`, if any)."""
    return PrivateRandom(party, getattr(config, "secret_seed", None))
