"""A graph from two CSV files: what a user with their own data typically has.

``nodes.csv``: ``id,label,features`` where ``features`` is a space-separated list of the
indices of the node's nonzero binary features (a bag of words); ``edges.csv``: ``src,dst``
(node ids, one undirected edge per row). gnn-search calls :func:`load_csv_graph` with the
space file's ``dataset.kwargs`` and the data root as ``root``.
"""

from __future__ import annotations

import csv
from pathlib import Path

import torch
from torch_geometric.data import Data
from torch_geometric.utils import to_undirected


def load_csv_graph(root: Path, folder: str, num_features: int | None = None) -> Data:
    """Read ``<root>/<folder>/nodes.csv`` and ``edges.csv`` into a PyG ``Data`` with
    multi-hot features ``x``, labels ``y`` and an undirected ``edge_index``."""
    base = Path(root) / folder
    with open(base / "nodes.csv", newline="") as f:
        rows = list(csv.DictReader(f))
    index = {row["id"]: i for i, row in enumerate(rows)}
    words = [[int(w) for w in row["features"].split()] for row in rows]
    width = num_features or 1 + max((max(w) for w in words if w), default=0)
    x = torch.zeros(len(rows), width)
    for i, w in enumerate(words):
        x[i, w] = 1.0
    y = torch.tensor([int(row["label"]) for row in rows])
    with open(base / "edges.csv", newline="") as f:
        pairs = [(index[row["src"]], index[row["dst"]]) for row in csv.DictReader(f)]
    edge_index = to_undirected(torch.tensor(pairs, dtype=torch.long).t(), num_nodes=len(rows))
    return Data(x=x, y=y, edge_index=edge_index)
