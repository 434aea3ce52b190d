"""Pruning methods, keyed by the names used in space files (:data:`PRUNERS`).

Each method is a :class:`Pruner` with a lifecycle like a quantizer's: prepare, a loss
penalty, a per-step hook, the masks at each epoch, finalize. A method ranks weights by a
score (higher = keep) over a scope: ``global`` (one ranking over all compressible tensors),
``per_tensor`` (each tensor loses the same fraction) or ``channel`` (whole hidden channels,
scored by the L2 norm of everything they touch, later removed physically by
:mod:`trainables.structured`). ``regularization`` adds an L1 or group-lasso penalty to the
loss before its threshold. Adding a method is one class and one entry in :data:`PRUNERS`;
the cycle has no branch for any method.

Masks are held by a parametrization (``weight = original * mask``) whose buffer is updated
in place by gradual schedules, so pruned weights stay exactly zero during fine-tuning.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any

import torch
from torch import Tensor, nn
from torch.nn.utils import parametrize

from trainables.models import Target

Score = Callable[[Tensor, torch.Generator], Tensor]
SCHEDULES = ("one_shot", "gradual")
PENALTIES = ("l1", "group_lasso")


def magnitude(weight: Tensor, generator: torch.Generator) -> Tensor:
    return weight.detach().abs()


def random_scores(weight: Tensor, generator: torch.Generator) -> Tensor:
    """Uniform random ranks: the control every pruning study needs. Drawn from a generator
    seeded afresh per call, so gradual steps prune nested subsets."""
    return torch.rand(weight.shape, generator=generator).to(weight.device)  # same draws anywhere


class Pruner:
    """A pruning method's part in one trial, a lifecycle like a quantizer's.

    ``prepare`` (masks before fine-tuning), ``penalty`` (a loss term, or None),
    ``after_backward`` (a per-step hook, with the gradients in place), ``at_epoch`` (the
    masks a training epoch runs with), ``finalize`` (the final masks, and a smaller model
    where channels go). A method ranks weights by ``score`` (higher = keep) over ``scope``:
    ``global`` (one ranking over all compressible tensors), ``per_tensor`` (each tensor
    loses the same fraction) or ``channel`` (whole hidden channels). ``uses``: the
    parameters that apply to it (the space loader samples only those).
    """

    score: Score | None = None
    scope = "global"
    uses: tuple[str, ...] = ("prune.sparsity", "prune.schedule")

    def __init__(self, config: dict[str, Any], seed: int = 0) -> None:
        self.name = config.get("prune.method", "none")
        self.final = config.get("prune.sparsity", 0.0)
        self.schedule = config.get("prune.schedule", "one_shot")
        self.config, self.seed = config, seed
        self.current: float | None = None

    def start_epoch(self, epochs: int) -> int:
        """The epoch after which pruning begins (0: from the start)."""
        return 0

    def prepare(self, model: nn.Module, targets: dict[str, Target], epochs: int,
                example_inputs: tuple = ()) -> None:
        """Hold the masks of the first training epoch (none with no epochs);
        ``example_inputs``: one forward's inputs (structured pruning traces them)."""
        self.model, self.targets, self.epochs = model, targets, epochs
        self.start = self.start_epoch(epochs)
        self.at_epoch(1) if epochs else self._prune_to(0.0)

    def masks(self, sparsity: float) -> dict[str, Tensor]:
        """Keep-masks pruning ``sparsity`` of the weights, scored on them as they are now."""
        return compute_masks(self.name, self.model, self.targets, sparsity, self.seed)

    def _prune_to(self, sparsity: float) -> None:
        if sparsity != self.current:
            apply_masks(self.model, self.masks(sparsity))
            self.current = sparsity

    def at_epoch(self, epoch: int) -> None:
        """Masks for training epoch ``epoch`` (1-based) as the schedule says."""
        self._prune_to(sparsity_at(epoch, self.start, self.epochs, self.final, self.schedule))

    @property
    def sparsity(self) -> float:
        """The sparsity the masks now hold."""
        return self.current or 0.0

    @property
    def at_final_sparsity(self) -> bool:
        return self.sparsity == self.final

    def penalty(self) -> Tensor | None:
        return None

    def after_backward(self) -> None:
        """Per-step hook: gradients are in place, the update has not happened."""

    def finalize(self, model: nn.Module, example_inputs: tuple) -> dict[str, Any]:
        """The final masks (schedules that had not reached the target), baked into the
        weights; returns what the model file's header must record to rebuild the model
        (structured pruning: which channels it removed)."""
        self._prune_to(self.final)
        bake_parametrizations(model)
        return {}


class NoPruning(Pruner):
    scope = "none"
    uses = ()

    def masks(self, sparsity: float) -> dict[str, Tensor]:
        return {}


class GlobalMagnitude(Pruner):
    score = staticmethod(magnitude)


class FineGrained(Pruner):
    """Every tensor loses the same fraction (fine-grained, per-tensor magnitude)."""

    score = staticmethod(magnitude)
    scope = "per_tensor"


class RandomPruning(Pruner):
    score = staticmethod(random_scores)


class Regularization(Pruner):
    """An L1 or group-lasso penalty in the loss first, then a global magnitude threshold."""

    score = staticmethod(magnitude)
    uses = (*Pruner.uses, "prune.penalty", "prune.strength")

    def start_epoch(self, epochs: int) -> int:
        # regularize for the first half, keeping at least one epoch to fine-tune the mask
        return min(math.ceil(epochs / 2), max(epochs - 1, 0))

    def penalty(self) -> Tensor | None:
        if self.sparsity != 0.0:  # the threshold has been applied: fine-tune without it
            return None
        kind = self.config.get("prune.penalty", "l1")
        return self.config.get("prune.strength", 0.0) * penalty(self.targets, kind)


class Structured(Pruner):
    """Whole hidden channels, scored by the L2 norm of everything they touch, removed
    physically at the end. The channel groups are found by tracing the model
    (:mod:`trainables.structured`)."""

    scope = "channel"

    def prepare(self, model: nn.Module, targets: dict[str, Target], epochs: int,
                example_inputs: tuple = ()) -> None:
        from trainables.structured import channel_groups, input_spec, synthetic_inputs

        self.groups = channel_groups(model, synthetic_inputs(input_spec(example_inputs)))
        super().prepare(model, targets, epochs, example_inputs)

    def masks(self, sparsity: float) -> dict[str, Tensor]:
        return compute_masks(self.name, self.model, self.targets, sparsity, self.seed,
                             groups=self.groups)

    def finalize(self, model: nn.Module, example_inputs: tuple) -> dict[str, Any]:
        from trainables.structured import remove_zero_channels

        super().finalize(model, example_inputs)
        return {"structured": remove_zero_channels(model, example_inputs)}


PRUNERS: dict[str, type[Pruner]] = {
    "none": NoPruning,
    "global": GlobalMagnitude,
    "fine_grained": FineGrained,
    "random": RandomPruning,
    "regularization": Regularization,
    "structured": Structured,
}


def get_pruner(method: str) -> type[Pruner]:
    if method not in PRUNERS:
        raise ValueError(f"unknown pruning method {method!r}; allowed: {', '.join(PRUNERS)}")
    return PRUNERS[method]


def make_pruner(config: dict[str, Any], seed: int = 0) -> Pruner:
    """The pruner ``config["prune.method"]`` names, set up with the config's settings."""
    return get_pruner(config.get("prune.method", "none"))(config, seed)


def _keep_mask(scores: Tensor, num_pruned: int) -> Tensor:
    """Mask that drops exactly the ``num_pruned`` lowest ``scores`` (ties broken by position)."""
    mask = torch.ones(scores.numel(), dtype=torch.bool, device=scores.device)
    if num_pruned > 0:
        order = torch.argsort(scores.flatten(), stable=True)
        mask[order[:num_pruned]] = False
    return mask.view_as(scores)


def _channel_masks(model: nn.Module, sparsity: float, groups: list) -> dict[str, Tensor]:
    """Zero the weakest ``sparsity`` fraction of each hidden channel group (at least one
    channel stays); a tensor two groups index holds both groups' masks."""
    from trainables.structured import channel_norms, group_masks

    def tensor_of(name: str) -> Tensor:
        return _effective(model, name)

    masks: dict[str, Tensor] = {}
    for group in groups:
        norms = channel_norms(group, tensor_of)
        pruned = min(round(sparsity * norms.numel()), norms.numel() - 1)  # width >= 1
        for name, mask in group_masks(group, _keep_mask(norms, pruned), tensor_of).items():
            masks[name] = masks[name] & mask if name in masks else mask
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
    groups: list | None = None,
) -> dict[str, Tensor]:
    """Keep-masks (by parameter name) that prune ``sparsity`` of the weights with ``method``
    (``groups``: a channel method's groups, :func:`trainables.structured.channel_groups`).

    Scores are taken on the weights as the forward sees them, so already-pruned weights rank
    lowest and gradual steps only add to what was pruned.
    """
    pruner = get_pruner(method)
    if not 0.0 <= sparsity < 1.0:
        raise ValueError(f"sparsity must be in [0, 1), got {sparsity}")
    if pruner.scope == "none":
        return {}
    if pruner.scope == "channel":
        if groups is None:
            raise ValueError(f"prune.method={method!r} needs the model's channel groups "
                             "(trainables.structured.channel_groups)")
        return _channel_masks(model, sparsity, groups)
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


def bake_parametrizations(model: nn.Module) -> None:
    """Replace every parametrized weight by its masked value, without fake quantization."""
    from trainables.quantization import FakeQuant

    for module in list(model.modules()):
        if not parametrize.is_parametrized(module):
            continue
        for attr in list(module.parametrizations.keys()):
            chain = module.parametrizations[attr]
            value = chain.original
            for step in chain:
                if not isinstance(step, FakeQuant):
                    value = step(value)
            value = value.detach() + 0.0  # -0.0 -> +0.0
            parametrize.remove_parametrizations(module, attr, leave_parametrized=False)
            getattr(module, attr).data.copy_(value)


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
