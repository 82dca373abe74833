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

import numpy as np


# Defaults chosen with benchmarks/privacy_bench.py on default_credit (see docs/privacy.md).
DEFAULT_NOISE_MULTIPLIER = 2.0
DEFAULT_DELTA = 1e-5


def clip_rows(g: np.ndarray, clip_norm: float) -> np.ndarray:
    norms = np.linalg.norm(g, axis=1, keepdims=True)
    return g * np.minimum(1.0, clip_norm / np.maximum(norms, 1e-12))


class Defense:
    """No defense: passive parties receive exact input gradients. The base of every defense.

    A defense is one subclass with a `name`, entered in `DEFENSES`; a job spec's `privacy.defense` takes its
    choices from there, so adding one touches this module only.
    """

    name = "none"

    def __init__(self, noise_multiplier: float = 0.0, clip_norm: float | None = None, delta: float = DEFAULT_DELTA,
                 rng: np.random.Generator | None = None):
        self.noise_multiplier = noise_multiplier
        self.clip_norm = clip_norm
        self.delta = delta
        # fresh OS entropy: the noise must be unpredictable to the passive parties that receive it
        self.rng = rng if rng is not None else np.random.default_rng()

    def apply(self, per_example: np.ndarray, labels=None, step=None) -> np.ndarray:
        return per_example

    def describe(self, epochs: int) -> dict:
        return {"defense": self.name, "guarantee": "none: passive parties receive exact input gradients"}


class DpDefense(Defense):
    """Per-example clipping, then Gaussian noise of std noise_multiplier * clip per coordinate (label-DP)."""

    name = "dp"

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self._clip_by_epoch: dict[int, float] = {}

    def apply(self, per_example: np.ndarray, labels=None, step=None) -> np.ndarray:
        clip = self._clip(per_example, step)
        clipped = clip_rows(per_example, clip)
        return clipped + self.rng.normal(0.0, self.noise_multiplier * clip, size=clipped.shape)

    def _clip(self, per_example: np.ndarray, step: tuple[int, int] | None) -> float:
        """A fixed clip norm if configured; otherwise the median norm of each epoch's first batch.

        Re-estimating per epoch follows the gradients as they shrink during training: a clip frozen at
        the first batch (where every prediction is near the prior) kept the noise too large later and
        cost about 0.006 more test AUC in the median on default_credit (docs/privacy.md).
        """
        if self.clip_norm is not None:
            return self.clip_norm
        epoch = step[0] if step is not None else 0
        if epoch not in self._clip_by_epoch:
            self._clip_by_epoch[epoch] = float(np.median(np.linalg.norm(per_example, axis=1))) or 1.0
        return self._clip_by_epoch[epoch]

    def describe(self, epochs: int) -> dict:
        clip = self.clip_norm if self.clip_norm is not None else \
            [round(self._clip_by_epoch[e], 6) for e in sorted(self._clip_by_epoch)]
        return {"defense": self.name, "noise_multiplier": self.noise_multiplier, "clip_norm": clip,
                "delta": self.delta, "epsilon": _epsilon(self.noise_multiplier, epochs, self.delta),
                "accountant": "dp_accounting.rdp.RdpAccountant",
                "guarantee": "label-DP per released per-example gradient (see docs/privacy.md)"}


class MaxNormDefense(Defense):
    """Isotropic noise raising every example's expected squared norm to the batch maximum (Li et al. 2021)."""

    name = "max_norm"

    def apply(self, per_example: np.ndarray, labels=None, step=None) -> np.ndarray:
        sq = np.sum(per_example ** 2, axis=1)
        std = np.sqrt(np.maximum(sq.max() - sq, 0.0) / per_example.shape[1])
        return per_example + self.rng.normal(size=per_example.shape) * std[:, None]

    def describe(self, epochs: int) -> dict:
        return {"defense": self.name, "guarantee": "empirical only (no formal DP)"}


DEFENSES: dict[str, type[Defense]] = {cls.name: cls for cls in (Defense, DpDefense, MaxNormDefense)}
#: what a job spec's privacy.defense accepts
DEFENSE_CHOICES = ("auto", *DEFENSES)


def make_defense(name: str, **params) -> Defense:
    return DEFENSES[name](**params)


def defense_for_job(spec) -> Defense:
    """The job's defense: `auto` means DP (noise multiplier 2) for binary tasks, where label leakage through
    gradient norms and directions is known to be near-perfect, and none otherwise."""
    p = spec.privacy
    name = p.defense
    if name == "auto":
        name = "dp" if spec.task == "binary" and spec.kind == "train" else "none"
    if spec.kind != "train":
        name = "none"
    return make_defense(name, noise_multiplier=p.noise_multiplier if p.noise_multiplier is not None
                        else DEFAULT_NOISE_MULTIPLIER, clip_norm=p.clip_norm,
                        delta=p.delta if p.delta is not None else DEFAULT_DELTA)


def _epsilon(noise_multiplier: float, epochs: int, delta: float) -> float:
    # imported on first use: dp_accounting (with scipy) takes seconds to import, and every node start and job
    # spec parse would pay them (vfl.job.spec reads DEFENSES)
    from vfl.privacy.accounting import label_dp_epsilon
    return label_dp_epsilon(noise_multiplier, epochs, delta)
