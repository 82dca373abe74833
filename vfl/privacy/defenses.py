"""Defenses applied at the active party to per-example gradients before delta*W^T leaves it."""
from __future__ import annotations


def defense_for_job(spec):
    """The configured defense for a job, or None."""
    return None
