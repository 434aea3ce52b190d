"""One graph from two CSV files in the data root: ``nodes.csv`` (``id,label,f0,f1,...``)
and ``edges.csv`` (``src,dst``, undirected: each edge once)."""

from __future__ import annotations

import csv
from pathlib import Path

import torch
from torch_geometric.data import Data
from torch_geometric.utils import to_undirected


def load(root: Path, folder: str = "my_graph", labels: bool = True) -> Data:
    """The graph in ``<root>/<folder>``; ``labels: false`` leaves ``y`` out (link
    prediction needs none)."""
    with (root / folder / "nodes.csv").open() as f:
        rows = sorted(csv.DictReader(f), key=lambda r: int(r["id"]))
    features = [k for k in rows[0] if k not in ("id", "label")]
    x = torch.tensor([[float(r[k]) for k in features] for r in rows])
    with (root / folder / "edges.csv").open() as f:
        pairs = [(int(r["src"]), int(r["dst"])) for r in csv.DictReader(f)]
    edge_index = to_undirected(torch.tensor(pairs).t(), num_nodes=len(rows))
    graph = Data(x=x, edge_index=edge_index)
    if labels:
        graph.y = torch.tensor([int(r["label"]) for r in rows])
    return graph


def write(root: Path, folder: str = "my_graph", nodes: int = 60, features: int = 5,
          classes: int = 3, seed: int = 0) -> Path:
    """Write a random graph's two CSV files under ``root/folder``; labels follow the
    features (so a model can learn them), nodes of a class link more often."""
    gen = torch.Generator().manual_seed(seed)
    y = torch.randint(classes, (nodes,), generator=gen)
    x = torch.rand(nodes, features, generator=gen) + torch.nn.functional.one_hot(
        y % features, features)
    target = root / folder
    target.mkdir(parents=True, exist_ok=True)
    with (target / "nodes.csv").open("w", newline="") as f:
        out = csv.writer(f)
        out.writerow(["id", "label", *(f"f{i}" for i in range(features))])
        for i in torch.randperm(nodes, generator=gen).tolist():  # any row order
            out.writerow([i, int(y[i]), *(f"{v:.4f}" for v in x[i].tolist())])
    with (target / "edges.csv").open("w", newline="") as f:
        out = csv.writer(f)
        out.writerow(["src", "dst"])
        for src in range(nodes):
            for dst in range(src + 1, nodes):
                p = 0.3 if y[src] == y[dst] else 0.03
                if torch.rand(1, generator=gen).item() < p:
                    out.writerow([src, dst])
    return target


def load_public(root: Path, folder: str = "my_graph") -> Data:
    """The same graph carrying its own split (``split: public``): the first half of the
    nodes train, a quarter each val and test."""
    graph = load(root, folder)
    n = graph.num_nodes
    order = torch.arange(n)
    graph.train_mask, graph.val_mask, graph.test_mask = (
        order < n // 2, (order >= n // 2) & (order < 3 * n // 4), order >= 3 * n // 4)
    return graph
