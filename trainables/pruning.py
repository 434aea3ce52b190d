"""Pruning methods: each maps weight tensors and a target sparsity to boolean keep-masks.

A method is a pure function ``(weights, sparsity, generator) -> masks``; adding one is one
function and one line in :data:`PRUNERS`. Masks are held during fine-tuning by a
parametrization (``weight = original * mask``), so pruned weights stay exactly zero.
"""

from __future__ import annotations

from collections.abc import Callable

import torch
from torch import Tensor, nn
from torch.nn.utils import parametrize

from trainables.models import Target

Pruner = Callable[[dict[str, Tensor], float, torch.Generator], dict[str, Tensor]]


def _keep_mask(scores: Tensor, num_pruned: int) -> Tensor:
    """Mask that drops exactly the ``num_pruned`` lowest ``scores`` (ties broken by position)."""
    mask = torch.ones(scores.numel(), dtype=torch.bool)
    if num_pruned > 0:
        order = torch.argsort(scores.flatten(), stable=True)
        mask[order[:num_pruned]] = False
    return mask.view_as(scores)


def prune_none(weights: dict[str, Tensor], sparsity: float, generator) -> dict[str, Tensor]:
    """No pruning."""
    return {}


def prune_global(weights: dict[str, Tensor], sparsity: float, generator) -> dict[str, Tensor]:
    """Global magnitude pruning: one ranking of |w| over all tensors."""
    flat = torch.cat([w.detach().abs().flatten() for w in weights.values()])
    keep = _keep_mask(flat, round(sparsity * flat.numel()))
    masks, start = {}, 0
    for name, w in weights.items():
        masks[name] = keep[start : start + w.numel()].view_as(w)
        start += w.numel()
    return masks


def prune_fine_grained(
    weights: dict[str, Tensor], sparsity: float, generator
) -> dict[str, Tensor]:
    """Per-tensor magnitude pruning: every tensor loses the same fraction of its weights."""
    return {
        name: _keep_mask(w.detach().abs(), round(sparsity * w.numel()))
        for name, w in weights.items()
    }


PRUNERS: dict[str, Pruner] = {
    "none": prune_none,
    "global": prune_global,
    "fine_grained": prune_fine_grained,
}


class Mask(nn.Module):
    """Parametrization holding a fixed keep-mask: pruned weights are zero in every forward."""

    def __init__(self, mask: Tensor) -> None:
        super().__init__()
        self.register_buffer("mask", mask)

    def forward(self, weight: Tensor) -> Tensor:
        return weight * self.mask


def compute_masks(
    method: str, targets: dict[str, Target], sparsity: float, seed: int = 0
) -> dict[str, Tensor]:
    """Masks for ``targets`` from registered pruning ``method``."""
    if method not in PRUNERS:
        raise ValueError(f"unknown pruning method {method!r}; allowed: {', '.join(PRUNERS)}")
    if not 0.0 <= sparsity < 1.0:
        raise ValueError(f"sparsity must be in [0, 1), got {sparsity}")
    weights = {name: t.tensor for name, t in targets.items()}
    return PRUNERS[method](weights, sparsity, torch.Generator().manual_seed(seed))


def attach_masks(targets: dict[str, Target], masks: dict[str, Tensor]) -> None:
    """Hold ``masks`` on their tensors through training (parametrization)."""
    for name, mask in masks.items():
        target = targets[name]
        parametrize.register_parametrization(target.module, target.attr, Mask(mask))
