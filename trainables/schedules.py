"""Learning-rate schedules for fine-tuning, keyed by the names used in space files."""

from __future__ import annotations

from collections.abc import Callable

import torch

Schedule = Callable[[torch.optim.Optimizer, int], torch.optim.lr_scheduler.LRScheduler | None]

SCHEDULES: dict[str, Schedule] = {
    "constant": lambda optimizer, epochs: None,
    "cosine": lambda optimizer, epochs: torch.optim.lr_scheduler.CosineAnnealingLR(
        optimizer, T_max=max(epochs, 1)
    ),
    "step": lambda optimizer, epochs: torch.optim.lr_scheduler.StepLR(
        optimizer, step_size=max(epochs // 3, 1), gamma=0.1
    ),
}
