"""Turn a reloaded eager model into its deployed form: each known layer replaced by a
deployed layer holding the integer weights the file stores (:mod:`.layers`)."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from torch import Tensor, nn

from trainables.quantization import QuantizedTensor
from trainables.runtime.layers import (
    DeployedGCNConv,
    DeployedGINConv,
    DeployedLinear,
    DeployedSplineConv,
    GraphInputs,
    NotDeployable,
    int8_weight,
)
from trainables.spline_conv import SplineConv

Quantized = dict[str, QuantizedTensor]


class Deployed(nn.Module):
    """The deployed model: the eager model's forward over deployed layers.

    ``layers``: every layer with a kernel choice, by state-dict prefix; ``eager``: layers
    left as they were (no deployed form); ``plan``: per layer, the options ranked fastest
    first (what the model file's header records); ``fallbacks``: plan choices this machine
    cannot run, and what ran instead.
    """

    def __init__(self, model: nn.Module, layers: dict[str, nn.Module], inputs: GraphInputs,
                 eager: list[str]) -> None:
        super().__init__()
        self.model = model
        self.layers, self.inputs, self.eager = layers, inputs, eager
        self.plan: dict[str, list[str]] = {}
        self.plan_ms: dict[str, dict[str, float]] = {}
        self.fallbacks: list[str] = []

    def forward(self, *args: Any, **kwargs: Any) -> Tensor:
        with self.inputs.call(args):
            return self.model(*args, **kwargs)

    def kernel_tag(self) -> str:
        """``conv1:csr_x+spmm,conv2:mm+spmm,...`` (``<layer>:eager`` where none applies)."""
        parts = [f"{name}:{layer.kernel}" for name, layer in self.layers.items()]
        return ",".join(parts + [f"{name}:eager" for name in self.eager]) or "eager"


def _gcn_int8(name: str, quantized: Quantized):
    q = quantized.get(f"{name}.lin.weight")
    return None if q is None or q.axis != 0 else int8_weight(q.q.t(), q.scale)


def _spline_int8(name: str, conv: SplineConv, quantized: Quantized):
    import torch

    q = quantized.get(f"{name}.weight")
    if q is None or q.axis != 2:
        return None
    values = [q.q.permute(1, 0, 2).reshape(conv.in_channels, -1)]
    scales = [q.scale.repeat(conv.K)]
    if conv.lin is not None:
        root = quantized.get(f"{name}.lin.weight")
        if root is None or root.axis != 0:
            return None
        values.append(root.q.t())
        scales.append(root.scale)
    return int8_weight(torch.cat(values, dim=1), torch.cat(scales))


def _gin_int8(name: str, quantized: Quantized) -> Callable[[int, Tensor], Any]:
    def first_linear(index: int, factor: Tensor):
        q = quantized.get(f"{name}.nn.{index}.weight")
        return None if q is None or q.axis != 0 else int8_weight(q.q.t(), q.scale * factor)

    return first_linear


def _deployed_layer(name: str, module: nn.Module, act: nn.Module | None, quantized: Quantized,
                    inputs: GraphInputs) -> nn.Module | None:
    """The deployed form of ``module``, or None when it is not a layer the runtime knows."""
    from torch_geometric.nn import GCNConv, GINConv

    if isinstance(module, GCNConv):
        return DeployedGCNConv(module, act, _gcn_int8(name, quantized), inputs)
    if isinstance(module, SplineConv):
        return DeployedSplineConv(module, act, _spline_int8(name, module, quantized), inputs)
    if isinstance(module, GINConv):
        return DeployedGINConv(module, act, _gin_int8(name, quantized), inputs)
    if type(module) is nn.Linear:
        return DeployedLinear(module.weight, module.bias, inputs)
    return None


def deploy(model: nn.Module, quantized: Quantized | None = None,
           fixed_inputs: tuple[Tensor, ...] = ()) -> Deployed:
    """Replace, in ``model`` (a model reloaded from its file, changed in place), every layer
    the runtime knows by its deployed form, at the reference kernel. ``fixed_inputs``: the
    tensors every inference reads unchanged (a transductive task's graph)."""
    from trainables.quantization import _key

    model.eval()
    quantized = quantized or {}
    inputs = GraphInputs(fixed_inputs)
    acts = dict(getattr(model, "act_quant", {}).items())
    layers: dict[str, nn.Module] = {}
    eager: list[str] = []
    done: list[str] = []
    for name, module in list(model.named_modules()):
        if not name or name == "act_quant" or any(name.startswith(p + ".") for p in done):
            continue
        try:
            act = acts.get(_key(name))
            new = _deployed_layer(name, module, act, quantized, inputs)
        except NotDeployable:
            eager.append(name)
            done.append(name)
            continue
        if new is None:
            continue
        model.set_submodule(name, new)
        done.append(name)
        layers[name] = new
        layers.update({f"{name}.{sub}": m for sub, m in new.named_modules()
                       if sub and isinstance(m, DeployedLinear)})
    return Deployed(model, layers, inputs, eager)
