"""Models as a user writes them: PyG layers the project does not register, built as
``Class(num_features, num_classes, **kwargs)``, and deliberately wrong ones."""

from __future__ import annotations

import torch.nn.functional as F
from torch import Tensor, nn
from torch_geometric.nn import GATConv, SAGEConv, global_mean_pool


class SAGE(nn.Module):
    """Node classification (or link prediction embeddings): two GraphSAGE layers."""

    def __init__(self, num_features: int, num_classes: int, hidden: int = 16,
                 dropout: float = 0.5) -> None:
        super().__init__()
        self.dropout = dropout
        self.conv1 = SAGEConv(num_features, hidden)
        self.conv2 = SAGEConv(hidden, num_classes)

    def forward(self, x: Tensor, edge_index: Tensor, edge_attr: Tensor | None = None) -> Tensor:
        x = F.relu(self.conv1(x, edge_index))
        x = F.dropout(x, p=self.dropout, training=self.training)
        return self.conv2(x, edge_index)


class GAT(nn.Module):
    """Node classification: a two-layer GAT (multi-head, then one head)."""

    def __init__(self, num_features: int, num_classes: int, hidden: int = 8,
                 heads: int = 2) -> None:
        super().__init__()
        self.conv1 = GATConv(num_features, hidden, heads=heads)
        self.conv2 = GATConv(hidden * heads, num_classes, heads=1)

    def forward(self, x: Tensor, edge_index: Tensor, edge_attr: Tensor | None = None) -> Tensor:
        return self.conv2(F.elu(self.conv1(x, edge_index)), edge_index)


class Encoder(nn.Module):
    """Link prediction: a SAGE encoder to ``out`` dimensions (``num_classes`` unused)."""

    def __init__(self, num_features: int, num_classes: int | None = None, hidden: int = 32,
                 out: int = 16) -> None:
        super().__init__()
        self.conv1 = SAGEConv(num_features, hidden)
        self.conv2 = SAGEConv(hidden, out)

    def forward(self, x: Tensor, edge_index: Tensor) -> Tensor:
        return self.conv2(F.relu(self.conv1(x, edge_index)), edge_index)


class GraphSAGE(nn.Module):
    """Graph classification: SAGE layers, mean readout, a linear classifier."""

    def __init__(self, num_features: int, num_classes: int, hidden: int = 32) -> None:
        super().__init__()
        self.conv1 = SAGEConv(num_features, hidden)
        self.conv2 = SAGEConv(hidden, hidden)
        self.lin = nn.Linear(hidden, num_classes)

    def forward(self, x: Tensor, edge_index: Tensor, batch: Tensor) -> Tensor:
        x = F.relu(self.conv1(x, edge_index))
        x = F.relu(self.conv2(x, edge_index))
        return self.lin(global_mean_pool(x, batch))


# ---- wrong on purpose ----------------------------------------------------------------------


class OneArgument(nn.Module):
    """A forward that takes only the features: no node task can call it."""

    def __init__(self, num_features: int, num_classes: int) -> None:
        super().__init__()
        self.lin = nn.Linear(num_features, num_classes)

    def forward(self, x: Tensor) -> Tensor:
        return self.lin(x)


class WrongShape(nn.Module):
    """Returns 3 columns whatever the number of classes."""

    def __init__(self, num_features: int, num_classes: int) -> None:
        super().__init__()
        self.conv = SAGEConv(num_features, 3)

    def forward(self, x: Tensor, edge_index: Tensor, edge_attr: Tensor | None = None) -> Tensor:
        return self.conv(x, edge_index)


class NotAModule:
    """A plain class: no parameters to compress."""

    def __init__(self, num_features: int, num_classes: int) -> None:
        self.num_features = num_features


class Raising(nn.Module):
    """A constructor that refuses a value its signature accepts."""

    def __init__(self, num_features: int, num_classes: int, hidden: int = 16) -> None:
        super().__init__()
        if hidden > 64:
            raise ValueError(f"hidden must be at most 64, got {hidden}")
        self.conv = SAGEConv(num_features, num_classes)

    def forward(self, x: Tensor, edge_index: Tensor, edge_attr: Tensor | None = None) -> Tensor:
        return self.conv(x, edge_index)


not_a_class = 42


class Heads(nn.Module):
    """A linear layer applied to a [N, heads, d] tensor (the runtime's linear kernels are
    for [N, d] inputs)."""

    def __init__(self, num_features: int, num_classes: int, heads: int = 2) -> None:
        super().__init__()
        self.heads = heads
        self.conv = SAGEConv(num_features, 8 * heads)
        self.lin = nn.Linear(8, num_classes)

    def forward(self, x: Tensor, edge_index: Tensor, edge_attr: Tensor | None = None) -> Tensor:
        h = F.relu(self.conv(x, edge_index)).view(x.size(0), self.heads, 8)
        return self.lin(h).mean(dim=1)
