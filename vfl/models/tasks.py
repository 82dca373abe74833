"""Task heads: loss on the top model's output, predictions, and evaluation metrics."""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch
from sklearn.metrics import accuracy_score, roc_auc_score
from torch import nn


@dataclass
class Task:
    kind: str          # binary | multiclass | regression
    num_outputs: int   # width of the top model's output
    num_classes: int = 0

    def loss(self, output: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        """Mean loss over the batch."""
        if self.kind == "binary":
            return nn.functional.binary_cross_entropy_with_logits(output.squeeze(-1), target.float())
        if self.kind == "multiclass":
            return nn.functional.cross_entropy(output, target.long())
        return nn.functional.mse_loss(output.squeeze(-1), target.float())

    def predict(self, output: torch.Tensor) -> np.ndarray:
        """Probabilities (binary: P(y=1); multiclass: a row per example) or regression values."""
        with torch.no_grad():
            if self.kind == "binary":
                return torch.sigmoid(output.squeeze(-1)).cpu().numpy()
            if self.kind == "multiclass":
                return torch.softmax(output, dim=-1).cpu().numpy()
            return output.squeeze(-1).cpu().numpy()

    def metrics(self, prediction: np.ndarray, target: np.ndarray) -> dict[str, float]:
        target = np.asarray(target)
        if len(target) == 0:
            return {}
        if self.kind == "binary":
            out = {"accuracy": float(accuracy_score(target, prediction >= 0.5))}
            if len(np.unique(target)) == 2:
                out["auc"] = float(roc_auc_score(target, prediction))
            return out
        if self.kind == "multiclass":
            return {"accuracy": float(accuracy_score(target, prediction.argmax(axis=1)))}
        rmse = float(np.sqrt(np.mean((prediction - target) ** 2)))
        return {"rmse": rmse}


def make_task(kind: str, labels: np.ndarray | None, num_classes: int | None = None) -> Task:
    if kind == "binary":
        return Task(kind, 1, 2)
    if kind == "multiclass":
        k = int(num_classes if num_classes is not None else int(np.max(labels)) + 1)
        return Task(kind, k, k)
    return Task(kind, 1, 0)
