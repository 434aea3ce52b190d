"""Quantized weights take at most the bits asked, keep zeros, and train through the STE."""

from __future__ import annotations

import pytest
import torch
from torch import nn
from torch.nn.utils import parametrize

from trainables.models import Target
from trainables.quantization import (
    QUANTIZERS,
    FakeQuant,
    NodeActQuant,
    RangeActQuant,
    fake_quant_affine,
    get_quantizer,
    quantize,
)


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


@pytest.mark.parametrize("method", ["ptq", "qat", "degree_quant", "a2q"])
def test_methods_convert_to_integers(method):
    layer = nn.Linear(6, 3)
    targets = {"weight": Target(layer, "weight", 0)}
    quantizer = get_quantizer(method)
    quantizer.prepare(layer, targets, 8, num_nodes=10)
    fake = parametrize.is_parametrized(layer, "weight")
    assert fake == (method != "ptq"), "only PTQ fine-tunes float weights"
    weights = {"weight": (layer.parametrizations.weight.original if fake else layer.weight)
               .detach()}
    out = quantizer.convert(weights, targets, 8)
    assert out["weight"].bits == 8 and out["weight"].q.dtype == torch.int8


def test_registry_and_bad_input():
    assert {"fp32", "ptq", "qat", "degree_quant", "a2q"} <= set(QUANTIZERS)
    assert get_quantizer("fp32").convert({}, {}, None) == {}
    with pytest.raises(ValueError, match="unknown quantization method 'int2'; allowed: fp32"):
        get_quantizer("int2")
    with pytest.raises(ValueError, match="unsupported bit-width 3; allowed: 4, 8"):
        quantize(torch.randn(3, 3), 3, 0)


def _edges(num_nodes: int) -> torch.Tensor:
    # node i receives i edges: in-degree grows with the node index
    dst = torch.cat([torch.full((i,), i) for i in range(num_nodes)])
    return torch.stack([torch.zeros_like(dst), dst])


@pytest.mark.parametrize("bits", [4, 8])
def test_affine_fake_quant_levels(bits):
    x = torch.linspace(-1.0, 3.0, 1000)
    out = fake_quant_affine(x, torch.tensor(-1.0), torch.tensor(3.0), bits)
    assert len(torch.unique(out)) <= 2**bits
    assert (out - x).abs().max() <= 4.0 / (2**bits - 1) / 2 + 1e-6


def test_range_quant_tracks_in_training_and_freezes_in_eval():
    q = RangeActQuant(8)
    edges = _edges(50)
    q.train()
    q(torch.rand(50, 4) * 2, edges)
    hi = float(q.hi)
    assert q.ready and 1.5 < hi <= 2.0
    q.eval()
    out = q(torch.rand(50, 4) * 10, edges)
    assert float(q.hi) == hi and float(out.max()) <= hi + 1e-6, "eval must not move ranges"


def test_degree_quant_percentiles_and_protection():
    x = torch.rand(200, 8)
    x[0, 0] = 1000.0  # an outlier a percentile range ignores
    dq = RangeActQuant(4, percentile=0.001, protect=(0.0, 1.0)).train()
    out = dq(x, _edges(200))
    assert float(dq.hi) < 10
    kept_float = (out == x).all(dim=1).float()
    assert kept_float[150:].mean() > kept_float[:50].mean() + 0.3, "high in-degree protected"
    dq.eval()
    assert not (dq(x, _edges(200)) == x).all(dim=1).any(), "no protection at inference"


def test_ptq_calibrates_on_given_rows():
    from trainables.models import build_model

    model = build_model("gcn", 5, 2, hidden=4).eval()
    x, edges = torch.rand(30, 5), _edges(30)
    x[20:] *= 100  # rows outside calibration
    ptq = get_quantizer("ptq")
    ptq.prepare(model, {}, 8, num_nodes=30)
    rows = torch.zeros(30, dtype=torch.bool)
    rows[:20] = True
    ptq.calibrate(model, lambda: model(x, edges), rows)
    first = model.act_quant["conv1"]
    assert first.ready and float(first.hi) <= 1.0


def test_a2q_learns_per_node_bits_and_freezes_exactly():
    q = NodeActQuant(4, num_nodes=30)
    x = torch.randn(30, 6)
    edges = _edges(30)
    out = q(x, edges)
    assert out.shape == x.shape and torch.isfinite(out).all()
    with torch.no_grad():
        q.bits[:10] = 7.6
    assert q.node_bits()[:10].eq(8).all() and q.node_bits()[10:].eq(4).all()
    assert q.memory_penalty() > 0
    q.eval()
    with torch.no_grad():
        q.log_step.copy_(q.log_step.half().float())  # what freezing keeps
        before = q(x, edges)
    q.freeze()
    assert q.bits.dtype == torch.uint8 and q.log_step.dtype == torch.float16
    torch.testing.assert_close(q(x, edges), before, rtol=0, atol=0)
    with pytest.raises(ValueError, match="learned bit-widths for 30 nodes; this graph has 5"):
        q(torch.randn(5, 6), edges)


def test_eval_cache_reuses_only_the_same_unmodified_input():
    q = RangeActQuant(4).train()
    x = torch.rand(20, 3)
    q(x, _edges(20))
    q.eval()
    with torch.no_grad():
        first = q(x, _edges(20))
        assert q(x, _edges(20)) is first
        x.mul_(0.5)  # in place: the version changes, the cache must not answer
        assert not torch.equal(q(x, _edges(20)), first)
        other = x.clone()
        assert q(other, _edges(20)) is not q._cache[3] or q._cache[0] is other
    with torch.inference_mode():
        assert torch.equal(q(x.clone(), _edges(20)), fake_quant_affine(x, q.lo, q.hi, 4))
