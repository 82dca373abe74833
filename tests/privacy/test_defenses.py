"""The defenses' mechanics at the active party: clipping, noise scale, per-epoch clip estimates."""
from __future__ import annotations

import numpy as np
import pytest

from vfl.privacy.defenses import clip_rows, make_defense


def test_clip_rows_bounds_every_norm_and_keeps_small_rows():
    g = np.array([[3.0, 4.0], [0.3, 0.4]])
    out = clip_rows(g, 1.0)
    assert np.linalg.norm(out, axis=1) == pytest.approx([1.0, 0.5])
    assert out[0] == pytest.approx([0.6, 0.8])


def test_dp_noise_has_the_stated_scale():
    d = make_defense("dp", noise_multiplier=2.0, clip_norm=0.5, rng=np.random.default_rng(0))
    released = d.apply(np.zeros((20000, 16)), step=(0, 0))
    assert released.std() == pytest.approx(1.0, rel=0.02)   # sigma * C


def test_auto_clip_is_the_median_of_each_epochs_first_batch():
    d = make_defense("dp", noise_multiplier=0.0, rng=np.random.default_rng(0))
    first = np.array([[1.0, 0.0], [2.0, 0.0], [3.0, 0.0]])       # median norm 2
    out = d.apply(first, step=(0, 0))
    assert out[:, 0] == pytest.approx([1.0, 2.0, 2.0])
    later = d.apply(np.array([[10.0, 0.0]]), step=(0, 5))          # same epoch: clip stays 2
    assert later[0, 0] == pytest.approx(2.0)
    shrunk = np.array([[0.1, 0.0], [0.2, 0.0], [0.3, 0.0]])       # next epoch: median norm 0.2
    assert d.apply(shrunk, step=(1, 0))[:, 0] == pytest.approx([0.1, 0.2, 0.2])
    assert d.describe(epochs=2)["clip_norm"] == [2.0, 0.2]


def test_configured_clip_is_never_re_estimated():
    d = make_defense("dp", noise_multiplier=0.0, clip_norm=1.5)
    assert d.apply(np.array([[3.0, 0.0]]), step=(3, 0))[0, 0] == pytest.approx(1.5)
    assert d.describe(epochs=1)["clip_norm"] == 1.5


def test_max_norm_equalizes_expected_squared_norms():
    d = make_defense("max_norm", rng=np.random.default_rng(1))
    g = np.tile(np.array([[1.0] + [0.0] * 15, [4.0] + [0.0] * 15]), (5000, 1))
    out = d.apply(g)
    sq = np.sum(out ** 2, axis=1)
    assert sq[0::2].mean() == pytest.approx(16.0, rel=0.03)
    assert sq[1::2].mean() == pytest.approx(16.0, rel=0.03)
