"""Quantization methods, keyed by the names used in space files.

Weights: symmetric per-output-channel integers with FP32 scales, written by storage as int8
(8 bits) or two per byte (4 bits). Activations (the node features entering each graph
convolution) are fake-quantized by a small module per layer that the model file carries, so a
reloaded model computes exactly what was evaluated. Inference still runs float kernels on
dequantized values (tag ``latency_kernel=float``).

| method         | weights during fine-tuning | activations                                      |
|----------------|----------------------------|--------------------------------------------------|
| ``fp32``       | float                      | float                                            |
| ``ptq``        | float (quantized after)    | ranges calibrated on training nodes after tuning  |
| ``qat``        | fake-quant, STE            | min/max ranges (EMA), fake-quant, STE             |
| ``degree_quant`` | fake-quant, STE          | percentile ranges, high in-degree nodes protected |
| ``a2q``        | fake-quant, STE            | learned bit-width + step per node, memory penalty |
"""

from __future__ import annotations

import functools
from dataclasses import dataclass
from typing import Any

import torch
from torch import Tensor, nn
from torch.nn.utils import parametrize

from trainables.models import Target, message_passing_layers

SUPPORTED_BITS = (4, 8)
A2Q_BITS_RANGE = (2.0, 8.0)  # learnable per-node bit-widths stay in this range
A2Q_MEMORY_WEIGHT = 0.05  # weight of (mean bits - target bits)^2 in the loss
DQ_PROTECT = (0.0, 0.2)  # Degree-Quant protection probability for lowest/highest in-degree
DQ_PERCENTILE = 0.001  # Degree-Quant ranges: 0.1% / 99.9% percentiles
RANGE_MOMENTUM = 0.1  # EMA of activation ranges during training


def _check_bits(bits: int | None) -> int:
    if bits not in SUPPORTED_BITS:
        raise ValueError(
            f"unsupported bit-width {bits}; allowed: {', '.join(map(str, SUPPORTED_BITS))}"
        )
    return bits


def _channel_shape(ndim: int, axis: int) -> list[int]:
    shape = [1] * ndim
    shape[axis] = -1
    return shape


# ---- weights -------------------------------------------------------------------------------


@dataclass(frozen=True)
class QuantizedTensor:
    """Integer values in [-(2^(b-1) - 1), 2^(b-1) - 1] with one FP32 scale per channel."""

    q: Tensor  # int8 storage of b-bit values
    scale: Tensor  # float32, one per slice along ``axis``
    axis: int
    bits: int

    def dequantize(self) -> Tensor:
        return dequantize(self.q, self.scale, self.axis)


def quantize(weight: Tensor, bits: int, axis: int) -> QuantizedTensor:
    """Symmetric per-channel quantization; zero stays exactly zero (pruning survives)."""
    _check_bits(bits)
    qmax = 2 ** (bits - 1) - 1
    axis = axis % weight.dim()
    reduce_dims = [d for d in range(weight.dim()) if d != axis]
    w = weight.detach().to(torch.float32)
    amax = w.abs().amax(dim=reduce_dims) if reduce_dims else w.abs()
    scale = torch.where(amax > 0, amax / qmax, torch.ones_like(amax))
    q = torch.clamp(torch.round(w / scale.view(_channel_shape(w.dim(), axis))), -qmax, qmax)
    return QuantizedTensor(q.to(torch.int8), scale, axis, bits)


def dequantize(q: Tensor, scale: Tensor, axis: int) -> Tensor:
    """Float weights from integers and per-channel scales (used by convert and by load)."""
    out = q.to(torch.float32) * scale.view(_channel_shape(q.dim(), axis))
    return out + 0.0  # -0.0 -> +0.0, so zeros are bit-identical after a sparse round trip


class _FakeQuantSTE(torch.autograd.Function):
    @staticmethod
    def forward(ctx, weight: Tensor, bits: int, axis: int) -> Tensor:
        return quantize(weight, bits, axis).dequantize().to(weight.dtype)

    @staticmethod
    def backward(ctx, grad: Tensor):
        return grad, None, None


class FakeQuant(nn.Module):
    """Weight parametrization: the forward sees quantized weights, gradients pass straight."""

    def __init__(self, bits: int, axis: int) -> None:
        super().__init__()
        self.bits, self.axis = _check_bits(bits), axis

    def forward(self, weight: Tensor) -> Tensor:
        return _FakeQuantSTE.apply(weight, self.bits, self.axis)


# ---- activations ---------------------------------------------------------------------------


def _round_ste(x: Tensor) -> Tensor:
    return x + (torch.round(x) - x).detach()


def fake_quant_affine(x: Tensor, lo: Tensor, hi: Tensor, bits: int) -> Tensor:
    """Asymmetric uniform quantization of ``x`` to ``bits`` over [lo, hi] (one fused op;
    straight-through gradient inside the range, zero outside)."""
    levels = 2**bits - 1
    scale = (torch.clamp(hi - lo, min=1e-8) / levels).reshape(1).float()
    zero = torch.round(-lo / scale).reshape(1).to(torch.int32)
    return torch.fake_quantize_per_tensor_affine(x, scale, zero, 0, levels)


class RangeActQuant(nn.Module):
    """Per-layer activation quantizer with a range tracked during training or calibration.

    ``percentile`` 0 tracks min/max (QAT, PTQ); > 0 tracks that lower/upper percentile
    (Degree-Quant). ``protect`` = (p_min, p_max) enables Degree-Quant's protective masking:
    during training a node keeps its float features with a probability growing linearly with
    its in-degree rank.
    """

    def __init__(self, bits: int, percentile: float = 0.0,
                 protect: tuple[float, float] | None = None) -> None:
        super().__init__()
        self.bits, self.percentile, self.protect = _check_bits(bits), percentile, protect
        self.register_buffer("lo", torch.zeros(()))
        self.register_buffer("hi", torch.zeros(()))
        self.register_buffer("ready", torch.zeros((), dtype=torch.bool))
        self.observing = False  # calibration: update ranges in eval mode, do not quantize
        self.rows: Tensor | None = None  # rows that calibration observes (training nodes)
        # Inference on a fixed graph quantizes the same input features every call; keep the
        # result, as a deployment would store its features quantized once.
        self._cache: tuple[Tensor, int, tuple, Tensor] | None = None

    @torch.no_grad()
    def _observe(self, x: Tensor) -> None:
        values = (x[self.rows] if self.rows is not None else x).detach().flatten().float()
        if values.numel() > 1_000_000:  # quantile() limit; a strided sample is enough
            values = values[:: values.numel() // 1_000_000 + 1]
        if self.percentile > 0:
            qs = torch.quantile(values, torch.tensor(
                [self.percentile, 1 - self.percentile], device=values.device))
            lo, hi = qs[0], qs[1]
        else:
            lo, hi = values.min(), values.max()
        zero = torch.zeros((), device=values.device)
        lo, hi = torch.minimum(lo, zero), torch.maximum(hi, zero)
        if not self.ready or self.observing:
            first = not self.ready
            self.lo.copy_(lo if first else torch.minimum(self.lo, lo))
            self.hi.copy_(hi if first else torch.maximum(self.hi, hi))
        else:
            self.lo.lerp_(lo, RANGE_MOMENTUM)
            self.hi.lerp_(hi, RANGE_MOMENTUM)
        self.ready.fill_(True)

    def forward(self, x: Tensor, edge_index: Tensor) -> Tensor:
        if self.training or self.observing:
            self._observe(x)
        if self.observing:
            return x
        if not self.training and not torch.is_grad_enabled() and not x.is_inference():
            # the same tensor object (kept alive by the cache), unmodified, same range
            ranges = (float(self.lo), float(self.hi))
            cache = self._cache
            if cache is None or cache[0] is not x or cache[1] != x._version or cache[2] != ranges:
                cache = self._cache = (x, x._version, ranges,
                                       fake_quant_affine(x, self.lo, self.hi, self.bits))
            return cache[3]
        xq = fake_quant_affine(x, self.lo, self.hi, self.bits)
        if self.training and self.protect is not None:
            deg = in_degree(edge_index, x.size(0))
            rank = deg.argsort().argsort().float() / max(x.size(0) - 1, 1)
            p_min, p_max = self.protect
            protected = torch.rand(x.size(0), device=x.device) < p_min + (p_max - p_min) * rank
            xq = torch.where(protected.unsqueeze(-1), x, xq)
        return xq


class NodeActQuant(nn.Module):
    """A2Q: every node has its own learnable bit-width and step size (symmetric, signed)."""

    def __init__(self, bits: int, num_nodes: int) -> None:
        super().__init__()
        self.target_bits = _check_bits(bits)
        self.bits = nn.Parameter(torch.full((num_nodes,), float(bits)))
        self.log_step = nn.Parameter(torch.zeros(num_nodes))
        self.register_buffer("ready", torch.zeros((), dtype=torch.bool))

    def node_bits(self) -> Tensor:
        if self.bits.dtype == torch.uint8:  # frozen
            return self.bits.float()
        return torch.clamp(_round_ste(self.bits), *A2Q_BITS_RANGE)

    @torch.no_grad()
    def freeze(self) -> None:
        """For deployment: bit-widths become uint8 and steps float16 (what the file stores);
        the frozen module computes exactly what is evaluated after reloading."""
        bits = self.node_bits().to(torch.uint8)
        log_step = self.log_step.detach().half()
        del self.bits, self.log_step
        self.register_buffer("bits", bits)
        self.register_buffer("log_step", log_step)

    def forward(self, x: Tensor, edge_index: Tensor) -> Tensor:
        if x.size(0) != self.bits.numel():
            raise ValueError(
                f"a2q learned bit-widths for {self.bits.numel()} nodes; this graph has "
                f"{x.size(0)} (a2q here is transductive)"
            )
        if not self.ready:  # step from each node's own range at the first forward
            with torch.no_grad():
                amax = x.detach().abs().amax(dim=1).clamp(min=1e-4)
                self.log_step.copy_(torch.log(amax / (2 ** (self.bits - 1) - 1)))
                self.ready.fill_(True)
        bits = self.node_bits()
        qmax = (2 ** (bits - 1) - 1).unsqueeze(-1)
        step = torch.exp(self.log_step.float()).unsqueeze(-1)
        q = torch.maximum(torch.minimum(_round_ste(x / step), qmax), -qmax - 1)
        return q * step

    def memory_penalty(self) -> Tensor:
        return (self.node_bits().mean() - self.target_bits) ** 2


def _key(layer_name: str) -> str:
    return layer_name.replace(".", "__")


def attach_activation_quant(
    model: nn.Module, spec: dict[str, Any], frozen: bool = False
) -> nn.ModuleDict:
    """Insert activation quantizers before every graph convolution, as ``spec`` says.

    The quantizers live in ``model.act_quant`` (so their state is saved with the model) and
    run as forward pre-hooks. Used when preparing a trial and when loading its file.
    """
    layers = message_passing_layers(model)
    quantizers = nn.ModuleDict()
    for name in layers:
        if spec["kind"] == "node":
            quantizers[_key(name)] = NodeActQuant(spec["bits"], spec["num_nodes"])
            if frozen:
                quantizers[_key(name)].freeze()
        else:
            protect = tuple(spec["protect"]) if spec.get("protect") else None
            quantizers[_key(name)] = RangeActQuant(spec["bits"], spec.get("percentile", 0.0),
                                                   protect)
    model.act_quant = quantizers
    for name, layer in layers.items():
        layer.register_forward_pre_hook(functools.partial(_quantize_inputs,
                                                          quantizer=quantizers[_key(name)]),
                                        with_kwargs=True)
    return quantizers


def _quantize_inputs(module: nn.Module, args: tuple, kwargs: dict, quantizer: nn.Module):
    """A layer's node features (its first argument, or ``x=``) through its quantizer; a
    bipartite pair ``(x_src, x_dst)`` element by element. Every other argument as given."""
    if args:
        x, edge_index = args[0], args[1] if len(args) > 1 else kwargs.get("edge_index")
    elif "x" in kwargs:
        x, edge_index = kwargs["x"], kwargs.get("edge_index")
    else:
        return None

    def one(t: Any) -> Any:
        return quantizer(t, edge_index) if isinstance(t, Tensor) else t

    xq = type(x)(one(t) for t in x) if isinstance(x, (tuple, list)) else one(x)
    if args:
        return (xq, *args[1:]), kwargs
    return args, {**kwargs, "x": xq}


def in_degree(edge_index: Any, num_nodes: int) -> Tensor:
    """Each node's in-degree, from ``[2, E]`` edges or a sparse adjacency (rows: targets)."""
    if isinstance(edge_index, Tensor) and edge_index.layout == torch.strided:
        return torch.bincount(edge_index[1], minlength=num_nodes).float()
    if isinstance(edge_index, Tensor):  # torch.sparse adj_t
        return torch.bincount(edge_index.to_sparse_coo().coalesce().indices()[0],
                              minlength=num_nodes).float()
    return edge_index.storage.rowcount().float()  # torch_sparse.SparseTensor adj_t


# ---- methods -------------------------------------------------------------------------------


class Quantizer:
    """A quantization method: what it changes before fine-tuning and how it converts after.

    ``activation_spec`` (set by ``prepare``) is written into the model file's meta so that
    loading re-creates the activation quantizers.
    """

    name = "fp32"
    fake_quant_weights = False
    quantizes = False
    quantizes_activations_in_training = True  # PTQ attaches its quantizers after training

    def __init__(self) -> None:
        self.activation_spec: dict[str, Any] | None = None

    def activation(self, bits: int, num_nodes: int) -> dict[str, Any] | None:
        return None

    def prepare(self, model: nn.Module, targets: dict[str, Target], bits: int | None,
                num_nodes: int) -> None:
        """Change the model for fine-tuning (fake-quant weights, activation quantizers)."""
        if self.quantizes:
            _check_bits(bits)
        if self.fake_quant_weights:
            for t in targets.values():
                parametrize.register_parametrization(t.module, t.attr, FakeQuant(bits, t.axis))
        self.activation_spec = self.activation(bits, num_nodes)
        if self.activation_spec and self.quantizes_activations_in_training:
            attach_activation_quant(model, self.activation_spec)

    def penalty(self, model: nn.Module) -> Tensor | None:
        """Extra training loss (A2Q's memory penalty), or None."""
        return None

    def finalize(self, model: nn.Module) -> None:
        """After fine-tuning: put learned quantizer state in its deployable form."""
        for quantizer in getattr(model, "act_quant", {}).values():
            if isinstance(quantizer, NodeActQuant):
                quantizer.freeze()

    def calibrate(self, model: nn.Module, run_forward, rows: Tensor | None) -> None:
        """After fine-tuning: set activation ranges that training did not set (all of PTQ's;
        QAT's and Degree-Quant's when there were 0 epochs) from ``rows``; initialise A2Q."""
        quantizers = getattr(model, "act_quant", None)
        if not quantizers or all(bool(q.ready) for q in quantizers.values()):
            return
        waiting = [q for q in quantizers.values() if isinstance(q, RangeActQuant) and not q.ready]
        for q in waiting:
            q.observing, q.rows = True, rows
        with torch.no_grad():
            run_forward()
        for q in waiting:
            q.observing, q.rows = False, None

    def convert(
        self, weights: dict[str, Tensor], targets: dict[str, Target], bits: int | None
    ) -> dict[str, QuantizedTensor]:
        """Integer tensors from the final float ``weights`` (masks applied, no fake quant)."""
        if not self.quantizes:
            return {}
        return {name: quantize(weights[name], bits, t.axis) for name, t in targets.items()}

    def activation_bits(self, model: nn.Module, bits: int | None) -> float:
        """Average bits of the quantized activations (32 when they stay float)."""
        quantizers = getattr(model, "act_quant", None)
        if not quantizers:
            return 32.0
        node = [q.node_bits().detach() for q in quantizers.values() if isinstance(q, NodeActQuant)]
        return float(torch.cat(node).mean()) if node else float(bits)


class PTQ(Quantizer):
    """Post-training quantization: fine-tune in float, then calibrate activation ranges on the
    training nodes and quantize weights per channel."""

    name, quantizes, quantizes_activations_in_training = "ptq", True, False

    def activation(self, bits, num_nodes):
        return {"kind": "range", "bits": bits, "percentile": 0.0}

    def calibrate(self, model, run_forward, rows):
        attach_activation_quant(model, self.activation_spec)
        super().calibrate(model, run_forward, rows)


class QAT(Quantizer):
    """Quantization-aware training: fake-quant weights and activations (min/max), STE."""

    name, quantizes, fake_quant_weights = "qat", True, True

    def activation(self, bits, num_nodes):
        return {"kind": "range", "bits": bits, "percentile": 0.0}


class DegreeQuant(Quantizer):
    """Degree-Quant (Tailor et al., 2021): QAT with percentile ranges and stochastic
    protection of high in-degree nodes during training."""

    name, quantizes, fake_quant_weights = "degree_quant", True, True

    def activation(self, bits, num_nodes):
        return {"kind": "range", "bits": bits, "percentile": DQ_PERCENTILE,
                "protect": list(DQ_PROTECT)}


class A2Q(Quantizer):
    """A2Q (Zhu et al., 2023): learnable per-node activation bit-width and step, with a
    memory penalty pulling the mean bit-width to ``quant.bits``."""

    name, quantizes, fake_quant_weights = "a2q", True, True

    def activation(self, bits, num_nodes):
        return {"kind": "node", "bits": bits, "num_nodes": num_nodes}

    def penalty(self, model):
        return A2Q_MEMORY_WEIGHT * sum(q.memory_penalty() for q in model.act_quant.values())


QUANTIZERS: dict[str, type[Quantizer]] = {
    "fp32": Quantizer,
    "ptq": PTQ,
    "qat": QAT,
    "degree_quant": DegreeQuant,
    "a2q": A2Q,
}


def get_quantizer(method: str) -> Quantizer:
    """A fresh quantizer for ``method`` (quantizers hold per-trial state)."""
    if method not in QUANTIZERS:
        raise ValueError(
            f"unknown quantization method {method!r}; allowed: {', '.join(QUANTIZERS)}"
        )
    return QUANTIZERS[method]()
