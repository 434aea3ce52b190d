"""One optimizer step, shared by every task's training epoch.

What compression adds to a step comes in through :class:`StepHooks`: a loss term
(regularization, A2Q's memory penalty) and a call between backward and the update (where a
gradient-based pruner reads the gradients).
"""

from __future__ import annotations

from typing import Protocol

import torch
from torch import Tensor, nn


class StepHooks(Protocol):
    """What the compression methods add to a training step."""

    def extra_loss(self) -> Tensor | None:
        """A term added to the task's loss, or None."""

    def after_backward(self) -> None:
        """Called with the gradients in place, before clipping and the update."""


def optimizer_step(
    model: nn.Module, optimizer: torch.optim.Optimizer, loss: Tensor,
    hooks: StepHooks | None = None, grad_clip: float = 0.0,
) -> float:
    """Backward ``loss`` (+ ``hooks.extra_loss()``), hooks, clip, step; the total loss."""
    extra = hooks.extra_loss() if hooks is not None else None
    if extra is not None:
        loss = loss + extra
    loss.backward()
    if hooks is not None:
        hooks.after_backward()
    if grad_clip > 0:
        torch.nn.utils.clip_grad_norm_(model.parameters(), grad_clip)
    optimizer.step()
    return loss.item()
