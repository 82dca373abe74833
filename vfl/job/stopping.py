"""Early stopping (`train.early_stopping`): which epoch is best so far, and whether to stop, from the active party's
history of validation metrics alone.

The decision is a function of the history, so a job resumed from a checkpoint (whose history is restored with it)
decides exactly as an uninterrupted one. What the passive parties learn of it is bounded in docs/protocol.md: that
training ended after E epochs (they see every epoch's steps anyway) and which epoch k every party keeps.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Sequence

from vfl.errors import DataError
from vfl.job.spec import LOWER_IS_BETTER, EarlyStoppingSpec


@dataclass(frozen=True)
class Stopping:
    key: str              # the history's key, e.g. validation_auc
    patience: int
    min_delta: float
    lower_is_better: bool

    @staticmethod
    def of(spec: EarlyStoppingSpec, task: str) -> "Stopping":
        metric = spec.metric_for(task)
        return Stopping(f"validation_{metric}", spec.patience, spec.min_delta, metric in LOWER_IS_BETTER)

    def value(self, row: dict) -> float:
        if self.key not in row:
            raise DataError(f"train.early_stopping: epoch {row['epoch']} has no {self.key} (the validation split has "
                            f"{'only one class' if self.key == 'validation_auc' else 'no such metric'}); choose "
                            "another early_stopping.metric or a larger split.validation")
        return float(row[self.key])

    def improves(self, value: float, best: float) -> bool:
        return value < best - self.min_delta if self.lower_is_better else value > best + self.min_delta

    def best_epoch(self, history: Sequence[dict]) -> int:
        """The epoch with the best validation value: the first one, if later ones never improve by > min_delta."""
        best_epoch, best = 0, None
        for row in history:
            value = self.value(row)
            if best is None or self.improves(value, best):
                best_epoch, best = int(row["epoch"]), value
        return best_epoch

    def should_stop(self, history: Sequence[dict]) -> bool:
        """`patience` epochs have passed since the best one."""
        return bool(history) and int(history[-1]["epoch"]) - self.best_epoch(history) >= self.patience
