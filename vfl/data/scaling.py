"""Per-party standardization, fitted on the party's own training rows only."""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np


@dataclass
class Standardizer:
    mean: np.ndarray
    scale: np.ndarray

    @staticmethod
    def fit(x: np.ndarray) -> "Standardizer":
        x = np.asarray(x, dtype=np.float64)
        if x.shape[0] == 0:
            return Standardizer(np.zeros(x.shape[1]), np.ones(x.shape[1]))
        std = x.std(axis=0)
        return Standardizer(x.mean(axis=0), np.where(std > 0, std, 1.0))

    def apply(self, x: np.ndarray) -> np.ndarray:
        return (np.asarray(x, dtype=np.float64) - self.mean) / self.scale

    def to_dict(self) -> dict:
        return {"mean": self.mean.tolist(), "scale": self.scale.tolist()}

    @staticmethod
    def from_dict(data: dict) -> "Standardizer":
        return Standardizer(np.asarray(data["mean"], dtype=np.float64), np.asarray(data["scale"], dtype=np.float64))
