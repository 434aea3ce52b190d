"""Structured pruning zeroes whole hidden channels, then torch-pruning removes them exactly."""

from __future__ import annotations

import warnings

import pytest
import torch

from trainables.cycle import bake_parametrizations
from trainables.models import build_model, channel_groups, compression_targets
from trainables.pruning import apply_masks, compute_masks
from trainables.structured import remove_zero_channels


def _graph(num_features: int):
    gen = torch.Generator().manual_seed(0)
    x = torch.randn(40, num_features, generator=gen)
    edge_index = torch.randint(0, 40, (2, 160), generator=gen)
    return x, edge_index, torch.rand(160, 1, generator=gen)


@pytest.mark.parametrize("name", ["spline", "gcn"])
@pytest.mark.parametrize("sparsity", [0.25, 0.5, 0.9])
def test_removal_is_exact_and_smaller(name, sparsity):
    warnings.filterwarnings("ignore")
    torch.manual_seed(0)
    model = build_model(name, 12, 3, hidden=16).eval()
    inputs = _graph(12)
    targets = compression_targets(model)
    before = sum(t.tensor.numel() for t in targets.values())
    masks = compute_masks("structured", model, targets, sparsity)
    apply_masks(model, masks)
    bake_parametrizations(model)
    expected = model(*inputs)
    sizes = remove_zero_channels(model, inputs)
    removed = round(sparsity * 16)
    assert sizes == {"hidden": 16 - removed}
    torch.testing.assert_close(model(*inputs), expected, rtol=1e-5, atol=1e-6)
    after = sum(t.tensor.numel() for t in compression_targets(model).values())
    assert after / before == pytest.approx((16 - removed) / 16, abs=0.01)
    # the smaller model is rebuilt from its constructor arguments and the saved state
    rebuilt = build_model(name, 12, 3, hidden=sizes["hidden"])
    rebuilt.load_state_dict(model.state_dict())
    torch.testing.assert_close(rebuilt.eval()(*inputs), expected, rtol=1e-5, atol=1e-6)


def test_channel_masks_cover_whole_groups():
    model = build_model("spline", 12, 3, hidden=8)
    masks = compute_masks("structured", model, compression_targets(model), 0.5)
    group = channel_groups(model)[0]
    assert set(masks) == {name for name, _ in group.members}
    dropped = ~masks["conv1.bias"]
    assert int(dropped.sum()) == 4
    assert torch.equal(~masks["conv1.weight"][0, 0, :], dropped)
    assert torch.equal(~masks["conv2.weight"][0, :, 0], dropped)


def test_never_removes_every_channel():
    model = build_model("gcn", 12, 3, hidden=4).eval()
    masks = compute_masks("structured", model, compression_targets(model), 0.99)
    assert int(masks["conv1.bias"].sum()) == 1
    apply_masks(model, masks)
    bake_parametrizations(model)
    assert remove_zero_channels(model, _graph(12)) == {"hidden": 1}
