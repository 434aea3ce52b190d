"""Model registry: the GNNs a space file can name, and which of their tensors get compressed."""

from __future__ import annotations

import functools
import importlib
import importlib.metadata
import inspect
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor, nn
from torch_geometric.nn import GCNConv

from trainables.errors import first_line
from trainables.imports import import_module
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


class NESS(nn.Module):
    """NESS encoder for link prediction (Ucar, 2023): a linear map and one normalized
    propagation step, no nonlinearity; the task trains it on static subgraphs and decodes
    edges by inner product. ``num_classes`` is unused (the output is an embedding)."""

    def __init__(self, num_features: int, num_classes: int | None = None,
                 hidden: int = 128) -> None:
        super().__init__()
        self.conv = GCNConv(num_features, hidden)

    def forward(self, x: Tensor, edge_index: Tensor, edge_attr: Tensor | None = None) -> Tensor:
        return self.conv(x, edge_index)


class GAE(nn.Module):
    """Graph autoencoder encoder (Kipf & Welling, 2016): two GCN layers (32, 16), decoded by
    inner product. ``num_classes`` is unused (the output is an embedding)."""

    def __init__(self, num_features: int, num_classes: int | None = None, hidden: int = 32,
                 out: int = 16) -> None:
        super().__init__()
        self.conv1 = GCNConv(num_features, hidden)
        self.conv2 = GCNConv(hidden, out)

    def forward(self, x: Tensor, edge_index: Tensor, edge_attr: Tensor | None = None) -> Tensor:
        return self.conv2(F.relu(self.conv1(x, edge_index)), edge_index)


class GIN(nn.Module):
    """GIN (Xu et al., 2019): ``layers`` GINConv blocks with two-layer MLPs and batch norm,
    sum readout of every block, summed into a two-layer classifier."""

    def __init__(self, num_features: int, num_classes: int, hidden: int = 64, layers: int = 5,
                 dropout: float = 0.5) -> None:
        super().__init__()
        from torch_geometric.nn import GINConv

        self.dropout = dropout
        self.convs = nn.ModuleList()
        for i in range(layers):
            mlp = nn.Sequential(
                nn.Linear(num_features if i == 0 else hidden, hidden), nn.BatchNorm1d(hidden),
                nn.ReLU(), nn.Linear(hidden, hidden), nn.BatchNorm1d(hidden), nn.ReLU(),
            )
            self.convs.append(GINConv(mlp, train_eps=False))
        self.lin1 = nn.Linear(hidden * layers, hidden)
        self.lin2 = nn.Linear(hidden, num_classes)

    def forward(self, x: Tensor, edge_index: Tensor, batch: Tensor) -> Tensor:
        from torch_geometric.nn import global_add_pool

        readouts = []
        for conv in self.convs:
            x = conv(x, edge_index)
            readouts.append(global_add_pool(x, batch))
        x = F.relu(self.lin1(torch.cat(readouts, dim=-1)))
        x = F.dropout(x, p=self.dropout, training=self.training)
        return self.lin2(x)


class GraphGCN(nn.Module):
    """Graph classification GCN: ``layers`` GCN layers of ``hidden`` channels, max readout."""

    def __init__(self, num_features: int, num_classes: int, hidden: int = 128, layers: int = 3,
                 dropout: float = 0.2) -> None:
        super().__init__()
        self.dropout = dropout
        self.convs = nn.ModuleList(
            GCNConv(num_features if i == 0 else hidden, hidden) for i in range(layers))
        self.lin = nn.Linear(hidden, num_classes)

    def forward(self, x: Tensor, edge_index: Tensor, batch: Tensor) -> Tensor:
        from torch_geometric.nn import global_max_pool

        for conv in self.convs:
            x = F.relu(conv(x, edge_index))
        x = F.dropout(global_max_pool(x, batch), p=self.dropout, training=self.training)
        return self.lin(x)


class HGPSL(nn.Module):
    """HGP-SL (Zhang et al., 2019): three GCN layers, HGP-SL pooling after the first two,
    mean||max readout after each layer, summed, then a three-layer classifier."""

    def __init__(self, num_features: int, num_classes: int, hidden: int = 128,
                 ratio: float = 0.5, dropout: float = 0.0, hops: int = 3,
                 lamb: float = 1.0) -> None:
        super().__init__()
        from trainables.hgpsl import HGPSLPool

        self.dropout = dropout
        self.conv1 = GCNConv(num_features, hidden)
        # after a pooling the learned weights are already normalized per node (HGPSLPool)
        self.conv2 = GCNConv(hidden, hidden, add_self_loops=False, normalize=False)
        self.conv3 = GCNConv(hidden, hidden, add_self_loops=False, normalize=False)
        self.pool1 = HGPSLPool(hidden, ratio, hops, lamb)
        self.pool2 = HGPSLPool(hidden, ratio, hops, lamb)
        self.lin1 = nn.Linear(2 * hidden, hidden)
        self.lin2 = nn.Linear(hidden, hidden // 2)
        self.lin3 = nn.Linear(hidden // 2, num_classes)

    def forward(self, x: Tensor, edge_index: Tensor, batch: Tensor) -> Tensor:
        from torch_geometric.nn import global_max_pool, global_mean_pool

        def readout(h: Tensor, b: Tensor) -> Tensor:
            return F.relu(torch.cat([global_max_pool(h, b), global_mean_pool(h, b)], dim=-1))

        weight = None
        x = F.relu(self.conv1(x, edge_index))
        x, edge_index, weight, batch = self.pool1(x, edge_index, weight, batch)
        total = readout(x, batch)
        x = F.relu(self.conv2(x, edge_index, weight))
        x, edge_index, weight, batch = self.pool2(x, edge_index, weight, batch)
        total = total + readout(x, batch)
        x = F.relu(self.conv3(x, edge_index, weight))
        total = total + readout(x, batch)
        x = F.dropout(F.relu(self.lin1(total)), p=self.dropout, training=self.training)
        x = F.dropout(F.relu(self.lin2(x)), p=self.dropout, training=self.training)
        return self.lin3(x)


def message_passing_layers(model: nn.Module) -> dict[str, nn.Module]:
    """Graph convolution layers, whose node-feature inputs activation quantizers act on."""
    from torch_geometric.nn import MessagePassing

    return {name: m for name, m in model.named_modules()
            if isinstance(m, (SplineConv, MessagePassing))}


# Which task each model fits is its task spec's `models` (trainables/tasks/).
MODELS: dict[str, Callable[..., nn.Module]] = {
    "spline": SplineNet,  # node classification
    "gcn": GCN,  # node classification
    "ness": NESS,  # link prediction
    "gae": GAE,  # link prediction
    "gin": GIN,  # graph classification
    "graph_gcn": GraphGCN,  # graph classification
    "hgpsl": HGPSL,  # graph classification
}


ENTRY_POINT_GROUP = "gnn_search.models"  # installed packages register model names here
ModelSpec = dict[str, Any]  # {"name": ..., "kwargs": {...}} or {"class": "pkg.mod:Cls", ...}


def model_label(spec: ModelSpec | str) -> str:
    """How messages name a model: its registered name or its import path."""
    if isinstance(spec, str):
        return spec
    return str(spec.get("class") or spec.get("name"))


def is_builtin(spec: ModelSpec | str) -> bool:
    """Whether ``spec`` names a model of :data:`MODELS` (whose task fit the task specs know)."""
    if isinstance(spec, str):
        return spec in MODELS
    return "class" not in spec and spec.get("name") in MODELS


def _module_class(value: Any, where: str) -> type[nn.Module]:
    if not (isinstance(value, type) and issubclass(value, nn.Module)):
        kind = (f"class {value.__name__}" if isinstance(value, type)
                else f"an object of type {type(value).__name__}")
        raise ValueError(f"{where} is {kind}, not a torch.nn.Module subclass; a model is "
                         "an nn.Module built as Class(num_features, num_classes, **kwargs)")
    return value


def import_class(path: str) -> type[nn.Module]:
    """The class at import path ``package.module:Class`` (``Class`` may be dotted); an
    unimportable path or a non-module is a one-line ValueError naming the path."""
    module_name, colon, attr = str(path).partition(":")
    if not colon or not module_name or not attr:
        raise ValueError(f"model class {path!r} is not an import path; expected "
                         "'package.module:Class'")
    try:
        value: Any = import_module(module_name)
        for part in attr.split("."):
            value = getattr(value, part)
    except Exception as err:  # ImportError, AttributeError, or the module's own error
        raise ValueError(f"cannot import model class {path!r} ({first_line(err)}); install "
                         "the package that holds it, put it on PYTHONPATH or run from its "
                         "folder") from None
    return _module_class(value, f"model class {path!r}")


def class_path(cls: type) -> str:
    """``cls``'s import path, ``package.module:Class``."""
    return f"{cls.__module__}:{cls.__qualname__}"


@functools.cache
def _entry_points() -> tuple[importlib.metadata.EntryPoint, ...]:
    """The group's entry points, read once per process (``cache_clear()`` reads again)."""
    return tuple(importlib.metadata.entry_points(group=ENTRY_POINT_GROUP))


def plugin_models() -> dict[str, importlib.metadata.EntryPoint]:
    """Model names installed packages register (entry-point group ``gnn_search.models``);
    a name that is also a built-in, or that two packages register differently, is an error
    naming both."""
    found: dict[str, importlib.metadata.EntryPoint] = {}
    for ep in _entry_points():
        where = f"{ep.value}" + (f" of {ep.dist.name}" if ep.dist else "")
        if ep.name in MODELS:
            raise ValueError(f"model name {ep.name!r} is both the built-in "
                             f"{class_path(MODELS[ep.name])} and the plugin {where} (entry "
                             f"point group {ENTRY_POINT_GROUP}); rename the plugin's entry point")
        if ep.name in found and found[ep.name].value != ep.value:
            raise ValueError(f"model name {ep.name!r} is registered twice in entry point group "
                             f"{ENTRY_POINT_GROUP}: {found[ep.name].value} and {where}; "
                             "uninstall or rename one")
        found.setdefault(ep.name, ep)
    return found


def model_names() -> list[str]:
    """Every name a space file may write as ``model.name``: built-ins, then plugins."""
    return [*MODELS, *plugin_models()]


def model_class(spec: ModelSpec | str) -> type[nn.Module]:
    """The class a model spec (or a name) stands for: ``class`` is imported; ``name`` is a
    built-in of :data:`MODELS` or a plugin's entry point. The one place model specs resolve."""
    if isinstance(spec, str):
        spec = {"name": spec}
    if "class" in spec and "name" in spec:
        raise ValueError(f"model: give name or class, not both (name {spec['name']!r}, class "
                         f"{spec['class']!r})")
    if "class" in spec:
        return import_class(spec["class"])
    name = spec.get("name")
    plugins = plugin_models()  # a plugin that takes a built-in's name is an error here
    if name in MODELS:
        return MODELS[name]
    if name not in plugins:
        raise ValueError(f"unknown model {name!r}; allowed: {', '.join([*MODELS, *plugins])}"
                         " (or model.class: 'package.module:Class')")
    try:
        value = plugins[name].load()
    except Exception as err:
        raise ValueError(f"model {name!r} (entry point {plugins[name].value}) cannot be "
                         f"imported ({first_line(err)})") from None
    return _module_class(value, f"model {name!r} (entry point {plugins[name].value})")


def constructor_kwargs(cls: type) -> list[str] | None:
    """The keyword arguments ``cls(num_features, num_classes, **kwargs)`` accepts beyond its
    first two; None when it takes any (``**kwargs``)."""
    params = list(inspect.signature(cls).parameters.values())
    if any(p.kind is p.VAR_KEYWORD for p in params):
        return None
    positional = [p for p in params if p.kind in (p.POSITIONAL_ONLY, p.POSITIONAL_OR_KEYWORD)]
    if len(positional) < 2 and not any(p.kind is p.VAR_POSITIONAL for p in params):
        raise ValueError(f"model {class_path(cls)} cannot be built as {cls.__name__}"
                         f"(num_features, num_classes, **kwargs): its constructor takes "
                         f"{cls.__name__}{inspect.signature(cls)}")
    skipped = {p.name for p in positional[:2]}
    return [p.name for p in params if p.name not in skipped
            and p.kind in (p.POSITIONAL_OR_KEYWORD, p.KEYWORD_ONLY)]


def check_kwargs(spec: ModelSpec | str, kwargs: dict[str, Any]) -> type[nn.Module]:
    """The class of ``spec``, after checking that its constructor takes ``kwargs`` by name."""
    cls = model_class(spec)
    allowed = constructor_kwargs(cls)
    unknown = [] if allowed is None else sorted(set(kwargs) - set(allowed))
    if unknown:
        raise ValueError(f"unknown argument {unknown[0]!r} for model {model_label(spec)!r}; "
                         f"allowed: {', '.join(allowed) or 'none'}")
    return cls


def build_model(spec: ModelSpec | str, num_features: int, num_classes: int | None,
                **kwargs: Any) -> nn.Module:
    """``Class(num_features, num_classes, **kwargs)`` for a model spec or a registered name
    (the spec's ``kwargs``, then ``kwargs``); unknown names and arguments are clear errors."""
    if not isinstance(spec, str):
        kwargs = {**spec.get("kwargs", {}), **kwargs}
    cls = check_kwargs(spec, kwargs)
    return cls(num_features, num_classes, **kwargs)


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
