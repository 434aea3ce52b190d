"""Model registry: the GNNs a space file can name, and which of their tensors get compressed."""

from __future__ import annotations

import inspect
from collections.abc import Callable
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import Tensor, nn
from torch_geometric.nn import GCNConv

from trainables.spline_conv import SplineConv


def input_dropout(x: Tensor, p: float, training: bool) -> Tensor:
    """``F.dropout`` drawing random numbers only for nonzero entries.

    Same distribution (zeros stay zero, survivors scale by 1 / (1 - p)); on sparse
    bag-of-words features such as Cora's (1.3% nonzero) it is ~10x cheaper, and on CPU
    ``F.dropout`` of the input was most of a SplineConv training epoch.
    """
    if not training or p == 0.0:
        return x
    flat = x.reshape(-1)
    nonzero = flat.nonzero().squeeze(1)
    kept = nonzero[torch.rand(nonzero.numel(), device=x.device) >= p]
    out = torch.zeros_like(flat)
    out[kept] = flat[kept] / (1.0 - p)
    return out.view_as(x)


class SplineNet(nn.Module):
    """The study's Cora model: two SplineConv layers (PyG's ``examples/cora.py``)."""

    def __init__(
        self,
        num_features: int,
        num_classes: int,
        hidden: int = 16,
        kernel_size: int = 2,
        dim: int = 1,
        degree: int = 1,
        dropout: float = 0.5,
    ) -> None:
        super().__init__()
        self.dropout = dropout
        self.conv1 = SplineConv(num_features, hidden, dim=dim, kernel_size=kernel_size,
                                degree=degree)
        self.conv2 = SplineConv(hidden, num_classes, dim=dim, kernel_size=kernel_size,
                                degree=degree)

    def forward(self, x: Tensor, edge_index: Tensor, edge_attr: Tensor) -> Tensor:
        x = input_dropout(x, self.dropout, self.training)
        x = F.elu(self.conv1(x, edge_index, edge_attr))
        x = F.dropout(x, p=self.dropout, training=self.training)
        return self.conv2(x, edge_index, edge_attr)


class GCN(nn.Module):
    """Kipf & Welling's two-layer GCN."""

    def __init__(
        self, num_features: int, num_classes: int, hidden: int = 16, dropout: float = 0.5
    ) -> None:
        super().__init__()
        self.dropout = dropout
        self.conv1 = GCNConv(num_features, hidden)
        self.conv2 = GCNConv(hidden, num_classes)

    def forward(self, x: Tensor, edge_index: Tensor, edge_attr: Tensor | None = None) -> Tensor:
        x = input_dropout(x, self.dropout, self.training)
        x = F.relu(self.conv1(x, edge_index))
        x = F.dropout(x, p=self.dropout, training=self.training)
        return self.conv2(x, edge_index)


@dataclass(frozen=True)
class ChannelGroup:
    """Hidden channels that structured pruning removes together.

    ``producer`` is the layer whose output channels they are; ``members`` lists every
    ``(parameter name, axis)`` indexed by those channels (the producer's weights and bias, the
    consumer's input weights); ``kwarg`` is the constructor argument holding their count.
    """

    producer: str
    members: tuple[tuple[str, int], ...]
    kwarg: str


def _spline_groups(model: nn.Module) -> list[ChannelGroup]:
    return [ChannelGroup("conv1", (("conv1.weight", 2), ("conv1.lin.weight", 0),
                                   ("conv1.bias", 0), ("conv2.weight", 1),
                                   ("conv2.lin.weight", 1)), "hidden")]


def _gcn_groups(model: nn.Module) -> list[ChannelGroup]:
    return [ChannelGroup("conv1", (("conv1.lin.weight", 0), ("conv1.bias", 0),
                                   ("conv2.lin.weight", 1)), "hidden")]


CHANNEL_GROUPS: dict[type, Callable[[nn.Module], list[ChannelGroup]]] = {
    SplineNet: _spline_groups,
    GCN: _gcn_groups,
}


def channel_groups(model: nn.Module) -> list[ChannelGroup]:
    """Structured-pruning groups of a registered model (hidden layers only, never the output)."""
    if type(model) not in CHANNEL_GROUPS:
        raise ValueError(f"structured pruning does not know model {type(model).__name__}")
    return CHANNEL_GROUPS[type(model)](model)


def message_passing_layers(model: nn.Module) -> dict[str, nn.Module]:
    """Graph convolution layers, whose node-feature inputs activation quantizers act on."""
    from torch_geometric.nn import MessagePassing

    return {name: m for name, m in model.named_modules()
            if isinstance(m, (SplineConv, MessagePassing))}


MODELS: dict[str, Callable[..., nn.Module]] = {
    "spline": SplineNet,
    "gcn": GCN,
}


def build_model(name: str, num_features: int, num_classes: int, **kwargs) -> nn.Module:
    """Instantiate registered model ``name``; unknown names and arguments are clear errors."""
    if name not in MODELS:
        raise ValueError(f"unknown model {name!r}; allowed: {', '.join(MODELS)}")
    allowed = [p for p in inspect.signature(MODELS[name]).parameters
               if p not in ("num_features", "num_classes")]
    unknown = sorted(set(kwargs) - set(allowed))
    if unknown:
        raise ValueError(f"unknown argument {unknown[0]!r} for model {name!r}; allowed: "
                         f"{', '.join(allowed)}")
    return MODELS[name](num_features, num_classes, **kwargs)


@dataclass(frozen=True)
class Target:
    """One compressible weight tensor: ``module.<attr>``, output channels along ``axis``."""

    module: nn.Module
    attr: str
    axis: int

    @property
    def tensor(self) -> Tensor:
        return getattr(self.module, self.attr)


def compression_targets(model: nn.Module) -> dict[str, Target]:
    """Weight matrices and kernels (``weight`` with >= 2 dims), keyed by state-dict name.

    Biases, norms and buffers stay FP32 and dense, as in the study.
    """
    targets = {}
    for prefix, module in model.named_modules():
        weight = module._parameters.get("weight")
        if weight is None or weight.dim() < 2:
            continue
        axis = weight.dim() - 1 if isinstance(module, SplineConv) else 0
        targets[f"{prefix}.weight" if prefix else "weight"] = Target(module, "weight", axis)
    return targets


@torch.no_grad()
def zero_fraction(tensors: list[Tensor]) -> float:
    """Fraction of exactly-zero entries over all ``tensors``."""
    total = sum(t.numel() for t in tensors)
    zeros = sum(int((t == 0).sum()) for t in tensors)
    return zeros / total if total else 0.0
