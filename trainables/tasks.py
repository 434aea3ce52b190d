"""Tasks: what is learned and how it is scored. Each holds its data, ready for training.

A task is built once in the driver (``build_task``) and shipped to every trial. Every task
offers the same few members, which is all the cycle and the baseline use:
``train_epoch(model, optimizer, extra_loss, grad_clip)``, ``evaluate(model)`` (val and test
scores), ``inference(model)`` (a call that latency measures), ``example_inputs()``,
``calibration(model)``, ``search_metric``, ``num_features``, ``num_classes``,
``transductive``, ``num_nodes`` and ``latency_mode``. A k-fold task is a
:class:`CrossValidation` holding one such task per fold.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from trainables import data as data_mod
from trainables.graph_classification import build_graph_classification
from trainables.link_prediction import build_link_prediction
from trainables.metrics import combine_over_folds, is_score
from trainables.training import ExtraLoss, optimizer_step


@dataclass
class NodeClassification:
    """Full-graph node classification (Cora and other Planetoid graphs)."""

    x: Tensor
    edge_index: Tensor
    edge_attr: Tensor
    y: Tensor
    train_mask: Tensor
    val_mask: Tensor
    test_mask: Tensor
    num_features: int
    num_classes: int
    search_metric: str = "val_acc"
    transductive: bool = True  # the same graph at training and inference
    latency_mode: str = "full_graph"

    def loss(self, model: nn.Module) -> Tensor:
        """Training loss of one full-batch forward (the model is in training mode)."""
        out = model(self.x, self.edge_index, self.edge_attr)
        return F.cross_entropy(out[self.train_mask], self.y[self.train_mask])

    def example_inputs(self) -> tuple[Tensor, ...]:
        """Inputs of one forward, for tracing (structured pruning) and calibration."""
        return (self.x, self.edge_index, self.edge_attr)

    @property
    def num_nodes(self) -> int:
        return self.x.size(0)

    def train_epoch(self, model: nn.Module, optimizer: torch.optim.Optimizer,
                    extra_loss: ExtraLoss = None, grad_clip: float = 0.0) -> float:
        """One full-batch gradient step; returns the loss."""
        model.train()
        optimizer.zero_grad()
        return optimizer_step(model, optimizer, self.loss(model), extra_loss, grad_clip)

    def calibration(self, model: nn.Module) -> tuple[Callable[[], Any], Tensor | None]:
        """A forward for activation ranges, and the rows they are observed on (training)."""
        return self.inference(model), self.train_mask

    @torch.no_grad()
    def evaluate(self, model: nn.Module) -> dict[str, float]:
        """Validation and test accuracy."""
        model.eval()
        pred = model(self.x, self.edge_index, self.edge_attr).argmax(dim=-1)
        return {
            "val_acc": float((pred[self.val_mask] == self.y[self.val_mask]).float().mean()),
            "test_acc": float((pred[self.test_mask] == self.y[self.test_mask]).float().mean()),
        }

    def inference(self, model: nn.Module) -> Callable[[], Tensor]:
        """A call that runs one full-graph inference (what latency measures)."""
        model.eval()

        def run() -> Tensor:
            with torch.inference_mode():
                return model(self.x, self.edge_index, self.edge_attr)

        return run


def build_node_classification(
    dataset: dict[str, Any], data_root: str | os.PathLike | None, seed: int
) -> NodeClassification:
    """Load a Planetoid graph and split it as ``dataset`` says (``public`` or ``random``)."""
    if dataset["loader"] not in TASK_LOADERS["node_classification"]:
        raise ValueError(f"node_classification needs a planetoid graph, got loader "
                         f"{dataset['loader']!r}")
    ds = data_mod.load_dataset(dataset["loader"], dataset["name"], data_root)
    graph = ds[0]
    split = dataset.get("split", "public")
    if split == "public":
        train, val, test = graph.train_mask, graph.val_mask, graph.test_mask
    elif split == "random":
        train, val, test = data_mod.random_node_split(
            graph.num_nodes, dataset["num_val"], dataset["num_test"], seed
        )
    else:
        raise ValueError(f"unknown node split {split!r}; allowed: public, random")
    return NodeClassification(
        x=graph.x,
        edge_index=graph.edge_index,
        edge_attr=data_mod.target_indegree(graph),
        y=graph.y,
        train_mask=train,
        val_mask=val,
        test_mask=test,
        num_features=ds.num_features,
        num_classes=ds.num_classes,
    )


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
    extra_loss: ExtraLoss = None,
    grad_clip: float = 0.0,
) -> float:
    """One training epoch of ``task`` (one step for full-graph tasks); returns the loss."""
    return task.train_epoch(model, optimizer, extra_loss, grad_clip)


TASKS: dict[str, Callable[..., Any]] = {
    "node_classification": build_node_classification,
    "link_prediction": build_link_prediction,
    "graph_classification": build_graph_classification,
}
# Which dataset loaders give what each task needs (one graph with node labels, ...).
TASK_LOADERS: dict[str, tuple[str, ...]] = {
    "node_classification": ("planetoid",),
    "link_prediction": ("planetoid",),
    "graph_classification": ("tu", "moleculenet"),
}
# Tasks that train and infer on one fixed graph (per-node learned state, such as A2Q's, is
# possible only there).
TRANSDUCTIVE_TASKS = ("node_classification", "link_prediction")
# Splits each task knows; the first is the default.
TASK_SPLITS: dict[str, tuple[str, ...]] = {
    "node_classification": ("public", "random"),
    "link_prediction": ("random",),
    "graph_classification": ("stratified", "kfold", "scaffold"),
}


def task_metrics(task: str, dataset: dict[str, Any]) -> tuple[str, list[str]]:
    """The searched validation metric and the reported test metrics of a task, known from the
    space file alone (before any data loads)."""
    if task == "link_prediction":
        return "val_roc_auc", ["test_roc_auc", "test_ap"]
    if task == "graph_classification":
        metric = dataset.get("metric") or "acc"
        reported = ["test_acc"] + (["test_roc_auc"] if metric == "roc_auc" else [])
        if dataset.get("split") == "kfold":
            reported += [f"{m}_std" for m in reported]
        return f"val_{metric}", reported
    return "val_acc", ["test_acc"]


def build_task(task: str, dataset: dict[str, Any], data_root=None, seed: int = 0):
    """Load data for registered ``task`` (one of :data:`TASKS`)."""
    if task not in TASKS:
        raise ValueError(f"unknown task {task!r}; allowed: {', '.join(TASKS)}")
    return TASKS[task](dataset, data_root, seed)
