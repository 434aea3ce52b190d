"""Scores computed on held-out predictions: accuracy, ROC-AUC, average precision.

Thin wrappers over scikit-learn's ``roc_auc_score`` and ``average_precision_score`` that take
1-D torch tensors and return a float, NaN where the score is undefined (one class absent).
scikit-learn is imported on first use: a trial that never ranks does not pay for it.
"""

from __future__ import annotations

import numpy as np
from torch import Tensor


def accuracy(pred: Tensor, target: Tensor) -> float:
    """Fraction of ``pred == target``."""
    return float((pred == target).float().mean()) if target.numel() else float("nan")


def _check_binary(scores: Tensor, labels: Tensor) -> tuple[np.ndarray, np.ndarray]:
    """Scores as float64 and labels as bool, flattened, on the CPU."""
    scores, labels = scores.detach().flatten(), labels.detach().flatten()
    if scores.numel() != labels.numel():
        raise ValueError(f"{scores.numel()} scores for {labels.numel()} labels")
    return scores.double().cpu().numpy(), labels.bool().cpu().numpy()


def roc_auc(scores: Tensor, labels: Tensor) -> float:
    """Area under the ROC curve (tied scores count one half); NaN when only one class is
    present."""
    scores_np, labels_np = _check_binary(scores, labels)
    n_pos = int(labels_np.sum())
    if n_pos == 0 or n_pos == labels_np.size:
        return float("nan")
    from sklearn.metrics import roc_auc_score

    return float(roc_auc_score(labels_np, scores_np))


def average_precision(scores: Tensor, labels: Tensor) -> float:
    """Average precision: sum over distinct thresholds of (recall step) x precision; NaN when
    there is no positive (all positives score 1)."""
    scores_np, labels_np = _check_binary(scores, labels)
    if not labels_np.any():
        return float("nan")
    from sklearn.metrics import average_precision_score

    return float(average_precision_score(labels_np, scores_np))
