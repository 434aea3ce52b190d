"""What a task declares about itself, in one place: :class:`TaskSpec`.

The space loader asks the spec (which loaders, splits and models fit, which scores a search
may optimize, whether the graph is fixed); the search builds the task's data through it.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from trainables.sources import SOURCE_KEYS, check_source

Dataset = dict[str, Any]  # a space file's ``dataset:`` settings (unset ones left out)


@dataclass(frozen=True)
class TaskMetrics:
    """The score a search optimizes by default, the validation scores it may optimize, and
    the test figures reported beside them (never searched on)."""

    searched: str
    scores: tuple[str, ...]
    reported: tuple[str, ...]


def no_rules(dataset: Dataset) -> None:
    """A task whose dataset settings have no rules between them."""


@dataclass(frozen=True)
class TaskSpec:
    """A task: what is learned, from which data, scored how, by which models.

    ``build(dataset, data_root, seed)`` loads and splits the data (a task object, or a
    :class:`~trainables.tasks.common.CrossValidation` of one per fold). ``splits``: the first
    is the default. ``options``: the dataset settings its build reads besides ``loader``,
    ``name`` and ``split`` and the source keys ``function``, ``kwargs`` and ``class`` (any
    other is refused: it would be ignored, yet enter the baseline's cache key). A dataset
    from a ``function`` fits every task; ``loaders`` are the loaders that do.
    ``transductive``: training and inference see one fixed graph (per-node learned state,
    such as A2Q's, is possible only there). ``metrics(dataset)``: known from
    the space file alone, before any data loads. ``check(dataset)``: rules between dataset
    settings (a ValueError naming what is allowed).
    """

    name: str
    build: Callable[[Dataset, str | os.PathLike | None, int], Any]
    loaders: tuple[str, ...]
    splits: tuple[str, ...]
    options: tuple[str, ...]
    models: tuple[str, ...]
    transductive: bool
    metrics: Callable[[Dataset], TaskMetrics]
    check: Callable[[Dataset], None] = no_rules

    def check_dataset(self, dataset: Dataset) -> None:
        """Settings, loader, split and the task's own rules: a one-line ValueError naming
        what fits."""
        allowed = ("loader", "name", "split", *self.options, *SOURCE_KEYS)
        for key in dataset:
            if key not in allowed:
                raise ValueError(f"dataset.{key} does not apply to task {self.name!r}; "
                                 f"allowed: {', '.join(allowed)}")
        check_source(dataset)
        if "loader" in dataset and dataset["loader"] not in self.loaders:
            raise ValueError(f"dataset.loader {dataset['loader']!r} does not fit task "
                             f"{self.name!r}; allowed: {', '.join(self.loaders)}")
        split = dataset.get("split")
        if split is not None and split not in self.splits:
            raise ValueError(f"dataset.split {split!r} does not fit task {self.name!r}; "
                             f"allowed: {', '.join(self.splits)}")
        self.check(dataset)

    def check_model(self, model: str) -> None:
        if model not in self.models:
            raise ValueError(f"model {model!r} does not fit task {self.name!r}; "
                             f"allowed: {', '.join(self.models)}")
