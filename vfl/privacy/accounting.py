"""Privacy accounting with Google's `dp-accounting` (RDP accountant); nothing here is hand-derived.

Mechanism accounted: every training step releases, for each example in the batch, its clipped
per-example gradient plus Gaussian noise (std = noise_multiplier * clip_norm per coordinate) to each
passive party. Changing one example's label moves its clipped gradient by at most 2 * clip_norm
(replace-one adjacency), so each release is a Gaussian mechanism with noise multiplier
noise_multiplier / 2 relative to that sensitivity. An example is released once per epoch, and the
parties see which row it is, so there is no amplification by sampling: the job composes `epochs`
such mechanisms.
"""
from __future__ import annotations

import dp_accounting
from dp_accounting import rdp


def label_dp_event(noise_multiplier: float, epochs: int) -> dp_accounting.DpEvent:
    per_release = dp_accounting.GaussianDpEvent(noise_multiplier / 2.0)
    return dp_accounting.SelfComposedDpEvent(per_release, epochs)


def label_dp_epsilon(noise_multiplier: float, epochs: int, delta: float) -> float:
    """epsilon at `delta` for the whole job, from the RDP accountant."""
    if noise_multiplier <= 0:
        return float("inf")
    accountant = rdp.RdpAccountant()
    accountant.compose(label_dp_event(noise_multiplier, epochs))
    return float(accountant.get_epsilon(delta))
