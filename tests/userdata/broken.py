"""Dataset functions that are wrong on purpose: each must be refused in one line."""

from __future__ import annotations

import torch
from torch_geometric.data import Data

from tests.userdata.graphs import rings_and_stars

NOT_A_FUNCTION = 3


def raises() -> Data:
    raise RuntimeError("nodes.csv: column 'label' is missing\n  (a second line never shown)")


def wrong_type() -> dict:
    return {"x": [[1.0]], "edge_index": [[0], [0]]}


def no_labels() -> Data:
    return Data(x=torch.rand(10, 3), edge_index=torch.tensor([[0, 1], [1, 0]]))


def mixed_features() -> list[Data]:
    graphs = rings_and_stars(10, features=3)
    graphs[7] = rings_and_stars(1, features=5)[0]
    return graphs


def fractional_labels() -> Data:
    return Data(x=torch.rand(10, 3), edge_index=torch.tensor([[0, 1], [1, 0]]),
                y=torch.full((10,), 0.5))


def no_features() -> Data:
    return Data(edge_index=torch.tensor([[0, 1], [1, 0]]), num_nodes=2)


def unlabelled_graphs() -> list[Data]:
    graphs = rings_and_stars(6)
    del graphs[4].y
    return graphs


def negative_features() -> Data:
    return Data(x=torch.tensor([[1.0, -1.0], [2.0, 0.0]]),
                edge_index=torch.tensor([[0, 1], [1, 0]]))
