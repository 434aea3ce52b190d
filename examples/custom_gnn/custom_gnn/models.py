"""Two node classifiers built from plain PyG layers.

gnn-search builds a model as ``Class(num_features, num_classes, **kwargs)`` and calls it as
``model(x, edge_index)`` for node classification; the output is one row of class logits per
node.
"""

from __future__ import annotations

import torch.nn.functional as F
from torch import Tensor, nn
from torch_geometric.nn import GATConv, SAGEConv


class SAGE(nn.Module):
    """GraphSAGE (Hamilton et al., 2017) with mean aggregation: two SAGEConv layers."""

    def __init__(self, num_features: int, num_classes: int, hidden: int = 64,
                 dropout: float = 0.5) -> None:
        super().__init__()
        self.dropout = dropout
        self.conv1 = SAGEConv(num_features, hidden)
        self.conv2 = SAGEConv(hidden, num_classes)

    def forward(self, x: Tensor, edge_index: Tensor, edge_attr: Tensor | None = None) -> Tensor:
        x = F.dropout(x, p=self.dropout, training=self.training)
        x = F.relu(self.conv1(x, edge_index))
        x = F.dropout(x, p=self.dropout, training=self.training)
        return self.conv2(x, edge_index)


class GAT(nn.Module):
    """GAT (Velickovic et al., 2018): ``heads`` attention heads, concatenated, then one
    averaging head for the classes."""

    def __init__(self, num_features: int, num_classes: int, hidden: int = 8, heads: int = 8,
                 dropout: float = 0.6) -> None:
        super().__init__()
        self.dropout = dropout
        self.conv1 = GATConv(num_features, hidden, heads=heads, dropout=dropout)
        self.conv2 = GATConv(hidden * heads, num_classes, heads=1, dropout=dropout)

    def forward(self, x: Tensor, edge_index: Tensor, edge_attr: Tensor | None = None) -> Tensor:
        x = F.dropout(x, p=self.dropout, training=self.training)
        x = F.elu(self.conv1(x, edge_index))
        x = F.dropout(x, p=self.dropout, training=self.training)
        return self.conv2(x, edge_index)
