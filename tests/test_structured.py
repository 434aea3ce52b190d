"""Structured pruning zeroes whole hidden channels, then torch-pruning removes them exactly."""

from __future__ import annotations

import warnings

import pytest
import torch

from trainables.cycle import bake_parametrizations
from trainables.models import (
    MODELS,
    build_model,
    channel_groups,
    compression_targets,
    supports_structured,
)
from trainables.pruning import apply_masks, compute_masks
from trainables.structured import remove_zero_channels


def _graph(num_features: int):
    gen = torch.Generator().manual_seed(0)
    x = torch.randn(40, num_features, generator=gen)
    edge_index = torch.randint(0, 40, (2, 160), generator=gen)
    return x, edge_index, torch.rand(160, 1, generator=gen)


STRUCTURED = [name for name in MODELS if supports_structured(name)]


def _by_channel(mask: torch.Tensor, axis: int) -> torch.Tensor:
    """``mask`` as [channels along ``axis``, everything else]."""
    return mask.movedim(axis, 0).reshape(mask.shape[axis], -1)


def test_some_model_supports_structured_pruning():
    assert STRUCTURED, "no registered model supports structured pruning"


@pytest.mark.parametrize("name", STRUCTURED)
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


@pytest.mark.parametrize("name", STRUCTURED)
def test_channel_masks_cover_whole_groups(name):
    model = build_model(name, 12, 3, hidden=8)
    masks = compute_masks("structured", model, compression_targets(model), 0.5)
    groups = channel_groups(model)
    assert set(masks) == {member for group in groups for member, _ in group.members}
    for group in groups:
        keep = None
        for member, axis in group.members:
            per_channel = _by_channel(masks[member], axis)
            assert (per_channel == per_channel[:, :1]).all(), f"{member}: a channel is split"
            keep = per_channel[:, 0] if keep is None else keep
            assert torch.equal(per_channel[:, 0], keep), f"{member}: another channel set"
        assert int((~keep).sum()) == 4, "half of the 8 channels dropped"


@pytest.mark.parametrize("name", STRUCTURED)
def test_never_removes_every_channel(name):
    model = build_model(name, 12, 3, hidden=4).eval()
    masks = compute_masks("structured", model, compression_targets(model), 0.99)
    for group in channel_groups(model):
        member, axis = group.members[0]
        assert int(_by_channel(masks[member], axis)[:, 0].sum()) == 1
    apply_masks(model, masks)
    bake_parametrizations(model)
    assert remove_zero_channels(model, _graph(12)) == {"hidden": 1}
