"""Tasks: what is learned and how it is scored. One module per task, each declaring a
:class:`~trainables.tasks.spec.TaskSpec`; :data:`TASKS` is the registry.

A task is built once in the driver (``build_task``) and shipped to every trial. Every task
object offers the same few members, which is all the cycle and the baseline use:
``train_epoch(model, optimizer, hooks, grad_clip)``, ``evaluate(model)`` (val and test
scores), ``inference(model)`` (a call that latency measures), ``example_inputs()``,
``calibration(model)``, ``search_metric``, ``num_features``, ``num_classes``,
``transductive``, ``num_nodes`` and ``latency_mode``. A k-fold task is a
:class:`~trainables.tasks.common.CrossValidation` holding one such task per fold.
"""

from __future__ import annotations

import os
from typing import Any

from trainables.tasks import graph_classification, link_prediction, node_classification
from trainables.tasks.common import CrossValidation, summarize_folds, train_step
from trainables.tasks.spec import Dataset, TaskMetrics, TaskSpec

TASKS: dict[str, TaskSpec] = {
    spec.name: spec
    for spec in (node_classification.SPEC, link_prediction.SPEC, graph_classification.SPEC)
}

__all__ = ["TASKS", "CrossValidation", "TaskMetrics", "TaskSpec", "build_task", "get_task",
           "summarize_folds", "train_step"]


def get_task(name: str) -> TaskSpec:
    """The spec of registered task ``name``; an unknown name is an error listing the known."""
    if name not in TASKS:
        raise ValueError(f"unknown task {name!r}; allowed: {', '.join(TASKS)}")
    return TASKS[name]


def build_task(task: str, dataset: Dataset, data_root: str | os.PathLike | None = None,
               seed: int = 0) -> Any:
    """Load data for registered ``task`` (one of :data:`TASKS`)."""
    return get_task(task).build(dataset, data_root, seed)
