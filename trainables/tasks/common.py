"""What every task shares: k-fold cross-validation, one summary over folds, a training step."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import torch
from torch import nn

from trainables.metrics import combine_over_folds, is_score
from trainables.training import StepHooks


@dataclass
class CrossValidation:
    """One task per fold (k-fold cross-validation): trials and baselines run every fold and
    report the mean (and ``*_std`` of the scores) over folds."""

    folds: list[Any]

    def __post_init__(self) -> None:
        if not self.folds:
            raise ValueError("cross-validation needs at least one fold")

    def __getattr__(self, name: str) -> Any:
        # shared facts (search_metric, num_features, ...) are the same in every fold
        if name == "folds":
            raise AttributeError(name)
        return getattr(self.folds[0], name)


def summarize_folds(per_fold: list[dict[str, float]]) -> dict[str, float]:
    """One figure per metric over folds, combined as the metrics table says (sums for times
    and energy, the max of peak memory, else the mean); ``<score>_std`` beside every score."""
    out: dict[str, float] = {}
    for name in per_fold[0]:
        values = torch.tensor([fold[name] for fold in per_fold], dtype=torch.float64)
        rule = combine_over_folds(name)
        out[name] = float(values.sum() if rule == "sum" else values.max() if rule == "max"
                          else values.mean())
        if is_score(name):
            out[f"{name}_std"] = float(values.std(unbiased=False))
    return out


def train_step(
    task,
    model: nn.Module,
    optimizer: torch.optim.Optimizer,
    hooks: StepHooks | None = None,
    grad_clip: float = 0.0,
) -> float:
    """One training epoch of ``task`` (one step for full-graph tasks); returns the loss."""
    return task.train_epoch(model, optimizer, hooks, grad_clip)
