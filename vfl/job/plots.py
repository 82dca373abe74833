"""A training job's plots, written as PNG beside its result.json at the active party.

learning_curves.png: the training loss and every validation metric per epoch (the epoch kept by early stopping
marked); roc.png (binary tasks with both classes in the test split): the ROC curve of the test predictions, for the
positive class. Only the active party draws them: they come from its labels and its own metrics, which never leave it.

matplotlib's object API with the Agg canvas: no pyplot, no global backend, no display needed, safe in a job thread.
"""
from __future__ import annotations

from pathlib import Path
from typing import Sequence

import numpy as np

from vfl.data.atomic import atomic_write

LEARNING_CURVES = "learning_curves.png"
ROC = "roc.png"


def _figure(width: float, height: float):
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure
    figure = Figure(figsize=(width, height), dpi=100)
    FigureCanvasAgg(figure)
    return figure


def _save(figure, path: Path) -> Path:
    figure.tight_layout()
    return atomic_write(path, lambda tmp: figure.savefig(tmp, format="png"))


def validation_keys(history: Sequence[dict]) -> list[str]:
    """The validation metrics the history holds, in first-seen order (validation_auc, validation_accuracy, ...)."""
    keys: list[str] = []
    for row in history:
        keys += [k for k in row if k.startswith("validation_") and k not in keys]
    return keys


def write_learning_curves(history: Sequence[dict], path: Path, kept_epoch: int | None = None) -> Path:
    """Loss (left) and validation metrics (right) per epoch; `kept_epoch`: the epoch early stopping kept."""
    epochs = [row["epoch"] for row in history]
    metrics = validation_keys(history)
    figure = _figure(10 if metrics else 5, 4)
    axes = figure.subplots(1, 2 if metrics else 1, squeeze=False)[0]
    axes[0].plot(epochs, [row["loss"] for row in history], marker="o", label="training loss")
    axes[0].set(xlabel="epoch", ylabel="loss", title="training loss (mean over the epoch's batches)")
    for key in metrics:
        axes[1].plot(epochs, [row.get(key, np.nan) for row in history], marker="o", label=key[len("validation_"):])
    if metrics:
        axes[1].set(xlabel="epoch", title="validation")
        axes[1].legend()
    for ax in axes:
        ax.grid(alpha=0.3)
        if kept_epoch is not None:
            ax.axvline(kept_epoch, color="grey", linestyle="--", label=f"kept epoch {kept_epoch}")
    axes[0].legend()
    return _save(figure, path)


def write_roc(labels: np.ndarray, scores: np.ndarray, path: Path, positive_class: str) -> float:
    """The ROC curve of `scores` (P(positive)) against 0/1 `labels`; returns the area under the plotted curve."""
    from sklearn.metrics import auc, roc_curve
    fpr, tpr, _ = roc_curve(np.asarray(labels), np.asarray(scores))
    area = float(auc(fpr, tpr))
    figure = _figure(5, 5)
    ax = figure.subplots()
    ax.plot(fpr, tpr, label=f"test split, AUC {area:.3f}")
    ax.plot([0, 1], [0, 1], color="grey", linestyle=":", label="chance")
    ax.set(xlabel="false positive rate", ylabel="true positive rate", xlim=(0, 1), ylim=(0, 1.01),
           title=f"ROC, positive class {positive_class!r}")
    ax.grid(alpha=0.3)
    ax.legend(loc="lower right")
    _save(figure, path)
    return area
