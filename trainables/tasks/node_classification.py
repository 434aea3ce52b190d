"""Node classification (Cora and other Planetoid graphs, or any one graph with a label per
node): full-graph training. ``normalize_features: true`` scales each node's features to sum
to one (PyG's ``NormalizeFeatures``, as Kipf & Welling's GCN does)."""

from __future__ import annotations

import os
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from trainables import data as data_mod
from trainables import sources
from trainables.tasks.spec import Dataset, TaskMetrics, TaskSpec
from trainables.training import StepHooks, optimizer_step


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
                    hooks: StepHooks | None = None, grad_clip: float = 0.0) -> float:
        """One full-batch gradient step; returns the loss."""
        model.train()
        optimizer.zero_grad()
        return optimizer_step(model, optimizer, self.loss(model), hooks, grad_clip)

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

    def inference_inputs(self) -> tuple[Tensor, ...]:
        """The tensors one inference reads (the fixed graph: a deployment stores them)."""
        return (self.x, self.edge_index, self.edge_attr)

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
    """Load one graph (a built-in or pyg dataset's, or a dataset function's) and split it as
    ``dataset`` says: ``public`` (the graph's own masks) or ``random``."""
    SPEC.check_dataset(dataset)
    graph = sources.one_graph(sources.load_source(dataset, data_root), dataset, SPEC.name,
                              labels=True)
    if dataset.get("normalize_features"):
        graph = sources.normalize_features(graph, f"the graph of {sources.describe(dataset)}")
    split = dataset.get("split", "public")
    if split == "public":
        train, val, test = sources.node_masks(graph, sources.describe(dataset))
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
        num_features=graph.x.size(1),
        num_classes=int(graph.y.max()) + 1,
    )


def _metrics(dataset: Dataset) -> TaskMetrics:
    return TaskMetrics("val_acc", ("val_acc",), ("test_acc",))


def _check(dataset: Dataset) -> None:
    random = dataset.get("split") == "random"
    if random and (dataset.get("num_val") is None or dataset.get("num_test") is None):
        raise ValueError("dataset: a random node split needs num_val and num_test")
    for key in ("num_val", "num_test"):
        if key in dataset and not random:
            raise ValueError(f"dataset.{key} applies only to split: random (this split: "
                             f"{dataset.get('split', 'public')}); remove it or use split: random")


SPEC = TaskSpec(
    name="node_classification",
    build=build_node_classification,
    loaders=("planetoid", sources.PYG),
    splits=("public", "random"),
    options=("num_val", "num_test", "normalize_features"),  # num_*: random split
    models=("spline", "gcn"),
    transductive=True,
    metrics=_metrics,
    check=_check,
)
