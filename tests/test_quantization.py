"""Quantized weights take at most the bits asked, keep zeros, and train through the STE."""

from __future__ import annotations

import pytest
import torch
from torch import nn
from torch.nn.utils import parametrize

from trainables.models import Target
from trainables.quantization import QUANTIZERS, FakeQuant, get_quantizer, quantize


@pytest.mark.parametrize("bits", [4, 8])
@pytest.mark.parametrize("axis", [0, 1, -1])
def test_values_fit_in_bits(bits, axis):
    w = torch.randn(16, 9, 5) * 3
    qt = quantize(w, bits, axis)
    qmax = 2 ** (bits - 1) - 1
    assert qt.q.dtype == torch.int8
    assert int(qt.q.min()) >= -qmax and int(qt.q.max()) <= qmax
    assert len(torch.unique(qt.q)) <= 2**bits
    assert qt.scale.numel() == w.shape[axis]
    # per-channel: every channel reaches its extreme level
    moved = qt.q.movedim(axis, 0).reshape(w.shape[axis], -1)
    assert torch.all(moved.abs().amax(dim=1) == qmax)
    # error bounded by half a step per channel
    err = (qt.dequantize() - w).abs().movedim(axis, 0).reshape(w.shape[axis], -1)
    assert torch.all(err.amax(dim=1) <= qt.scale / 2 + 1e-6)


def test_zeros_stay_zero_and_all_zero_channels_are_safe():
    w = torch.randn(4, 10)
    w[:, ::2] = 0
    w[2] = 0
    qt = quantize(w, 4, 0)
    deq = qt.dequantize()
    assert torch.all(deq[w == 0] == 0)
    assert torch.isfinite(deq).all()
    assert torch.all(torch.signbit(deq[w == 0]) == 0), "no negative zeros"


def test_fake_quant_forward_is_quantized_and_gradient_passes():
    layer = nn.Linear(6, 3)
    parametrize.register_parametrization(layer, "weight", FakeQuant(4, 0))
    assert torch.equal(layer.weight, quantize(layer.parametrizations.weight.original, 4, 0)
                       .dequantize())
    layer(torch.randn(5, 6)).sum().backward()
    grad = layer.parametrizations.weight.original.grad
    assert grad is not None and torch.any(grad != 0)


def test_qat_converts_to_integers():
    layer = nn.Linear(6, 3)
    targets = {"weight": Target(layer, "weight", 0)}
    qat = get_quantizer("qat")
    qat.prepare(targets, 8)
    weights = {"weight": layer.parametrizations.weight.original.detach()}
    out = qat.convert(weights, targets, 8)
    assert out["weight"].bits == 8 and out["weight"].q.dtype == torch.int8


def test_registry_and_bad_input():
    assert {"fp32", "qat"} <= set(QUANTIZERS)
    assert get_quantizer("fp32").convert({}, {}, None) == {}
    with pytest.raises(ValueError, match="unknown quantization method 'int2'; allowed: fp32"):
        get_quantizer("int2")
    with pytest.raises(ValueError, match="unsupported bit-width 3; allowed: 4, 8"):
        quantize(torch.randn(3, 3), 3, 0)
