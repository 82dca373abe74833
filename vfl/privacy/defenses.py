"""Defenses applied at the active party to per-example gradients before delta*W^T leaves it.

* `dp`: per-example clipping to `clip_norm`, then Gaussian noise of std noise_multiplier * clip_norm per
  coordinate. Formal label-DP per released gradient, accounted in `accounting.py` (scope and limits in
  docs/privacy.md).
* `max_norm`: "max-norm alignment" (Li et al. 2021): every example's gradient gets isotropic Gaussian
  noise so that its expected squared norm equals the batch maximum, which removes the norm signal.
  Empirical protection only, no formal guarantee.

The defended gradients replace the exact ones in what passive parties can observe, their input gradients
delta*W^T. The interactive weight's update keeps the exact gradients: it only exists as masked shares
and per-example gradients encrypted under the active party's key (docs/privacy.md states what the DP
accounting does and does not cover because of that).
"""
from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from vfl.privacy.accounting import label_dp_epsilon

# Defaults chosen with benchmarks/privacy_bench.py on default_credit (see docs/privacy.md).
DEFAULT_NOISE_MULTIPLIER = 2.0
DEFAULT_DELTA = 1e-5


def clip_rows(g: np.ndarray, clip_norm: float) -> np.ndarray:
    norms = np.linalg.norm(g, axis=1, keepdims=True)
    return g * np.minimum(1.0, clip_norm / np.maximum(norms, 1e-12))


@dataclass
class Defense:
    name: str
    noise_multiplier: float = 0.0
    clip_norm: float | None = None
    delta: float = DEFAULT_DELTA
    rng: np.random.Generator = field(default_factory=lambda: np.random.default_rng())
    _norm_estimate: float | None = None

    def apply(self, per_example: np.ndarray, labels=None, step=None) -> np.ndarray:
        if self.name == "dp":
            clip = self._clip(per_example)
            clipped = clip_rows(per_example, clip)
            return clipped + self.rng.normal(0.0, self.noise_multiplier * clip, size=clipped.shape)
        if self.name == "max_norm":
            sq = np.sum(per_example ** 2, axis=1)
            std = np.sqrt(np.maximum(sq.max() - sq, 0.0) / per_example.shape[1])
            return per_example + self.rng.normal(size=per_example.shape) * std[:, None]
        return per_example

    def _clip(self, per_example: np.ndarray) -> float:
        """A fixed clip norm if configured; otherwise the median norm of the first batch, then frozen."""
        if self.clip_norm is not None:
            return self.clip_norm
        if self._norm_estimate is None:
            self._norm_estimate = float(np.median(np.linalg.norm(per_example, axis=1))) or 1.0
        return self._norm_estimate

    def describe(self, epochs: int) -> dict:
        out = {"defense": self.name}
        if self.name == "dp":
            out.update({"noise_multiplier": self.noise_multiplier, "clip_norm": self.clip_norm or self._norm_estimate,
                        "delta": self.delta, "epsilon": label_dp_epsilon(self.noise_multiplier, epochs, self.delta),
                        "accountant": "dp_accounting.rdp.RdpAccountant",
                        "guarantee": "label-DP per released per-example gradient (see docs/privacy.md)"})
        elif self.name == "max_norm":
            out["guarantee"] = "empirical only (no formal DP)"
        else:
            out["guarantee"] = "none: passive parties receive exact input gradients"
        return out


def defense_for_job(spec) -> Defense | None:
    """The job's defense: `auto` means DP (noise multiplier 2) for binary tasks, where label leakage through
    gradient norms and directions is known to be near-perfect, and none otherwise."""
    p = spec.privacy
    name = p.defense
    if name == "auto":
        name = "dp" if spec.task == "binary" and spec.kind == "train" else "none"
    if name == "none" or spec.kind != "train":
        return Defense("none")
    return Defense(name, noise_multiplier=p.noise_multiplier if p.noise_multiplier is not None
                   else DEFAULT_NOISE_MULTIPLIER, clip_norm=p.clip_norm,
                   delta=p.delta if p.delta is not None else DEFAULT_DELTA)
