"""The crypto core: canonical IDs, salted hash-to-curve (Elligator 2), X25519 blinding, point validation,
set operations on blinded values, end-to-end sealing, and the compute engine. No networking here."""
from psi.core.curve25519 import (A, P, POINT_BYTES, blind_one, blind_points, check_points, elligator2_u,
                                 is_on_curve, new_scalar)
from psi.core.engine import Engine, peak_rss_bytes
from psi.core.hashing import Canonicalization, canonical_id, hash_and_blind, hash_to_curve, hash_to_field

__all__ = ["A", "P", "POINT_BYTES", "Canonicalization", "Engine", "blind_one", "blind_points", "canonical_id",
           "check_points", "elligator2_u", "hash_and_blind", "hash_to_curve", "hash_to_field", "is_on_curve",
           "new_scalar", "peak_rss_bytes"]
