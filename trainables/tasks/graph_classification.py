"""Graph classification (PROTEINS, BBBP, ...): mini-batches of whole graphs, one label each.

Splits (``dataset.split``): ``stratified`` (seeded, class shares kept), ``kfold`` (stratified
k-fold cross-validation, a :class:`~trainables.tasks.common.CrossValidation` of one task per
fold)
and ``scaffold`` (RDKit Murcko scaffolds; molecules only). Scores: accuracy, and ROC-AUC for
two classes; ``dataset.metric`` says which one the search optimizes. The graphs may come
from any source (:mod:`trainables.sources`); ``normalize_features: true`` scales each
node's features to sum to one, graph by graph (PyG's ``NormalizeFeatures``).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor, nn
from torch_geometric.data import Batch, Data

from trainables import sources, splits
from trainables.scores import accuracy, roc_auc
from trainables.tasks.common import CrossValidation
from trainables.tasks.spec import Dataset, TaskMetrics, TaskSpec
from trainables.training import StepHooks, optimizer_step

CALIBRATION_GRAPHS = 512  # training graphs PTQ calibrates activation ranges on


@dataclass
class GraphClassification:
    """Train, val and test graphs of one split."""

    train: list[Data]
    val: Batch
    test: Batch
    num_features: int
    num_classes: int
    batch_size: int = 128
    search_metric: str = "val_acc"
    transductive: bool = False  # new graphs at inference: no per-node learned state
    _calibration: Batch | None = field(default=None, repr=False)

    def train_epoch(self, model: nn.Module, optimizer: torch.optim.Optimizer,
                    hooks: StepHooks | None = None, grad_clip: float = 0.0) -> float:
        """One pass over the shuffled training graphs; the mean loss per graph."""
        from torch_geometric.loader import DataLoader

        model.train()
        total, seen = 0.0, 0
        for batch in DataLoader(self.train, batch_size=self.batch_size, shuffle=True):
            optimizer.zero_grad()
            out = model(batch.x, batch.edge_index, batch.batch)
            loss = F.cross_entropy(out, batch.y)
            step_loss = optimizer_step(model, optimizer, loss, hooks, grad_clip)
            total += step_loss * batch.num_graphs
            seen += batch.num_graphs
        return total / seen

    def _scores(self, model: nn.Module, batch: Batch, split: str) -> dict[str, float]:
        logits = model(batch.x, batch.edge_index, batch.batch)
        scores = {f"{split}_acc": accuracy(logits.argmax(dim=-1), batch.y)}
        if self.num_classes == 2:
            scores[f"{split}_roc_auc"] = roc_auc(logits.softmax(dim=-1)[:, 1], batch.y)
        return scores

    @torch.no_grad()
    def evaluate(self, model: nn.Module) -> dict[str, float]:
        model.eval()
        return {**self._scores(model, self.val, "val"), **self._scores(model, self.test, "test")}

    def inference_inputs(self) -> tuple[Tensor, ...]:
        """The tensors one inference reads (new graphs each time: nothing is stored)."""
        return (self.test.x, self.test.edge_index, self.test.batch)

    def inference(self, model: nn.Module) -> Callable[[], Tensor]:
        """One forward over the test graphs as one batch (what latency measures)."""
        model.eval()
        batch = self.test

        def run() -> Tensor:
            with torch.inference_mode():
                return model(batch.x, batch.edge_index, batch.batch)

        return run

    @property
    def latency_mode(self) -> str:
        return f"batch_of_{self.test.num_graphs}_graphs"

    def example_inputs(self) -> tuple[Tensor, ...]:
        batch = self._calibration_batch()
        return (batch.x, batch.edge_index, batch.batch)

    def _calibration_batch(self) -> Batch:
        if self._calibration is None:
            self._calibration = Batch.from_data_list(self.train[:CALIBRATION_GRAPHS])
        return self._calibration

    def calibration(self, model: nn.Module) -> tuple[Callable[[], Any], Tensor | None]:
        """A forward over training graphs, for activation ranges; every node row counts."""
        batch = self._calibration_batch()
        return (lambda: model(batch.x, batch.edge_index, batch.batch)), None

    @property
    def num_nodes(self) -> int:
        raise ValueError("graph classification is inductive: there is no fixed node set")


def one_hot_atoms(data: Data) -> Data:
    """MoleculeNet's nine integer atom features -> concatenated one-hot vectors (float)."""
    from torch_geometric.utils.smiles import x_map

    sizes = [len(values) for values in x_map.values()]
    parts = [F.one_hot(data.x[:, i].long(), n) for i, n in enumerate(sizes)]
    data.x = torch.cat(parts, dim=-1).float()
    return data


def _graphs(given: list[Data], dataset: dict[str, Any]) -> list[Data]:
    """Checked graphs as the models read them: float features (row-normalized if
    ``normalize_features``), one long label each."""
    graphs = []
    loader, where = dataset.get("loader"), sources.describe(dataset)
    for i, data in enumerate(given):
        data = one_hot_atoms(data) if loader == "moleculenet" else data
        graph = Data(x=data.x.float(), edge_index=data.edge_index.long(),
                     y=data.y.view(-1).long())
        if dataset.get("normalize_features"):
            graph = sources.normalize_features(graph, f"dataset {where}: graph {i}")
        graphs.append(graph)
    return graphs


def split_indices(
    dataset: dict[str, Any], labels: Tensor, smiles: list[str] | None, seed: int
) -> list[tuple[Tensor, Tensor, Tensor]]:
    """The (train, val, test) index splits ``dataset`` asks for: one, or one per fold."""
    split = dataset.get("split") or "stratified"
    val_ratio, test_ratio = dataset.get("val_ratio") or 0.1, dataset.get("test_ratio") or 0.1
    if split == "stratified":
        return [splits.stratified_split(labels, val_ratio, test_ratio, seed)]
    if split == "kfold":
        return splits.stratified_kfold(labels, dataset.get("folds") or 10, val_ratio, seed)
    if split == "scaffold":
        return [splits.scaffold_split(smiles, val_ratio, test_ratio)]
    raise ValueError(f"unknown graph split {split!r}; allowed: stratified, kfold, scaffold")


def build_graph_classification(dataset: dict[str, Any], data_root, seed: int):
    """Load a collection of graphs (TU, MoleculeNet, a pyg class or a dataset function) and
    split it; k-fold gives a CrossValidation."""
    SPEC.check_dataset(dataset)
    options = {"node_attributes": True} if dataset.get("node_attributes") else {}
    given = sources.graph_list(sources.load_source(dataset, data_root, **options), dataset,
                               SPEC.name)
    graphs = _graphs(given, dataset)
    labels = torch.cat([g.y for g in graphs])
    smiles = [d.smiles for d in given] if dataset.get("loader") == "moleculenet" else None
    metric = dataset.get("metric") or "acc"
    num_classes = int(labels.max()) + 1
    if metric == "roc_auc" and num_classes != 2:
        raise ValueError(f"metric 'roc_auc' needs two classes; {sources.describe(dataset)} "
                         f"has {num_classes}; allowed: acc")
    tasks = [
        GraphClassification(
            train=[graphs[i] for i in train],
            val=Batch.from_data_list([graphs[i] for i in val]),
            test=Batch.from_data_list([graphs[i] for i in test]),
            num_features=graphs[0].x.size(1),
            num_classes=num_classes,
            batch_size=dataset.get("batch_size") or 128,
            search_metric=f"val_{metric}",
        )
        for train, val, test in split_indices(dataset, labels, smiles, seed)
    ]
    return CrossValidation(tasks) if dataset.get("split") == "kfold" else tasks[0]


def _metrics(dataset: Dataset) -> TaskMetrics:
    metric = dataset.get("metric") or "acc"
    reported = ("test_acc", *(("test_roc_auc",) if metric == "roc_auc" else ()))
    if dataset.get("split") == "kfold":
        reported += tuple(f"{m}_std" for m in reported)
    return TaskMetrics(f"val_{metric}", tuple(dict.fromkeys((f"val_{metric}", "val_acc"))),
                       reported)


def _check(dataset: Dataset) -> None:
    source = dataset.get("loader", "function")
    if dataset.get("split") == "scaffold" and source != "moleculenet":
        raise ValueError(f"dataset.split 'scaffold' needs molecules; loader {source!r} has "
                         "none; allowed loader: moleculenet")
    split = dataset.get("split") or "stratified"
    if "folds" in dataset and split != "kfold":
        raise ValueError(f"dataset.folds applies only to split: kfold (this split: {split}); "
                         "remove it or use split: kfold")
    if "test_ratio" in dataset and split == "kfold":
        raise ValueError("dataset.test_ratio does not apply to split: kfold (each fold's test "
                         "set is 1/folds of the graphs); remove it")
    if dataset.get("node_attributes") and source != "tu":
        raise ValueError(f"node_attributes: loader {source!r} has no continuous node "
                         "attributes; allowed with: tu (a pyg class: kwargs, e.g. "
                         "{use_node_attr: true})")


SPEC = TaskSpec(
    name="graph_classification",
    build=build_graph_classification,
    loaders=("tu", "moleculenet", sources.PYG),
    splits=("stratified", "kfold", "scaffold"),
    options=("val_ratio", "test_ratio", "folds", "metric", "batch_size", "node_attributes",
             "normalize_features"),
    models=("gin", "graph_gcn", "hgpsl"),
    transductive=False,
    metrics=_metrics,
    check=_check,
)
