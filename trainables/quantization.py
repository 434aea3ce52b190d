"""Quantization methods: symmetric per-channel integer weights with FP32 scales.

``fp32`` leaves weights alone. ``qat`` fake-quantizes weights in every forward during
fine-tuning (straight-through estimator), then converts them to integers + scales, which
storage writes as int8 (8 bits) or two-per-byte nibbles (4 bits). Inference still computes in
float after dequantizing (``latency_kernel=float``).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import Tensor, nn
from torch.nn.utils import parametrize

from trainables.models import Target

SUPPORTED_BITS = (4, 8)


def _check_bits(bits: int) -> None:
    if bits not in SUPPORTED_BITS:
        raise ValueError(
            f"unsupported bit-width {bits}; allowed: {', '.join(map(str, SUPPORTED_BITS))}"
        )


def _channel_shape(ndim: int, axis: int) -> list[int]:
    shape = [1] * ndim
    shape[axis] = -1
    return shape


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
    """Parametrization: the forward sees quantized weights, gradients pass straight through."""

    def __init__(self, bits: int, axis: int) -> None:
        super().__init__()
        _check_bits(bits)
        self.bits, self.axis = bits, axis

    def forward(self, weight: Tensor) -> Tensor:
        return _FakeQuantSTE.apply(weight, self.bits, self.axis)


class Quantizer:
    """A quantization method: what it does before fine-tuning and how it converts after."""

    name = "fp32"
    quantizes = False

    def prepare(self, targets: dict[str, Target], bits: int | None) -> None:
        """Change the model for fine-tuning (e.g. insert fake quantization)."""

    def convert(
        self, weights: dict[str, Tensor], targets: dict[str, Target], bits: int | None
    ) -> dict[str, QuantizedTensor]:
        """Integer tensors for storage from the final float ``weights`` (masks applied, no
        fake quantization); empty when the method keeps FP32."""
        return {}


class QAT(Quantizer):
    """Quantization-aware training: fake-quant weights + STE, then integer conversion."""

    name = "qat"
    quantizes = True

    def prepare(self, targets: dict[str, Target], bits: int | None) -> None:
        _check_bits(bits)
        for t in targets.values():
            parametrize.register_parametrization(t.module, t.attr, FakeQuant(bits, t.axis))

    def convert(
        self, weights: dict[str, Tensor], targets: dict[str, Target], bits: int | None
    ) -> dict[str, QuantizedTensor]:
        return {name: quantize(weights[name], bits, t.axis) for name, t in targets.items()}


QUANTIZERS: dict[str, Quantizer] = {"fp32": Quantizer(), "qat": QAT()}


def get_quantizer(method: str) -> Quantizer:
    if method not in QUANTIZERS:
        raise ValueError(
            f"unknown quantization method {method!r}; allowed: {', '.join(QUANTIZERS)}"
        )
    return QUANTIZERS[method]
