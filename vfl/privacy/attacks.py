"""Attacks that measure what a job leaked, run on exactly what parties observed.

Label inference by a passive party uses the input gradients its node recorded during the real run
(opt-in `privacy.record_gradients`): one row per example per training step, with the step it came from.

* norm scoring (Li et al. 2021): score = ||g_i||. On imbalanced binary tasks the rare class gets
  larger gradients.
* direction scoring, unsupervised sign variant: within one step the gradients of the two classes point
  in opposite directions along the batch's principal axis; score = projection on that axis, oriented so
  that the smaller side is scored as positive (the attacker assumes the positive class is the minority).

Both report leak AUC = max(AUC, 1 - AUC) against the true labels (an attacker can flip a score),
computed per training step and averaged over steps, as Li et al. do: gradient scales drift during
training, so one threshold over the whole run would understate what an attacker gets at each step.

Membership inference against the finished model (loss threshold, Yeom et al. 2018): score = -loss;
AUC of training rows against test rows.
"""
from __future__ import annotations

import numpy as np
from sklearn.metrics import roc_auc_score


def leak_auc(labels: np.ndarray, scores: np.ndarray) -> float:
    labels = np.asarray(labels)
    if len(np.unique(labels)) < 2:
        return float("nan")
    auc = float(roc_auc_score(labels, scores))
    return max(auc, 1.0 - auc)


def norm_scores(gradients: np.ndarray) -> np.ndarray:
    return np.linalg.norm(gradients, axis=1)


def direction_scores(gradients: np.ndarray, steps: np.ndarray) -> np.ndarray:
    """Projection of each gradient on its step's principal axis, minority side positive."""
    scores = np.zeros(len(gradients))
    for step in np.unique(steps):
        idx = np.flatnonzero(steps == step)
        g = gradients[idx]
        if len(idx) < 2:
            continue
        _, _, vt = np.linalg.svd(g, full_matrices=False)
        proj = g @ vt[0]
        if np.sum(proj > 0) > np.sum(proj < 0):
            proj = -proj
        scores[idx] = proj
    return scores


def per_step_leak_auc(labels: np.ndarray, scores: np.ndarray, steps: np.ndarray) -> float:
    """Mean over steps of the step's leak AUC (steps with one class only are skipped)."""
    aucs = [leak_auc(labels[steps == s], scores[steps == s]) for s in np.unique(steps)
            if len(np.unique(labels[steps == s])) == 2]
    return float(np.mean(aucs)) if aucs else float("nan")


def membership_auc(train_losses: np.ndarray, test_losses: np.ndarray) -> float:
    """Loss-threshold membership inference: AUC of -loss separating training from test rows."""
    scores = -np.concatenate([train_losses, test_losses])
    membership = np.concatenate([np.ones(len(train_losses)), np.zeros(len(test_losses))])
    return float(roc_auc_score(membership, scores))
