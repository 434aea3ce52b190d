"""Link prediction (Cora): an encoder embeds nodes, an inner product scores node pairs.

Edges are split with PyG's ``RandomLinkSplit`` (undirected; val and test negatives fixed
once). Training follows NESS (Ucar, 2023): the training edges are partitioned once into
``subgraphs`` static, disjoint random subgraphs; every epoch takes one gradient step per
subgraph (its edges as positives, fresh random negatives), and a node's embedding at
evaluation is the mean of its embeddings in each subgraph. ``subgraphs: 1`` is the usual
full-graph GAE training. ``normalize_features: true`` scales each node's features to sum to
one (PyG's ``NormalizeFeatures``, as PyG's autoencoder example does). The graph may come
from any source (:mod:`trainables.sources`): only its features and edges are used.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from trainables import sources
from trainables.scores import average_precision, roc_auc
from trainables.tasks.spec import TaskMetrics, TaskSpec
from trainables.training import StepHooks, optimizer_step


@dataclass
class LinkPrediction:
    """Node features, the training subgraphs and the held-out positive/negative pairs."""

    x: Tensor
    train_edges: list[Tensor]  # per static subgraph: positive pairs, one direction
    val_pairs: Tensor  # [2, P + N]
    val_labels: Tensor
    test_pairs: Tensor
    test_labels: Tensor
    num_features: int
    num_classes: int | None = None  # embeddings, not classes
    search_metric: str = "val_roc_auc"
    transductive: bool = True
    latency_mode: str = "encode_graph+score_test_pairs"

    def __post_init__(self) -> None:
        from torch_geometric.utils import to_undirected

        self.message_edges = [to_undirected(e, num_nodes=self.x.size(0))
                              for e in self.train_edges]

    @property
    def num_nodes(self) -> int:
        return self.x.size(0)

    def embed(self, model: nn.Module) -> Tensor:
        """Node embeddings: the mean over the static subgraphs."""
        outs = [model(self.x, edges) for edges in self.message_edges]
        return outs[0] if len(outs) == 1 else torch.stack(outs).mean(dim=0)

    @staticmethod
    def score(z: Tensor, pairs: Tensor) -> Tensor:
        return (z[pairs[0]] * z[pairs[1]]).sum(dim=-1)

    def train_epoch(self, model: nn.Module, optimizer: torch.optim.Optimizer,
                    hooks: StepHooks | None = None, grad_clip: float = 0.0) -> float:
        """One step per subgraph: its edges against as many random non-edges."""
        from torch_geometric.utils import negative_sampling

        model.train()
        losses = []
        for positives, edges in zip(self.train_edges, self.message_edges, strict=True):
            optimizer.zero_grad()
            z = model(self.x, edges)
            negatives = negative_sampling(edges, num_nodes=self.num_nodes,
                                          num_neg_samples=positives.size(1))
            logits = torch.cat([self.score(z, positives), self.score(z, negatives)])
            labels = torch.cat([torch.ones(positives.size(1)), torch.zeros(negatives.size(1))])
            loss = F.binary_cross_entropy_with_logits(logits, labels)
            losses.append(optimizer_step(model, optimizer, loss, hooks, grad_clip))
        return sum(losses) / len(losses)

    @torch.no_grad()
    def evaluate(self, model: nn.Module) -> dict[str, float]:
        model.eval()
        z = self.embed(model)
        out = {}
        for split, pairs, labels in (("val", self.val_pairs, self.val_labels),
                                     ("test", self.test_pairs, self.test_labels)):
            scores = self.score(z, pairs)
            out[f"{split}_roc_auc"] = roc_auc(scores, labels)
            out[f"{split}_ap"] = average_precision(scores, labels)
        return out

    def inference_inputs(self) -> tuple[Tensor, ...]:
        """The tensors one inference reads (the fixed graph: a deployment stores them)."""
        return (self.x, *self.message_edges, self.test_pairs)

    def inference(self, model: nn.Module) -> Callable[[], Tensor]:
        """Embed the graph and score the test pairs (what latency measures)."""
        model.eval()

        def run() -> Tensor:
            with torch.inference_mode():
                return self.score(self.embed(model), self.test_pairs)

        return run

    def example_inputs(self) -> tuple[Tensor, ...]:
        return (self.x, self.message_edges[0])

    def calibration(self, model: nn.Module) -> tuple[Callable[[], Any], Tensor | None]:
        """Activation ranges from embedding the training graph (all nodes' features)."""
        return (lambda: self.embed(model)), None


def _pairs(data) -> tuple[Tensor, Tensor]:
    pos, neg = data.pos_edge_label_index, data.neg_edge_label_index
    labels = torch.cat([torch.ones(pos.size(1)), torch.zeros(neg.size(1))])
    return torch.cat([pos, neg], dim=1), labels


def build_link_prediction(dataset: dict[str, Any], data_root, seed: int) -> LinkPrediction:
    """Load one graph (a built-in or pyg dataset's, or a dataset function's), split its
    edges, partition the training edges."""
    from torch_geometric.data import Data
    from torch_geometric.transforms import RandomLinkSplit

    SPEC.check_dataset(dataset)
    loaded = sources.one_graph(sources.load_source(dataset, data_root), dataset, SPEC.name,
                               labels=False)
    # features and edges only: whatever else a graph carries is not split along
    graph = Data(x=loaded.x, edge_index=loaded.edge_index, num_nodes=loaded.num_nodes)
    if dataset.get("normalize_features"):
        graph = sources.normalize_features(graph, f"the graph of {sources.describe(dataset)}")
    splitter = RandomLinkSplit(
        num_val=dataset.get("val_ratio") or 0.05, num_test=dataset.get("test_ratio") or 0.1,
        is_undirected=True, add_negative_train_samples=False, split_labels=True,
    )
    with torch.random.fork_rng():
        torch.manual_seed(seed)
        train, val, test = splitter(graph)
        positives = train.pos_edge_label_index
        parts = dataset.get("subgraphs") or 1
        order = torch.randperm(positives.size(1))
    train_edges = [positives[:, chunk] for chunk in order.chunk(parts)]
    val_pairs, val_labels = _pairs(val)
    test_pairs, test_labels = _pairs(test)
    return LinkPrediction(
        x=graph.x, train_edges=train_edges, val_pairs=val_pairs, val_labels=val_labels,
        test_pairs=test_pairs, test_labels=test_labels, num_features=graph.num_features,
    )


def _metrics(dataset: dict[str, Any]) -> TaskMetrics:
    return TaskMetrics("val_roc_auc", ("val_roc_auc", "val_ap"), ("test_roc_auc", "test_ap"))


SPEC = TaskSpec(
    name="link_prediction",
    build=build_link_prediction,
    loaders=("planetoid", sources.PYG),
    splits=("random",),
    options=("val_ratio", "test_ratio", "subgraphs", "normalize_features"),
    models=("ness", "gae"),
    transductive=True,
    metrics=_metrics,
)
