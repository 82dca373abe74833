"""Per-party standardization, fitted on the party's own training rows only.

Each party standardizes its own columns locally; the statistics never leave the party. Constant columns
(standard deviation 0) are only centred. Saved as JSON next to the model part.
"""
from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from vfl.data.atomic import atomic_write_text
from vfl.errors import DataError


@dataclass
class Standardizer:
    mean: np.ndarray    # float64, one per feature column
    scale: np.ndarray   # float64, > 0, one per feature column

    @staticmethod
    def fit(x: np.ndarray) -> "Standardizer":
        """Column means and (population) standard deviations of the training rows `x`."""
        x = np.asarray(x, dtype=np.float64)
        if x.ndim != 2:
            raise ValueError(f"Standardizer.fit needs a rows x features matrix, got shape {x.shape}")
        if x.shape[0] == 0:
            return Standardizer(np.zeros(x.shape[1]), np.ones(x.shape[1]))
        std = x.std(axis=0)
        return Standardizer(x.mean(axis=0), np.where(std > 0, std, 1.0))

    def apply(self, x: np.ndarray) -> np.ndarray:
        """(x - mean) / scale, as float64; `x` must have the fitted number of columns."""
        x = np.asarray(x, dtype=np.float64)
        if x.ndim != 2 or x.shape[1] != len(self.mean):
            raise DataError(f"standardizer was fitted on {len(self.mean)} feature columns, "
                            f"but the rows have shape {x.shape}")
        return (x - self.mean) / self.scale

    def to_dict(self) -> dict:
        return {"mean": self.mean.tolist(), "scale": self.scale.tolist()}

    @staticmethod
    def from_dict(data: dict, source: str = "standardizer") -> "Standardizer":
        """Rebuild from `to_dict` output; malformed input is a DataError naming `source`."""
        if not isinstance(data, dict) or set(data) != {"mean", "scale"}:
            raise DataError(f"{source}: a standardizer needs exactly the keys 'mean' and 'scale'")
        try:
            mean = np.asarray(data["mean"], dtype=np.float64)
            scale = np.asarray(data["scale"], dtype=np.float64)
        except (TypeError, ValueError) as exc:
            raise DataError(f"{source}: 'mean' and 'scale' must be lists of numbers: {exc}") from None
        if mean.ndim != 1 or mean.shape != scale.shape:
            raise DataError(f"{source}: 'mean' and 'scale' must be lists of the same length")
        if not (np.all(np.isfinite(mean)) and np.all(np.isfinite(scale)) and np.all(scale > 0)):
            raise DataError(f"{source}: 'mean' must be finite and 'scale' finite and positive")
        return Standardizer(mean, scale)

    def to_json(self) -> str:
        return json.dumps(self.to_dict())

    @staticmethod
    def from_json(text: str, source: str = "standardizer") -> "Standardizer":
        try:
            data = json.loads(text)
        except json.JSONDecodeError as exc:
            raise DataError(f"{source}: not valid JSON: {exc}") from None
        return Standardizer.from_dict(data, source)

    def save(self, path: str | Path) -> Path:
        """Write the JSON atomically (temp file in the same folder, then rename)."""
        return atomic_write_text(Path(path), self.to_json())

    @staticmethod
    def load(path: str | Path) -> "Standardizer":
        path = Path(path)
        try:
            text = path.read_text(encoding="utf-8")
        except (OSError, UnicodeDecodeError) as exc:
            raise DataError(f"{path}: cannot read standardizer: {exc}") from None
        return Standardizer.from_json(text, source=path.name)

