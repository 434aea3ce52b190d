"""Scores computed on held-out predictions: accuracy, ROC-AUC, average precision.

Pure functions on 1-D tensors; the ranking metrics follow scikit-learn's definitions (tied
scores share their average rank; average precision steps at each distinct threshold).
"""

from __future__ import annotations

import torch
from torch import Tensor


def accuracy(pred: Tensor, target: Tensor) -> float:
    """Fraction of ``pred == target``."""
    return float((pred == target).float().mean()) if target.numel() else float("nan")


def _check_binary(scores: Tensor, labels: Tensor) -> tuple[Tensor, Tensor]:
    scores, labels = scores.detach().flatten().double(), labels.detach().flatten().bool()
    if scores.numel() != labels.numel():
        raise ValueError(f"{scores.numel()} scores for {labels.numel()} labels")
    return scores, labels


def roc_auc(scores: Tensor, labels: Tensor) -> float:
    """Area under the ROC curve (Mann-Whitney U with average ranks for ties); NaN when only
    one class is present."""
    scores, labels = _check_binary(scores, labels)
    n_pos = int(labels.sum())
    n_neg = labels.numel() - n_pos
    if n_pos == 0 or n_neg == 0:
        return float("nan")
    order = scores.argsort()
    sorted_scores = scores[order]
    ranks = torch.empty_like(scores)
    ranks[order] = torch.arange(1, scores.numel() + 1, dtype=torch.float64)
    # average the ranks of tied scores
    _, inverse, counts = torch.unique_consecutive(sorted_scores, return_inverse=True,
                                                  return_counts=True)
    ends = counts.cumsum(0).double()
    average = ends - (counts.double() - 1) / 2
    ranks[order] = average[inverse]
    u = ranks[labels].sum() - n_pos * (n_pos + 1) / 2
    return float(u / (n_pos * n_neg))


def average_precision(scores: Tensor, labels: Tensor) -> float:
    """Average precision: sum over distinct thresholds of (recall step) x precision."""
    scores, labels = _check_binary(scores, labels)
    n_pos = int(labels.sum())
    if n_pos == 0:
        return float("nan")
    order = scores.argsort(descending=True)
    sorted_scores, sorted_labels = scores[order], labels[order].double()
    tp = sorted_labels.cumsum(0)
    # the last index of each run of equal scores is a threshold
    last = torch.ones_like(sorted_scores, dtype=torch.bool)
    last[:-1] = sorted_scores[1:] != sorted_scores[:-1]
    tp = tp[last]
    seen = torch.arange(1, scores.numel() + 1, dtype=torch.float64)[last]
    precision = tp / seen
    recall_step = torch.diff(tp, prepend=torch.zeros(1, dtype=torch.float64)) / n_pos
    return float((recall_step * precision).sum())
