"""One optimizer step, shared by every task's training epoch."""

from __future__ import annotations

from collections.abc import Callable

import torch
from torch import Tensor, nn

ExtraLoss = Callable[[], Tensor | None] | None


def optimizer_step(
    model: nn.Module, optimizer: torch.optim.Optimizer, loss: Tensor,
    extra_loss: ExtraLoss = None, grad_clip: float = 0.0,
) -> float:
    """Backward ``loss`` (+ ``extra_loss()``, e.g. a penalty), clip, step; the total loss."""
    extra = extra_loss() if extra_loss is not None else None
    if extra is not None:
        loss = loss + extra
    loss.backward()
    if grad_clip > 0:
        torch.nn.utils.clip_grad_norm_(model.parameters(), grad_clip)
    optimizer.step()
    return loss.item()
