"""Tasks: what is learned and how it is scored. Each holds its data, ready for training.

A task is built once in the driver (``build_task``) and shipped to every trial.
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

    @property
    def calibration_rows(self) -> Tensor:
        """Rows PTQ calibrates activation ranges on: the training nodes."""
        return self.train_mask

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


def train_step(
    task,
    model: nn.Module,
    optimizer: torch.optim.Optimizer,
    extra_loss: Callable[[], Tensor | None] | None = None,
    grad_clip: float = 0.0,
) -> float:
    """One gradient step on ``task.loss`` (+ ``extra_loss()``); returns the total loss."""
    model.train()
    optimizer.zero_grad()
    loss = task.loss(model)
    extra = extra_loss() if extra_loss is not None else None
    if extra is not None:
        loss = loss + extra
    loss.backward()
    if grad_clip > 0:
        torch.nn.utils.clip_grad_norm_(model.parameters(), grad_clip)
    optimizer.step()
    return loss.item()


TASKS: dict[str, Callable[..., Any]] = {
    "node_classification": build_node_classification,
}
# Which dataset loaders give what each task needs (one graph with node labels, ...).
TASK_LOADERS: dict[str, tuple[str, ...]] = {
    "node_classification": ("planetoid",),
}


def build_task(task: str, dataset: dict[str, Any], data_root=None, seed: int = 0):
    """Load data for registered ``task`` (one of :data:`TASKS`)."""
    if task not in TASKS:
        raise ValueError(f"unknown task {task!r}; allowed: {', '.join(TASKS)}")
    return TASKS[task](dataset, data_root, seed)
