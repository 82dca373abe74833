"""What a compute backend gives the runtimes: keys, engines under keys, and a PSI engine.

The runtimes never run heavy work themselves: every Paillier operation goes through a key's engine and every PSI
hash, blinding and OPRF evaluation through the PSI engine, both from the node's backend (docs/scale.md).
"""
from __future__ import annotations

from typing import Protocol

from psi.core.engine import Engine as PsiEngine
from vfl.errors import VflError
from vfl.he.batch import KeyedEngine


class ComputeError(VflError):
    """This party's compute backend failed (a Ray node or actor lost); the job can resume with fresh keys."""

    status = "UNAVAILABLE"


class Compute(Protocol):
    name: str

    @property
    def parallelism(self) -> int:
        """How many chunks an operation is cut into (cores the backend can use at once)."""
        ...

    def private_key(self, key_bits: int) -> KeyedEngine:
        """A fresh key pair for one job; its private half never leaves the backend's key holders."""
        ...

    def public_key(self, n: int, djn_base: int, djn_slack_bits: int | None = None) -> KeyedEngine:
        """The engine under a peer's public key, re-randomizing with its published DJN base."""
        ...

    def psi_engine(self) -> PsiEngine:
        """Where PSI's per-ID tasks run; shared by this node's sessions."""
        ...

    def describe(self) -> dict:
        ...

    def close(self) -> None:
        ...
