"""The standardizer: fitted on training rows only, applied to others, saved as JSON."""
from __future__ import annotations

import numpy as np
import pytest

from vfl.data import Standardizer
from vfl.errors import DataError


def test_fit_on_train_apply_to_others():
    train = np.array([[1.0, 5.0, 10.0], [3.0, 5.0, 20.0]])
    scaler = Standardizer.fit(train)
    np.testing.assert_allclose(scaler.apply(train), [[-1, 0, -1], [1, 0, 1]])
    np.testing.assert_allclose(scaler.apply(np.array([[5.0, 6.0, 15.0]])), [[3, 1, 0]])  # constant: only centred


def test_json_round_trip(tmp_path):
    scaler = Standardizer.fit(np.random.default_rng(0).normal(size=(20, 4)))
    again = Standardizer.from_json(scaler.to_json())
    np.testing.assert_array_equal(again.mean, scaler.mean)
    np.testing.assert_array_equal(again.scale, scaler.scale)
    loaded = Standardizer.load(scaler.save(tmp_path / "std.json"))
    np.testing.assert_array_equal(loaded.scale, scaler.scale)


def test_wrong_width_is_refused():
    with pytest.raises(DataError, match="fitted on 2 feature columns"):
        Standardizer.fit(np.ones((3, 2))).apply(np.ones((3, 3)))


@pytest.mark.parametrize("text, fragment", [
    ("nope", "not valid JSON"), ('{"mean": [0]}', "keys"), ('{"mean": [0, 1], "scale": [1]}', "same length"),
    ('{"mean": [0], "scale": [0]}', "positive"), ('{"mean": ["a"], "scale": [1]}', "numbers"),
])
def test_malformed_json(tmp_path, text, fragment):
    path = tmp_path / "std.json"
    path.write_text(text)
    with pytest.raises(DataError, match=fragment) as info:
        Standardizer.load(path)
    assert "std.json" in str(info.value)
