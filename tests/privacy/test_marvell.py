"""The marvell defense's mechanics at the active party (vfl/privacy/defenses.py): its noise keeps to its power budget,
is shaped better than isotropic noise of the same power, and cuts both label-inference attacks on gradients whose
classes are far apart."""
from __future__ import annotations

import numpy as np
import pytest

from tests.job.conftest import job_spec
from vfl.errors import ConfigError
from vfl.privacy.attacks import direction_scores, norm_scores, per_step_leak_auc
from vfl.privacy.defenses import MarvellBatch, _sym_kl, auc_bound, kl_for_auc_bound, make_defense, marvell_shape

M = 16


def bce_like_batch(rng: np.random.Generator, rows: int = 256, positive: float = 0.22):
    """Per-example gradients as a binary cross-entropy head makes them: (p - y) times a shared direction, plus spread.
    Positives are rare and far from the negatives, so both attacks win outright without a defense."""
    w = np.linspace(-1, 1, M) / np.linalg.norm(np.linspace(-1, 1, M))
    y = rng.random(rows) < positive
    p = np.clip(rng.beta(2, 6, rows) + 0.1 * y, 0, 1)
    return (p - y)[:, None] * (w + 0.3 * rng.normal(size=(rows, M))), y.astype(np.int64)


def leaks(strength: float | None, steps: int = 30) -> tuple[float, float]:
    rng = np.random.default_rng(0)
    defense = make_defense("marvell", strength=strength or 0.0, rng=np.random.default_rng(1))
    grads, labels, step_ids = [], [], []
    for step in range(steps):
        g, y = bce_like_batch(rng)
        grads.append(defense.apply(g, y, step=(0, step)) if strength else g)
        labels.append(y)
        step_ids.append(np.full(len(y), step))
    g, y, s = (np.concatenate(a) for a in (grads, labels, step_ids))
    return per_step_leak_auc(y, norm_scores(g), s), per_step_leak_auc(y, direction_scores(g, s), s)


def test_marvell_cuts_both_attacks():
    assert min(leaks(None)) > 0.95                      # undefended: the attacks win
    norm, direction = leaks(8.0)
    assert norm < 0.56 and direction < 0.62, (norm, direction)
    weaker = leaks(1.0)
    assert weaker[0] > norm and weaker[1] > direction    # a smaller budget protects less


def test_noise_keeps_to_its_power_budget():
    rng = np.random.default_rng(3)
    g, y = bce_like_batch(rng, rows=400)
    direction, along, across = marvell_shape(g, y.astype(bool), 2.0)
    delta = g[y == 1].mean(axis=0) - g[y == 0].mean(axis=0)
    p = y.mean()
    power = (1 - p) * (along[0] + (M - 1) * across[0]) + p * (along[1] + (M - 1) * across[1])
    assert power <= 2.0 * float(delta @ delta) * (1 + 1e-6)
    assert power >= 1.9 * float(delta @ delta)          # and spends it
    # the noise drawn has that shape: class-k rows get variance along[k] along the class-mean direction
    defense = make_defense("marvell", strength=2.0, rng=np.random.default_rng(4))
    big_g, big_y = np.tile(g, (40, 1)), np.tile(y, 40)
    noise = defense.apply(big_g, big_y) - big_g
    for k in (0, 1):
        rows = noise[big_y == k]
        assert np.var(rows @ direction) == pytest.approx(along[k], rel=0.1, abs=1e-6 * float(delta @ delta))


def test_the_shape_beats_isotropic_noise_of_the_same_power():
    """The optimized noise leaves the two classes closer (smaller symmetrized KL) than the same power spread evenly."""
    g, y = bce_like_batch(np.random.default_rng(5))
    yb = y.astype(bool)
    direction, along, across = marvell_shape(g, yb, 2.0)
    delta = g[yb].mean(axis=0) - g[~yb].mean(axis=0)
    scale = float(delta @ delta)
    u = np.array([np.mean(((c - c.mean(axis=0)) @ direction) ** 2) for c in (g[~yb], g[yb])]) / scale
    v = np.array([(np.mean(np.sum((c - c.mean(axis=0)) ** 2, axis=1)) - ui * scale) / (M - 1)
                  for c, ui in zip((g[~yb], g[yb]), u)]) / scale
    optimized = _sym_kl(np.concatenate([along, across]) / scale, u, v, M)
    isotropic = _sym_kl(np.full(4, 2.0 / M), u, v, M)    # 2.0 ||Δ||² spread over the M directions, both classes
    assert optimized < 0.5 * isotropic, (optimized, isotropic)


def test_a_batch_of_one_class_reuses_the_last_shape():
    defense = make_defense("marvell", strength=2.0, rng=np.random.default_rng(6))
    ones = np.ones((8, M))
    assert np.array_equal(defense.apply(ones, np.zeros(8)), ones)        # nothing to shape by yet
    g, y = bce_like_batch(np.random.default_rng(7))
    defense.apply(g, y)
    assert not np.array_equal(defense.apply(ones, np.zeros(8)), ones)    # the last two-class batch's shape


def test_marvell_reports_no_epsilon_and_says_so():
    described = make_defense("marvell", strength=4.0).describe(epochs=3)
    assert "epsilon" not in described and described["strength"] == 4.0
    assert "no epsilon" in described["guarantee"] and "not differential privacy" in described["guarantee"]


def test_marvell_needs_a_binary_task():
    assert job_spec("m-1", privacy={"defense": "marvell", "strength": 3}).privacy.strength == 3
    with pytest.raises(ConfigError, match="marvell shapes its noise to two label classes"):
        job_spec("m-2", task="multiclass", privacy={"defense": "marvell"})


def test_theorem_1_bound_and_its_inverse():
    """Li et al.'s Theorem 1: symmetrized KL ε bounds every attack's AUC by 1/2 + √ε/2 − ε/8."""
    assert auc_bound(0.0) == 0.5 and auc_bound(4.0) == 1.0
    assert auc_bound(1.0) == pytest.approx(0.5 + 0.5 - 0.125)
    for bound in (0.55, 0.58, 0.60, 0.70, 0.95):
        assert auc_bound(kl_for_auc_bound(bound)) == pytest.approx(bound, abs=1e-12)
    assert kl_for_auc_bound(0.60) == pytest.approx(0.04458, abs=1e-5)


def test_least_power_is_the_least_that_meets_the_bound():
    """Marvell the other way round: the power it returns meets the bound, and 2 % less power cannot."""
    g, y = bce_like_batch(np.random.default_rng(8))
    batch = MarvellBatch(g, y.astype(bool))
    target = kl_for_auc_bound(0.60)
    power, x = batch.least_power(target)
    assert batch.kl2(x) / 2 <= target                          # meets the bound
    assert batch.weights @ x <= power * (1 + 1e-6)              # within the power it reports
    assert batch.kl2(batch.least_kl(0.98 * power)) / 2 > target  # and no smaller budget meets it
    stricter, _ = batch.least_power(kl_for_auc_bound(0.55))
    assert stricter > 2 * power                                 # a tighter bound costs more


def test_least_power_is_zero_when_the_classes_already_overlap():
    rng = np.random.default_rng(9)
    g = rng.normal(size=(4000, M))
    y = rng.random(4000) < 0.3                                  # labels unrelated to the gradients
    power, x = MarvellBatch(g, y).least_power(kl_for_auc_bound(0.60))
    assert power == 0.0 and not x.any()
    same_means = np.vstack([np.ones((4, M)), np.ones((4, M))])     # no direction separates the classes
    assert MarvellBatch(same_means, np.arange(8) < 4).least_power(kl_for_auc_bound(0.60))[0] == 0.0
