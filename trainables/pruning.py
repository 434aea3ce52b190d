"""Pruning methods, keyed by the names used in space files.

A method ranks weights by a score (higher = keep) over a scope: ``global`` (one ranking over
all compressible tensors), ``per_tensor`` (each tensor loses the same fraction) or
``channel`` (whole hidden channels, scored by the L2 norm of everything they touch, later
removed physically by :mod:`trainables.structured`). ``regularization`` adds an L1 or
group-lasso penalty to the loss before its threshold. Adding a method is one entry in
:data:`PRUNERS`.

Masks are held by a parametrization (``weight = original * mask``) whose buffer is updated
in place by gradual schedules, so pruned weights stay exactly zero during fine-tuning.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import torch
from torch import Tensor, nn
from torch.nn.utils import parametrize

from trainables.models import Target, channel_groups

Score = Callable[[Tensor, torch.Generator], Tensor]
SCHEDULES = ("one_shot", "gradual")
PENALTIES = ("l1", "group_lasso")


def magnitude(weight: Tensor, generator: torch.Generator) -> Tensor:
    return weight.detach().abs()


def random_scores(weight: Tensor, generator: torch.Generator) -> Tensor:
    """Uniform random ranks: the control every pruning study needs. Drawn from a generator
    seeded afresh per call, so gradual steps prune nested subsets."""
    return torch.rand(weight.shape, generator=generator)


@dataclass(frozen=True)
class PruningMethod:
    """How a method ranks weights, over which scope, and whether it trains with a penalty."""

    score: Score | None
    scope: str  # "none", "global", "per_tensor" or "channel"
    penalty: bool = False


PRUNERS: dict[str, PruningMethod] = {
    "none": PruningMethod(None, "none"),
    "global": PruningMethod(magnitude, "global"),
    "fine_grained": PruningMethod(magnitude, "per_tensor"),
    "random": PruningMethod(random_scores, "global"),
    "regularization": PruningMethod(magnitude, "global", penalty=True),
    "structured": PruningMethod(None, "channel"),
}


def get_pruner(method: str) -> PruningMethod:
    if method not in PRUNERS:
        raise ValueError(f"unknown pruning method {method!r}; allowed: {', '.join(PRUNERS)}")
    return PRUNERS[method]


def _keep_mask(scores: Tensor, num_pruned: int) -> Tensor:
    """Mask that drops exactly the ``num_pruned`` lowest ``scores`` (ties broken by position)."""
    mask = torch.ones(scores.numel(), dtype=torch.bool)
    if num_pruned > 0:
        order = torch.argsort(scores.flatten(), stable=True)
        mask[order[:num_pruned]] = False
    return mask.view_as(scores)


def _channel_masks(model: nn.Module, sparsity: float) -> dict[str, Tensor]:
    """Zero the weakest ``sparsity`` fraction of each hidden channel group."""
    masks = {}
    for group in channel_groups(model):
        current = {name: _effective(model, name) for name, _ in group.members}
        norms = None
        for name, axis in group.members:
            w = current[name].detach()
            per_channel = w.pow(2).movedim(axis, 0).reshape(w.shape[axis], -1).sum(dim=1)
            norms = per_channel if norms is None else norms + per_channel
        pruned = min(round(sparsity * norms.numel()), norms.numel() - 1)  # width >= 1
        keep = _keep_mask(norms.sqrt(), pruned)
        for name, axis in group.members:
            shape = [1] * current[name].dim()
            shape[axis] = -1
            masks[name] = keep.view(shape).expand_as(current[name]).clone()
    return masks


def _effective(model: nn.Module, name: str) -> Tensor:
    """Parameter ``name`` (e.g. ``conv1.weight``) as the forward sees it (through masks)."""
    module_name, _, attr = name.rpartition(".")
    module = model.get_submodule(module_name) if module_name else model
    return getattr(module, attr)


def compute_masks(
    method: str,
    model: nn.Module,
    targets: dict[str, Target],
    sparsity: float,
    seed: int = 0,
) -> dict[str, Tensor]:
    """Keep-masks (by parameter name) that prune ``sparsity`` of the weights with ``method``.

    Scores are taken on the weights as the forward sees them, so already-pruned weights rank
    lowest and gradual steps only add to what was pruned.
    """
    pruner = get_pruner(method)
    if not 0.0 <= sparsity < 1.0:
        raise ValueError(f"sparsity must be in [0, 1), got {sparsity}")
    if pruner.scope == "none":
        return {}
    if pruner.scope == "channel":
        return _channel_masks(model, sparsity)
    generator = torch.Generator().manual_seed(seed)  # one stream: tensors get distinct draws
    scores = {name: pruner.score(t.tensor, generator) for name, t in targets.items()}
    if pruner.scope == "per_tensor":
        return {name: _keep_mask(s, round(sparsity * s.numel())) for name, s in scores.items()}
    flat = torch.cat([s.flatten() for s in scores.values()])
    keep = _keep_mask(flat, round(sparsity * flat.numel()))
    masks, start = {}, 0
    for name, s in scores.items():
        masks[name] = keep[start : start + s.numel()].view_as(s)
        start += s.numel()
    return masks


class Mask(nn.Module):
    """Parametrization holding a keep-mask: pruned weights are zero in every forward."""

    def __init__(self, mask: Tensor) -> None:
        super().__init__()
        self.register_buffer("mask", mask)

    def forward(self, weight: Tensor) -> Tensor:
        return weight * self.mask


def apply_masks(model: nn.Module, masks: dict[str, Tensor]) -> None:
    """Hold ``masks`` on their parameters; a parameter masked before gets its mask updated."""
    for name, mask in masks.items():
        module_name, _, attr = name.rpartition(".")
        module = model.get_submodule(module_name) if module_name else model
        existing = [p for p in module.parametrizations[attr] if isinstance(p, Mask)] if (
            parametrize.is_parametrized(module, attr)) else []
        if existing:
            existing[0].mask.copy_(mask)
        else:
            parametrize.register_parametrization(module, attr, Mask(mask))


def sparsity_at(epoch: int, start: int, epochs: int, final: float, schedule: str) -> float:
    """Sparsity that training epoch ``epoch`` (1-based, of ``epochs``) runs at, when pruning
    may begin after epoch ``start`` (0, or the end of a regularization phase).

    ``one_shot`` jumps to ``final`` at once; ``gradual`` follows Zhu & Gupta's cubic ramp,
    s_t = s_f (1 - (1 - t/n)^3), reaching ``final`` after three quarters of the remaining
    epochs so that the last quarter fine-tunes the final mask.
    """
    if schedule not in SCHEDULES:
        raise ValueError(f"unknown pruning schedule {schedule!r}; allowed: {', '.join(SCHEDULES)}")
    if epoch <= start:
        return 0.0
    if schedule == "one_shot":
        return final
    ramp = max(1, round(0.75 * (epochs - start)))
    progress = min((epoch - start) / ramp, 1.0)
    return final * (1.0 - (1.0 - progress) ** 3)


def penalty(targets: dict[str, Target], kind: str) -> Tensor:
    """L1 (sum of |w|) or group lasso (sum of output-channel L2 norms) over compressible
    weights, as the forward sees them."""
    if kind not in PENALTIES:
        raise ValueError(f"unknown penalty {kind!r}; allowed: {', '.join(PENALTIES)}")
    total = torch.zeros(())
    for t in targets.values():
        w = t.tensor
        if kind == "l1":
            total = total + w.abs().sum()
        else:
            per_channel = w.movedim(t.axis, 0).reshape(w.shape[t.axis], -1)
            total = total + per_channel.norm(dim=1).sum()
    return total
