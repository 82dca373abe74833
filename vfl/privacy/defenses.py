"""Defenses applied at the active party to per-example gradients before delta*W^T leaves it.

* `dp`: per-example clipping to `clip_norm`, then Gaussian noise of std noise_multiplier * clip_norm per
  coordinate. Formal label-DP per released gradient, accounted in `accounting.py` (scope and limits in
  docs/privacy.md).
* `max_norm`: "max-norm alignment" (Li et al. 2021): every example's gradient gets isotropic Gaussian
  noise so that its expected squared norm equals the batch maximum, which removes the norm signal.
  Empirical protection only, no formal guarantee.
* `marvell`: Marvell (Li et al. 2021): per batch, Gaussian noise whose covariance differs by label class and is
  optimized so that the two classes' perturbed gradient distributions are as hard to tell apart as a noise power
  budget allows (a bound on any attack's leak AUC via their symmetrized KL divergence). Empirical protection
  under that model, no ε.

The defended gradients replace the exact ones in what passive parties can observe, their input gradients
delta*W^T. The interactive weight's update keeps the exact gradients: it only exists as masked shares
and per-example gradients encrypted under the active party's key (docs/privacy.md states what the DP
accounting does and does not cover because of that).
"""
from __future__ import annotations

import numpy as np


# Defaults chosen with benchmarks/privacy_bench.py on default_credit and breast (see docs/privacy.md).
DEFAULT_NOISE_MULTIPLIER = 2.0
DEFAULT_DELTA = 1e-5
#: marvell: the noise power budget per batch, as a multiple of the squared distance between the class means. 16 is
#: the sweep's only setting with both leak AUCs <= 0.60 in every paired seed on both tables at 2 and 10 epochs
#: while its median AUC drop stayed near 0.01 or below (docs/privacy.md, "The default").
DEFAULT_MARVELL_STRENGTH = 16.0
#: what privacy.defense: auto means for a binary training job
AUTO_BINARY_DEFENSE = "marvell"


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
                 rng: np.random.Generator | None = None, strength: float = DEFAULT_MARVELL_STRENGTH):
        self.noise_multiplier = noise_multiplier
        self.clip_norm = clip_norm
        self.delta = delta
        self.strength = strength
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


class MarvellDefense(Defense):
    """Marvell (Li et al., "Label Leakage and Protection in Two-party Split Learning", ICLR 2022), binary labels.

    Per batch: Δ = mean gradient of class 1 − mean gradient of class 0. Each class's gradients are modelled as a
    Gaussian whose covariance has one variance along Δ (u_k) and one per orthogonal direction (v_k), and class k
    gets noise of the same shape: variance λ_k along Δ, μ_k per orthogonal direction. (λ_0, λ_1, μ_0, μ_1) minimize
    the symmetrized KL divergence of the two perturbed classes (which bounds the AUC of every scoring attack) under
    the expected noise power (1−p)·(λ_0 + (m−1)μ_0) + p·(λ_1 + (m−1)μ_1) ≤ strength·‖Δ‖², p the batch's share of
    class 1. A batch with a single class reuses the last batch's shape. Empirical protection, no ε.
    """

    name = "marvell"

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self._last: tuple[np.ndarray, np.ndarray, np.ndarray] | None = None   # unit Δ, λ, μ of the last batch
        self.batches = 0

    def apply(self, per_example: np.ndarray, labels=None, step=None) -> np.ndarray:
        if labels is None:
            raise ValueError("marvell needs the batch's labels")
        y = np.asarray(labels).astype(bool)
        if y.any() and (~y).any():
            self._last = marvell_shape(per_example, y, self.strength)
        if self._last is None:   # no two-class batch yet: nothing to shape the noise by
            return per_example
        self.batches += 1
        direction, along, across = self._last
        rows, m = per_example.shape
        k = y.astype(int)
        xi = self.rng.standard_normal(rows) * np.sqrt(along[k])
        zeta = self.rng.standard_normal((rows, m))
        zeta -= (zeta @ direction)[:, None] * direction[None, :]
        return per_example + xi[:, None] * direction[None, :] + zeta * np.sqrt(across[k])[:, None]

    def describe(self, epochs: int) -> dict:
        return {"defense": self.name, "strength": self.strength,
                "guarantee": "empirical only, no epsilon: noise shaped per batch to the two label classes' gradient "
                             "distributions under a noise power budget (Marvell, Li et al. 2021); not differential "
                             "privacy"}


def _sym_kl(x: np.ndarray, u: np.ndarray, v: np.ndarray, m: int) -> float:
    """2 x the symmetrized KL divergence of the two classes after noise x = (λ0, λ1, μ0, μ1), distances in ‖Δ‖ units."""
    a0, a1 = u[0] + x[0], u[1] + x[1]
    b0, b1 = v[0] + x[2], v[1] + x[3]
    return a0 / a1 + a1 / a0 - 2 + (m - 1) * (b0 / b1 + b1 / b0 - 2) + 1 / a0 + 1 / a1


def auc_bound(sym_kl: float) -> float:
    """The largest AUC any scoring attack can reach on two distributions whose KL(P1‖P0) + KL(P0‖P1) is `sym_kl`
    (Li et al. 2022, Theorem 1: 1/2 + √ε/2 − ε/8, for ε < 4; 1 beyond)."""
    return 1.0 if sym_kl >= 4.0 else 0.5 + np.sqrt(sym_kl) / 2 - sym_kl / 8


def kl_for_auc_bound(bound: float) -> float:
    """The symmetrized KL ε at which Theorem 1's bound equals `bound` (0.5 < bound < 1): the root of
    √ε/2 − ε/8 = bound − 1/2 below 4."""
    root = 2.0 - 2.0 * np.sqrt(1.0 - 2.0 * (bound - 0.5))   # √ε, from s² − 4s + 8(bound − 1/2) = 0
    return float(root ** 2)


class MarvellBatch:
    """One two-class batch in the Gaussian model marvell works in: the unit class-mean direction, ‖Δ‖², each class's
    variance along Δ (u) and per orthogonal direction (v) in ‖Δ‖² units, the share p of class 1, the dimension m.

    `least_kl` is Marvell's problem (the noise with the smallest symmetrized KL under a power budget), which the
    defense solves; `least_power` is the problem the other way round (the least power that brings the KL to a target,
    e.g. the one at which Theorem 1 bounds every attack's AUC by 0.60), which benchmarks/privacy_floor.py measures on
    real batches (docs/privacy.md, "Can the default do better at 2 epochs?").
    """

    def __init__(self, per_example: np.ndarray, y: np.ndarray):
        g = np.asarray(per_example, dtype=np.float64)
        self.m = g.shape[1]
        delta = g[y].mean(axis=0) - g[~y].mean(axis=0)
        self.scale = float(delta @ delta)
        self.degenerate = self.scale <= 1e-24   # the classes' means coincide: no direction separates them
        self.direction = np.eye(self.m)[0] if self.degenerate else delta / np.sqrt(self.scale)
        u, v = np.zeros(2), np.zeros(2)
        if not self.degenerate:
            for k, rows in enumerate((g[~y], g[y])):
                centred = rows - rows.mean(axis=0)
                along = centred @ self.direction
                u[k] = float(np.mean(along ** 2)) / self.scale
                v[k] = max(float(np.mean(np.sum(centred ** 2, axis=1)) - u[k] * self.scale), 0.0) \
                    / max(self.m - 1, 1) / self.scale
        self.u, self.v = np.maximum(u, 1e-9), np.maximum(v, 1e-9)   # one example of a class has no spread
        p = float(np.mean(y))
        #: the expected noise power per example of x = (λ0, λ1, μ0, μ1) is weights @ x
        self.weights = np.array([1 - p, p, (1 - p) * (self.m - 1), p * (self.m - 1)])

    def kl2(self, x: np.ndarray) -> float:
        return _sym_kl(x, self.u, self.v, self.m)

    def least_kl(self, budget: float) -> np.ndarray:
        """x (in ‖Δ‖² units) with the smallest symmetrized KL under the power budget (Marvell's problem)."""
        from scipy.optimize import minimize
        weights = self.weights
        start = np.full(4, budget / weights.sum())
        solved = minimize(self.kl2, start, method="SLSQP", bounds=[(0.0, None)] * 4,
                          constraints=[{"type": "ineq", "fun": lambda x: budget - weights @ x,
                                        "jac": lambda x: -weights}], options={"maxiter": 200, "ftol": 1e-10})
        x = solved.x if solved.success and self.kl2(solved.x) <= self.kl2(start) else start
        return np.maximum(x, 0.0)

    def least_power(self, kl_target: float, rel_tol: float = 0.01) -> tuple[float, np.ndarray]:
        """The least power budget (in ‖Δ‖² units) whose optimized noise brings the symmetrized KL to `kl_target` or
        below, and that noise: 0 when the classes already overlap that much. Marvell's optimum falls as the budget
        grows, so the budget is found by bracketing and bisection, to `rel_tol`. A batch whose class means coincide
        gets none, as in marvell_shape."""
        x0 = np.zeros(4)
        if self.degenerate or self.kl2(x0) / 2 <= kl_target:
            return 0.0, x0
        hi = 1.0
        x_hi = self.least_kl(hi)
        while self.kl2(x_hi) / 2 > kl_target:
            hi *= 2.0
            x_hi = self.least_kl(hi)
            if hi > 1e9:   # cannot happen for a positive target (the KL falls like 1/budget); guard anyway
                raise ArithmeticError("marvell: no noise budget meets the leak bound")
        lo = hi / 2.0 if hi > 1.0 else 0.0
        while hi - lo > rel_tol * hi:
            mid = (lo + hi) / 2.0
            x_mid = self.least_kl(mid)
            if self.kl2(x_mid) / 2 <= kl_target:
                hi, x_hi = mid, x_mid
            else:
                lo = mid
        return hi, x_hi

    def shape(self, x: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        x = x * self.scale
        return self.direction, x[:2], x[2:]


def marvell_shape(per_example: np.ndarray, y: np.ndarray, strength: float) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(unit Δ, [λ0, λ1], [μ0, μ1]) for one batch with both classes, under the budget strength·‖Δ‖² (MarvellDefense)."""
    stats = MarvellBatch(per_example, y)
    if stats.degenerate:
        return stats.direction, np.zeros(2), np.zeros(2)
    return stats.shape(stats.least_kl(strength))


DEFENSES: dict[str, type[Defense]] = {cls.name: cls for cls in (Defense, DpDefense, MaxNormDefense, MarvellDefense)}
#: what a job spec's privacy.defense accepts
DEFENSE_CHOICES = ("auto", *DEFENSES)


def make_defense(name: str, **params) -> Defense:
    return DEFENSES[name](**params)


def defense_for_job(spec) -> Defense:
    """The job's defense: `auto` means marvell (strength 16) for binary tasks, where label leakage through gradient
    norms and directions is known to be near-perfect, and none otherwise; chosen by benchmarks/privacy_bench.py's
    sweep (docs/privacy.md). `dp` is the defense with a formal ε."""
    p = spec.privacy
    name = p.defense
    if name == "auto":
        name = AUTO_BINARY_DEFENSE if spec.task == "binary" and spec.kind == "train" else "none"
    if spec.kind != "train":
        name = "none"
    return make_defense(name, noise_multiplier=p.noise_multiplier if p.noise_multiplier is not None
                        else DEFAULT_NOISE_MULTIPLIER, clip_norm=p.clip_norm,
                        delta=p.delta if p.delta is not None else DEFAULT_DELTA,
                        strength=p.strength if p.strength is not None else DEFAULT_MARVELL_STRENGTH)


def _epsilon(noise_multiplier: float, epochs: int, delta: float) -> float:
    # imported on first use: dp_accounting (with scipy) takes seconds to import, and every node start and job
    # spec parse would pay them (vfl.job.spec reads DEFENSES)
    from vfl.privacy.accounting import label_dp_epsilon
    return label_dp_epsilon(noise_multiplier, epochs, delta)
