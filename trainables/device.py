"""Where a trial computes: a device string (``cpu``, ``cuda``, ``cuda:N``) checked once, and
one helper that moves a task's data there. Imports neither Ray nor MLflow.

The search passes ``cuda`` to trials that Ray gave a GPU (``--gpus-per-trial``); Ray sets
``CUDA_VISIBLE_DEVICES`` for the trial, so ``cuda`` is the GPU it reserved.
"""

from __future__ import annotations

import copy
import dataclasses
from typing import Any

import torch
from torch import Tensor

DEVICES = "cpu, cuda or cuda:N"


def resolve_device(device: str | torch.device) -> torch.device:
    """``device`` as a torch device that exists here; a one-line ValueError otherwise."""
    try:
        resolved = torch.device(device)
    except (RuntimeError, TypeError):
        raise ValueError(f"device {device!r} is not a device; allowed: {DEVICES}") from None
    if resolved.type not in ("cpu", "cuda"):
        raise ValueError(f"device {device!r} is not supported; allowed: {DEVICES}")
    if resolved.type == "cuda":
        if not torch.cuda.is_available():
            raise ValueError(f"device {device!r} is not available here (torch finds no CUDA "
                             "GPU); use device cpu, or run where a GPU is (--gpus-per-trial "
                             "reserves one on the cluster)")
        if resolved.index is not None and resolved.index >= torch.cuda.device_count():
            raise ValueError(f"device {device!r} is not available here: "
                             f"{torch.cuda.device_count()} CUDA GPU(s); allowed: cuda:0.."
                             f"cuda:{torch.cuda.device_count() - 1}")
    return resolved


def _moved(value: Any, device: torch.device) -> Any:
    """Tensors, PyG ``Data``/``Batch`` (anything with ``.to``), and lists/tuples of them."""
    if isinstance(value, Tensor):
        return value.to(device)
    if isinstance(value, (list, tuple)):
        return type(value)(_moved(v, device) for v in value)
    if hasattr(value, "to") and hasattr(value, "num_nodes"):  # torch_geometric Data/Batch
        return copy.copy(value).to(device)  # Data.to moves in place: a copy of its stores
    return value


def task_to(task: Any, device: str | torch.device) -> Any:
    """A copy of ``task`` (a task dataclass, or a cross-validation of them) whose data lives
    on ``device``; the task itself is untouched (the driver's copy stays on the CPU). On the
    CPU the task is returned as it is."""
    device = torch.device(device)
    if hasattr(task, "folds"):  # CrossValidation
        return dataclasses.replace(task, folds=[task_to(fold, device) for fold in task.folds])
    if device.type == "cpu":
        return task
    if not dataclasses.is_dataclass(task):
        raise TypeError(f"cannot move a {type(task).__name__} to {device}: tasks are "
                        "dataclasses of tensors")
    moved = copy.copy(task)  # not through __init__: what it derived is moved, not redone
    for name, value in vars(task).items():  # fields, and what was derived or cached
        setattr(moved, name, _moved(value, device))
    return moved
