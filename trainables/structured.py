"""Physically remove pruned hidden channels with torch-pruning's ``DependencyGraph``.

Structured pruning first zeroes whole channels with masks (so fine-tuning sees the pruned
network), then this module deletes them, leaving a smaller dense model. torch-pruning does
not know our ``SplineConv`` nor PyG's ``GCNConv`` (its ``Linear`` is PyG's own class), so
both get a pruner that slices their parameters; the dependency graph finds the coupled
consumer layer.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
import torch_pruning as tp
from torch import nn
from torch_geometric.nn import GCNConv

from trainables.models import channel_groups
from trainables.spline_conv import SplineConv


def _slice(param: nn.Parameter, keep: list[int], axis: int) -> nn.Parameter:
    return nn.Parameter(param.data.index_select(axis, torch.tensor(keep)).clone(),
                        requires_grad=param.requires_grad)


def _keep(total: int, idxs: Sequence[int]) -> list[int]:
    return sorted(set(range(total)) - set(idxs))


class SplineConvPruner(tp.pruner.function.BasePruningFunc):
    """weight [K, in, out], lin.weight [out, in], bias [out]."""

    def prune_out_channels(self, layer: SplineConv, idxs: Sequence[int]) -> nn.Module:
        keep = _keep(layer.out_channels, idxs)
        layer.weight = _slice(layer.weight, keep, 2)
        if layer.lin is not None:
            layer.lin.weight = _slice(layer.lin.weight, keep, 0)
            layer.lin.out_features = len(keep)
        if layer.bias is not None:
            layer.bias = _slice(layer.bias, keep, 0)
        layer.out_channels = len(keep)
        return layer

    def prune_in_channels(self, layer: SplineConv, idxs: Sequence[int]) -> nn.Module:
        keep = _keep(layer.in_channels, idxs)
        layer.weight = _slice(layer.weight, keep, 1)
        if layer.lin is not None:
            layer.lin.weight = _slice(layer.lin.weight, keep, 1)
            layer.lin.in_features = len(keep)
        layer.in_channels = len(keep)
        return layer

    def get_out_channels(self, layer: SplineConv) -> int:
        return layer.out_channels

    def get_in_channels(self, layer: SplineConv) -> int:
        return layer.in_channels


class GCNConvPruner(tp.pruner.function.BasePruningFunc):
    """lin.weight [out, in] (PyG Linear), bias [out]."""

    def prune_out_channels(self, layer: GCNConv, idxs: Sequence[int]) -> nn.Module:
        keep = _keep(layer.out_channels, idxs)
        layer.lin.weight = _slice(layer.lin.weight, keep, 0)
        layer.lin.out_channels = len(keep)
        if layer.bias is not None:
            layer.bias = _slice(layer.bias, keep, 0)
        layer.out_channels = len(keep)
        return layer

    def prune_in_channels(self, layer: GCNConv, idxs: Sequence[int]) -> nn.Module:
        keep = _keep(layer.in_channels, idxs)
        layer.lin.weight = _slice(layer.lin.weight, keep, 1)
        layer.lin.in_channels = len(keep)
        layer.in_channels = len(keep)
        return layer

    def get_out_channels(self, layer: GCNConv) -> int:
        return layer.out_channels

    def get_in_channels(self, layer: GCNConv) -> int:
        return layer.in_channels


CUSTOM_PRUNERS: dict[type, tp.pruner.function.BasePruningFunc] = {
    SplineConv: SplineConvPruner(),
    GCNConv: GCNConvPruner(),
}


def remove_zero_channels(model: nn.Module, example_inputs: tuple) -> dict[str, int]:
    """Delete every hidden channel whose weights and bias are all zero; returns the new
    constructor arguments (e.g. ``{"hidden": 9}``) that rebuild the smaller model."""
    with torch.enable_grad():  # torch-pruning traces with autograd
        return _remove_zero_channels(model, example_inputs)


def _remove_zero_channels(model: nn.Module, example_inputs: tuple) -> dict[str, int]:
    # Activation quantizers hold per-node state (A2Q): never channels, never pruned.
    quantizers = getattr(model, "act_quant", None)
    graph = tp.DependencyGraph().build_dependency(
        model, example_inputs=example_inputs, customized_pruners=CUSTOM_PRUNERS, verbose=False,
        ignored_params=list(quantizers.parameters()) if quantizers is not None else None,
    )
    params = dict(model.named_parameters())
    sizes = {}
    for group in channel_groups(model):
        alive = None
        for name, axis in group.members:
            w = params[name]
            nonzero = (w != 0).movedim(axis, 0).reshape(w.shape[axis], -1).any(dim=1)
            alive = nonzero if alive is None else alive | nonzero
        dead = (~alive).nonzero().flatten().tolist()
        if len(dead) == alive.numel():
            dead = dead[1:]  # keep one channel: a layer of width 0 cannot run
        producer = model.get_submodule(group.producer)
        if dead:
            pruner = CUSTOM_PRUNERS[type(producer)]
            graph.get_pruning_group(producer, pruner.prune_out_channels, dead).prune()
        sizes[group.kwarg] = alive.numel() - len(dead)
    return sizes
