"""Structured pruning's channel groups, found by torch-pruning's ``DependencyGraph``, and the
physical removal of pruned hidden channels.

The graph is traced on a tiny synthetic graph shaped like the task's inputs. Every layer that
produces hidden channels (``nn.Linear``, PyG's ``Linear``, ``GCNConv``, ``SAGEConv``, our
``SplineConv``; a ``GINConv`` is its MLP's ``nn.Linear`` and ``BatchNorm1d``) roots a group:
its output channels with every tensor they index downstream (a consumer's input weights,
a batch norm, a readout's concatenated slice, a pooling's attention vector). Groups that
reach the model's output (classes, embedding) are never pruned. The same groups give the
fine-tuning masks (:mod:`trainables.pruning`) and the removal, and a model file records
which channels each group lost so that :func:`replay_removal` rebuilds the smaller model
from the original class, whatever its constructor takes.

A layer with weights that no pruner here knows (e.g. ``GATConv``) makes structured pruning
refuse the model (:func:`structured_support`), naming the layer.
"""

from __future__ import annotations

import copy
import functools
import json
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import torch
import torch_pruning as tp
from torch import Tensor, nn
from torch_geometric.nn import GATConv, GCNConv, SAGEConv
from torch_geometric.nn.aggr import MultiAggregation
from torch_geometric.nn.dense.linear import Linear as PyGLinear

from trainables.spline_conv import SplineConv

# (attribute path, axis): the tensors a layer's output (or input) channels index
Slices = tuple[tuple[str, int], ...]

PROBE_NODES, PROBE_EDGES = 24, 96  # the synthetic graph the dependency graph is traced on


class SlicePruner(tp.pruner.function.BasePruningFunc):
    """A layer pruned by slicing the tensors listed in ``out_slices`` / ``in_slices`` and
    updating its size attributes; the same lists give structured pruning's masks."""

    out_attrs: tuple[str, ...] = ("out_channels",)
    in_attrs: tuple[str, ...] = ("in_channels",)

    def out_slices(self, layer: nn.Module) -> Slices:
        raise NotImplementedError

    def in_slices(self, layer: nn.Module) -> Slices:
        raise NotImplementedError

    def refuses(self, layer: nn.Module) -> str | None:
        """Why this layer's configuration cannot be pruned (None: it can)."""
        return None

    def _prune(self, layer: nn.Module, idxs: Sequence[int], slices: Slices, attrs: tuple[str, ...],
               total: int) -> nn.Module:
        keep = torch.tensor(sorted(set(range(total)) - set(idxs)), dtype=torch.long)
        for path, axis in slices:
            owner_path, _, name = path.rpartition(".")
            owner = layer.get_submodule(owner_path) if owner_path else layer
            tensor = getattr(owner, name)
            if tensor is None:
                continue
            sliced = tensor.data.index_select(axis, keep).clone()
            if isinstance(tensor, nn.Parameter):
                setattr(owner, name, nn.Parameter(sliced, requires_grad=tensor.requires_grad))
            else:
                owner._buffers[name] = sliced
        for attr in attrs:
            owner_path, _, name = attr.rpartition(".")
            owner = layer.get_submodule(owner_path) if owner_path else layer
            setattr(owner, name, len(keep))
        return layer

    def prune_out_channels(self, layer: nn.Module, idxs: Sequence[int]) -> nn.Module:
        return self._prune(layer, idxs, self.out_slices(layer), self.out_attrs,
                           self.get_out_channels(layer))

    def prune_in_channels(self, layer: nn.Module, idxs: Sequence[int]) -> nn.Module:
        return self._prune(layer, idxs, self.in_slices(layer), self.in_attrs,
                           self.get_in_channels(layer))

    def get_out_channels(self, layer: nn.Module) -> int:
        return getattr(layer, self.out_attrs[0])

    def get_in_channels(self, layer: nn.Module) -> int:
        return getattr(layer, self.in_attrs[0])


class LinearPruner(SlicePruner):
    """``nn.Linear``: weight [out, in], bias [out]."""

    out_attrs, in_attrs = ("out_features",), ("in_features",)

    def out_slices(self, layer: nn.Module) -> Slices:
        return (("weight", 0), ("bias", 0))

    def in_slices(self, layer: nn.Module) -> Slices:
        return (("weight", 1),)


class PyGLinearPruner(LinearPruner):
    """PyG's ``Linear`` (its own class, not ``nn.Linear``)."""

    out_attrs, in_attrs = ("out_channels",), ("in_channels",)


class NormPruner(SlicePruner):
    """Batch norm: one channel in, the same channel out (affine weight and bias, running
    statistics)."""

    out_attrs = in_attrs = ("num_features",)

    def out_slices(self, layer: nn.Module) -> Slices:
        return (("weight", 0), ("bias", 0), ("running_mean", 0), ("running_var", 0))

    def prune_out_channels(self, layer: nn.Module, idxs: Sequence[int]) -> nn.Module:
        return self._prune(layer, idxs, self.out_slices(layer), self.out_attrs,
                           self.get_out_channels(layer))

    prune_in_channels = prune_out_channels  # an intra-layer dependency: channels pass through
    in_slices = out_slices


class GCNConvPruner(SlicePruner):
    """``lin.weight`` [out, in] (PyG Linear), ``bias`` [out]."""

    out_attrs = ("out_channels", "lin.out_channels")
    in_attrs = ("in_channels", "lin.in_channels")

    def out_slices(self, layer: nn.Module) -> Slices:
        return (("lin.weight", 0), ("bias", 0))

    def in_slices(self, layer: nn.Module) -> Slices:
        return (("lin.weight", 1),)


class SAGEConvPruner(SlicePruner):
    """``lin_l`` (neighbours, with the bias) and ``lin_r`` (the root), both [out, in]."""

    out_attrs = ("out_channels", "lin_l.out_channels", "lin_r.out_channels")
    in_attrs = ("in_channels", "lin_l.in_channels", "lin_r.in_channels")

    def refuses(self, layer: nn.Module) -> str | None:
        if layer.project or isinstance(layer.aggr_module, MultiAggregation) or (
                not isinstance(layer.in_channels, int)) or layer.aggr == "lstm":
            return ("SAGEConv with project=True, a multi or LSTM aggregation or bipartite "
                    "inputs has no channel pruner")
        return None

    def out_slices(self, layer: nn.Module) -> Slices:
        return (("lin_l.weight", 0), ("lin_l.bias", 0)) + (
            (("lin_r.weight", 0),) if layer.root_weight else ())

    def in_slices(self, layer: nn.Module) -> Slices:
        return (("lin_l.weight", 1),) + ((("lin_r.weight", 1),) if layer.root_weight else ())


class SplineConvPruner(SlicePruner):
    """``weight`` [K, in, out], ``lin.weight`` [out, in] (the root weight), ``bias`` [out]."""

    out_attrs = ("out_channels", "lin.out_features")
    in_attrs = ("in_channels", "lin.in_features")

    def out_slices(self, layer: nn.Module) -> Slices:
        return (("weight", 2), ("lin.weight", 0), ("bias", 0))

    def in_slices(self, layer: nn.Module) -> Slices:
        return (("weight", 1), ("lin.weight", 1))

    def _prune(self, layer, idxs, slices, attrs, total):
        if layer.lin is None:  # root_weight=False
            slices = tuple(s for s in slices if not s[0].startswith("lin."))
            attrs = tuple(a for a in attrs if not a.startswith("lin."))
        return super()._prune(layer, idxs, slices, attrs, total)


class GATConvPruner(SlicePruner):
    """One head: ``lin.weight`` [out, in], ``att_src`` / ``att_dst`` [1, 1, out], ``bias``
    [out], and the residual ``res`` and edge ``lin_edge`` / ``att_edge`` where present.
    Several heads couple heads x channels (each head's channels are a block of ``lin``'s
    rows, viewed [N, heads, out]): refused."""

    out_attrs = ("out_channels", "lin.out_channels")
    in_attrs = ("in_channels", "lin.in_channels")

    def refuses(self, layer: nn.Module) -> str | None:
        if layer.heads != 1:
            return (f"GATConv with heads={layer.heads} couples heads x channels, which has no "
                    "channel pruner (heads=1 can be pruned)")
        if layer.lin is None:
            return "GATConv with bipartite inputs (lin_src, lin_dst) has no channel pruner"
        return None

    def out_slices(self, layer: nn.Module) -> Slices:
        out = (("lin.weight", 0), ("att_src", 2), ("att_dst", 2), ("bias", 0))
        if layer.lin_edge is not None:
            out += (("lin_edge.weight", 0), ("att_edge", 2))
        if layer.res is not None:
            out += (("res.weight", 0),)
        return out

    def in_slices(self, layer: nn.Module) -> Slices:
        return (("lin.weight", 1),) + ((("res.weight", 1),) if layer.res is not None else ())

    def prune_out_channels(self, layer: nn.Module, idxs: Sequence[int]) -> nn.Module:
        attrs = self.out_attrs + tuple(f"{m}.out_channels" for m in ("res", "lin_edge")
                                       if getattr(layer, m) is not None)
        return self._prune(layer, idxs, self.out_slices(layer), attrs, layer.out_channels)

    def prune_in_channels(self, layer: nn.Module, idxs: Sequence[int]) -> nn.Module:
        attrs = self.in_attrs + (("res.in_channels",) if layer.res is not None else ())
        return self._prune(layer, idxs, self.in_slices(layer), attrs, layer.in_channels)


PRUNERS: dict[type, SlicePruner] = {
    nn.Linear: LinearPruner(),
    PyGLinear: PyGLinearPruner(),
    nn.BatchNorm1d: NormPruner(),
    GCNConv: GCNConvPruner(),
    SAGEConv: SAGEConvPruner(),
    SplineConv: SplineConvPruner(),
    GATConv: GATConvPruner(),
}
KNOWN = ("nn.Linear, PyG Linear, BatchNorm1d, GCNConv, SAGEConv, SplineConv, GATConv (one "
         "head), GINConv (its MLP)")
ROOTS = (nn.Linear, PyGLinear, GCNConv, SAGEConv, SplineConv, GATConv)  # layers that make channels


@dataclass(frozen=True)
class Member:
    """A tensor a group's channels index: for channel ``channel[i]``, the slice
    ``index[i]`` along ``axis`` of parameter ``name`` (a channel may index several slices,
    e.g. the max and the mean half of a readout)."""

    name: str
    axis: int
    index: Tensor
    channel: Tensor


@dataclass(frozen=True)
class ChannelGroup:
    """Hidden channels that structured pruning removes together: the output channels of
    layer ``producer`` (``size`` of them) and every parameter they index."""

    producer: str
    size: int
    members: tuple[Member, ...]


class StructuredError(ValueError):
    """Structured pruning cannot run on this model (a one-line reason naming the layer)."""


# ---- inputs the dependency graph is traced on ------------------------------------------


def input_spec(example_inputs: Sequence[Any]) -> list[dict[str, Any]]:
    """The dtypes and shapes of a task's forward inputs, with the node and edge counts
    shrunk to a tiny graph: what a model file records to trace its model again."""
    tensors = [t for t in example_inputs if isinstance(t, Tensor)]
    if len(tensors) != len(example_inputs) or not tensors:
        raise StructuredError("structured pruning traces a forward of tensors only "
                              "(x, edge_index, ...)")
    nodes = tensors[0].shape[0]
    edges = next((t.shape[1] for t in tensors if not t.is_floating_point() and t.dim() == 2
                  and t.shape[0] == 2), None)
    spec = []
    for t in tensors:
        shape = list(t.shape)
        feature_axis = t.dim() - 1 if t.is_floating_point() and t.dim() > 1 else None
        for axis, size in enumerate(shape):
            if axis == feature_axis:
                continue
            if size == nodes:
                shape[axis] = PROBE_NODES
            elif size == edges and not (axis == 0 and size == 2):
                shape[axis] = PROBE_EDGES
        spec.append({"dtype": str(t.dtype).removeprefix("torch."), "shape": shape})
    return spec


def synthetic_inputs(spec: Sequence[dict[str, Any]]) -> tuple[Tensor, ...]:
    """A deterministic random graph of :func:`input_spec`'s shapes: floats in [0, 1), an
    edge index (int [2, E]) over the nodes, a batch vector (int [N]) of two graphs."""
    gen = torch.Generator().manual_seed(0)
    nodes = spec[0]["shape"][0]
    out = []
    for entry in spec:
        dtype, shape = getattr(torch, entry["dtype"]), entry["shape"]
        if dtype.is_floating_point:
            out.append(torch.rand(shape, generator=gen, dtype=dtype))
        elif len(shape) == 2 and shape[0] == 2:
            out.append(torch.randint(0, nodes, shape, generator=gen, dtype=dtype))
        elif len(shape) == 1 and shape[0] == nodes:
            out.append((torch.arange(nodes) * 2 // nodes).to(dtype))
        else:
            out.append(torch.zeros(shape, dtype=dtype))
    return tuple(out)


def probe_inputs(task: str, num_features: int) -> tuple[Tensor, ...]:
    """A tiny random graph as task ``task``'s models take it: ``(x, edge_index, batch)`` for
    graph classification, ``(x, edge_index)`` for link prediction, ``(x, edge_index,
    edge_attr)`` (one pseudo-coordinate per edge) otherwise."""
    spec = [{"dtype": "float32", "shape": [PROBE_NODES, num_features]},
            {"dtype": "int64", "shape": [2, PROBE_EDGES]}]
    if task == "graph_classification":
        spec.append({"dtype": "int64", "shape": [PROBE_NODES]})
    elif task != "link_prediction":
        spec.append({"dtype": "float32", "shape": [PROBE_EDGES, 1]})
    return synthetic_inputs(spec)


# ---- the dependency graph and its groups -----------------------------------------------


def _unknown_layer(model: nn.Module) -> str | None:
    """The first layer holding parameters (more than a scalar) that no pruner here knows,
    or whose configuration its pruner refuses."""
    handled: set[int] = set()
    for name, module in model.named_modules():
        if name.split(".")[0] == "act_quant":
            continue
        pruner = PRUNERS.get(type(module))
        if pruner is not None:
            reason = pruner.refuses(module)
            if reason:
                return f"layer {name!r} ({type(module).__name__}): {reason}"
            handled.update(id(m) for m in module.modules())
    for name, module in model.named_modules():
        if id(module) in handled or name.split(".")[0] == "act_quant":
            continue
        if any(p is not None and p.numel() > 1 for p in module._parameters.values()):
            owner = name
            for prefix, parent in model.named_modules():  # name the PyG layer, not its Linear
                if prefix and name.startswith(prefix + ".") and type(parent).__module__.startswith(
                        "torch_geometric.nn.conv"):
                    owner, module = prefix, parent
                    break
            return (f"layer {owner!r} ({type(module).__name__}): it has no channel pruner; "
                    f"pruners exist for {KNOWN}")
    return None


def _trace(model: nn.Module, inputs: tuple) -> tp.DependencyGraph:
    reason = _unknown_layer(model)
    if reason:
        raise StructuredError(f"it cannot prune {reason}")
    quantizers = getattr(model, "act_quant", None)  # per-node state (A2Q): never channels
    ignored = list(quantizers.parameters()) if quantizers is not None else []

    def mark_outputs(out):  # an op after every output, so groups reaching it are known
        return [o * 1 for o in tp.utils.flatten_as_list(out) if o.requires_grad]

    was_training = model.training
    with torch.enable_grad():  # torch-pruning traces with autograd
        graph = tp.DependencyGraph().build_dependency(
            model, example_inputs=inputs, output_transform=mark_outputs,
            customized_pruners=PRUNERS, ignored_params=ignored, verbose=False)
    model.train(was_training)
    return graph


def _reaches_output(group) -> bool:
    return any(isinstance(item.dep.target.module, tp.ops._OutputOp) for item in group)


def _slices(graph: tp.DependencyGraph, item) -> Slices:
    target = item.dep.target
    if target.type == tp.ops.OPTYPE.PARAMETER:
        return ((graph._param_to_name[target.module], target.pruning_dim),)
    pruner = PRUNERS.get(type(target.module))
    if pruner is None:  # ops (concat, elementwise): no tensors of their own
        return ()
    outward = item.dep.handler == pruner.prune_out_channels
    return pruner.out_slices(target.module) if outward else pruner.in_slices(target.module)


def _prefix(graph: tp.DependencyGraph, item) -> str:
    target = item.dep.target
    if target.type == tp.ops.OPTYPE.PARAMETER or type(target.module) not in PRUNERS:
        return ""
    return graph._module2name[target.module]


def _groups(graph: tp.DependencyGraph, model: nn.Module) -> list[ChannelGroup]:
    params = dict(model.named_parameters())
    groups = []
    for group in graph.get_all_groups(root_module_types=ROOTS):
        if _reaches_output(group):
            continue
        root = group[0].dep.target.module
        producer = graph._module2name[root]
        size = PRUNERS[type(root)].get_out_channels(root)
        members: dict[tuple[str, int], tuple[list[int], list[int]]] = {}
        for item in group:
            prefix = _prefix(graph, item)
            for path, axis in _slices(graph, item):
                name = f"{prefix}.{path}" if prefix else path
                if name not in params:  # a buffer (running statistics) or an absent bias
                    continue
                index, channel = members.setdefault((name, axis), ([], []))
                index.extend(int(i) for i in item.idxs)
                channel.extend(int(c) for c in item.root_idxs)
        groups.append(ChannelGroup(producer, size, tuple(
            Member(name, axis, torch.tensor(index), torch.tensor(channel))
            for (name, axis), (index, channel) in members.items())))
    return groups


def channel_groups(model: nn.Module, inputs: tuple) -> list[ChannelGroup]:
    """The hidden channel groups of ``model`` traced on ``inputs`` (e.g.
    :func:`synthetic_inputs`); a :class:`StructuredError` naming a layer no pruner knows."""
    return _groups(_trace(model, inputs), model)


# ---- masks and removal ------------------------------------------------------------------


def channel_norms(group: ChannelGroup, tensor_of) -> Tensor:
    """Per channel of ``group``: the L2 norm of everything it indexes (``tensor_of(name)``
    gives a parameter as the forward sees it)."""
    norms = torch.zeros(group.size)
    for m in group.members:
        w = tensor_of(m.name).detach()
        per_slice = w.pow(2).movedim(m.axis, 0).reshape(w.shape[m.axis], -1).sum(dim=1)
        norms.index_add_(0, m.channel, per_slice[m.index])
    return norms.sqrt()


def group_masks(group: ChannelGroup, keep: Tensor, tensor_of) -> dict[str, Tensor]:
    """Keep-masks by parameter name holding channels ``keep`` (bool [size]) of ``group``; a
    parameter two groups index (a concatenated readout) gets both groups' masks."""
    masks = {}
    for m in group.members:
        w = tensor_of(m.name)
        along = torch.ones(w.shape[m.axis], dtype=torch.bool)
        along[m.index] = keep[m.channel]
        shape = [1] * w.dim()
        shape[m.axis] = -1
        masks[m.name] = along.view(shape).expand_as(w).clone()
    return masks


def dead_channels(group: ChannelGroup, params: dict[str, Tensor]) -> list[int]:
    """Channels of ``group`` whose every indexed weight is exactly zero."""
    alive = torch.zeros(group.size, dtype=torch.bool)
    for m in group.members:
        w = params[m.name]
        nonzero = (w != 0).movedim(m.axis, 0).reshape(w.shape[m.axis], -1).any(dim=1)
        alive.index_put_((m.channel,), nonzero[m.index], accumulate=True)
    return (~alive).nonzero().flatten().tolist()


def remove_zero_channels(model: nn.Module, example_inputs: tuple) -> dict[str, Any]:
    """Delete every hidden channel whose weights are all zero (at least one channel of a
    group stays: a layer of width 0 cannot run). Returns the record a model file keeps,
    ``{"inputs": input spec, "removed": {producer: [channel, ...]}, "sizes": {producer:
    [kept, total]}}``, which :func:`replay_removal` applies to a freshly built model."""
    spec = input_spec(example_inputs)
    # the task's own inputs: an attached A2Q quantizer holds state for the task's nodes
    graph = _trace(model, tuple(example_inputs))
    params = dict(model.named_parameters())
    removed, sizes = {}, {}
    for group in _groups(graph, model):
        dead = dead_channels(group, params)
        if len(dead) == group.size:
            dead = dead[1:]
        sizes[group.producer] = [group.size - len(dead), group.size]
        if dead:
            removed[group.producer] = dead
    _apply(graph, model, removed)
    return {"inputs": spec, "removed": removed, "sizes": sizes}


def _apply(graph: tp.DependencyGraph, model: nn.Module, removed: dict[str, list[int]]) -> None:
    with torch.enable_grad():
        for producer, dead in removed.items():
            layer = model.get_submodule(producer)
            pruner = PRUNERS[type(layer)]
            graph.get_pruning_group(layer, pruner.prune_out_channels, dead).prune(
                record_history=False)


def replay_removal(model: nn.Module, record: dict[str, Any]) -> nn.Module:
    """Remove from a freshly built ``model`` (the original class and constructor arguments)
    the channels ``record`` says were removed (:func:`remove_zero_channels`), in place, so
    that the smaller model's saved state loads into it."""
    if not record.get("removed"):
        return model
    graph = _trace(model, synthetic_inputs(record["inputs"]))
    _apply(graph, model, record["removed"])
    return model


# ---- can structured pruning run on a model? ---------------------------------------------


@torch.no_grad()
def _outputs(model: nn.Module, inputs: tuple) -> list[Tensor]:
    return [o.detach() for o in tp.utils.flatten_as_list(model.eval()(*inputs))]


def _removal_is_exact(model: nn.Module, inputs: tuple, groups: list[ChannelGroup]) -> bool:
    """Zeroing channel 0 of each of ``groups`` and removing it compute the same outputs."""
    masked = copy.deepcopy(model)
    params = dict(masked.named_parameters())
    with torch.no_grad():
        for group in groups:
            keep = torch.ones(group.size, dtype=torch.bool)
            keep[0] = False
            for name, mask in group_masks(group, keep, params.__getitem__).items():
                params[name].mul_(mask)
    expected = _outputs(masked, inputs)
    _apply(_trace(masked, inputs), masked, {g.producer: [0] for g in groups})
    got = _outputs(masked, inputs)
    return len(got) == len(expected) and all(
        a.shape == b.shape and torch.allclose(a, b, rtol=1e-4, atol=1e-5)
        for a, b in zip(got, expected, strict=True))


def structured_support(model: nn.Module, inputs: tuple) -> str | None:
    """Why structured pruning cannot run on ``model`` (None: it can), checked on ``inputs``
    (e.g. :func:`probe_inputs`): a layer without a pruner, no hidden channel group, or a
    group whose removal would change what the model computes (a tensor outside it uses
    its channels). One line, naming the layer."""
    try:
        groups = [g for g in channel_groups(model, inputs) if g.size > 1]
    except StructuredError as err:
        return str(err)
    if not groups:
        return (f"it finds no hidden channels to remove in model {type(model).__name__} (every "
                "layer's output is the model's input or output)")
    if _removal_is_exact(model, inputs, groups):
        return None
    for group in groups:
        if not _removal_is_exact(model, inputs, [group]):
            return (f"it cannot prune the channels of layer {group.producer!r}: removing one "
                    "changes the model's output (a layer outside its group uses them)")
    return "removing channels of several groups together changes the model's output"


def registered_support(task: str, model: dict[str, Any]) -> str | None:
    """:func:`structured_support` of model spec ``model`` (``{"name"|"class", "kwargs"}``, as
    :func:`~trainables.models.build_model` resolves it) built for 4 features and 2 classes,
    on task ``task``'s :func:`probe_inputs`; cached, as space loading asks it per method
    choice. A user's class that cannot be built at those sizes is left to the trial's own
    check on the real baseline (None here)."""
    return _registered_support(task, json.dumps(model, sort_keys=True))


@functools.lru_cache(maxsize=64)
def _registered_support(task: str, model: str) -> str | None:
    from trainables.models import build_model, is_builtin

    spec = json.loads(model)
    torch.manual_seed(0)
    try:
        built = build_model(spec, 4, 2)
    except Exception:
        if is_builtin(spec):
            raise
        return None
    return structured_support(built, probe_inputs(task, 4))
