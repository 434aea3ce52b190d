"""Graph-classification datasets a user function returns: a list of ``Data`` graphs."""

from __future__ import annotations

import torch
from torch_geometric.data import Data


def _graph(label: int, features: int, gen: torch.Generator) -> Data:
    nodes = int(torch.randint(4, 12, (1,), generator=gen))
    # class 1: rings (two neighbours each), class 0: stars (one hub)
    if label:
        src = torch.arange(nodes)
        dst = (src + 1) % nodes
    else:
        src = torch.zeros(nodes - 1, dtype=torch.long)
        dst = torch.arange(1, nodes)
    edges = torch.stack([torch.cat([src, dst]), torch.cat([dst, src])])
    x = torch.rand(nodes, features, generator=gen)
    return Data(x=x, edge_index=edges, y=torch.tensor([label]))


def rings_and_stars(count: int = 40, features: int = 3, seed: int = 0) -> list[Data]:
    """``count`` graphs, half rings (label 1), half stars (label 0)."""
    gen = torch.Generator().manual_seed(seed)
    return [_graph(i % 2, features, gen) for i in range(count)]


def as_dataset(count: int = 40) -> object:
    """The same graphs as a PyG in-memory dataset (what ``TUDataset`` and friends are)."""
    from torch_geometric.data import InMemoryDataset

    class Graphs(InMemoryDataset):
        def __init__(self) -> None:
            super().__init__()
            self._data, self.slices = self.collate(rings_and_stars(count))

    return Graphs()
