"""Pruning reaches the exact sparsity asked, and masks hold through fine-tuning."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from trainables.models import compression_targets, zero_fraction
from trainables.pruning import PRUNERS, attach_masks, compute_masks


class TwoLayer(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.a = nn.Linear(40, 30)
        self.b = nn.Linear(30, 7)

    def forward(self, x):
        return self.b(torch.relu(self.a(x)))


def _model(seed: int = 0) -> nn.Module:
    torch.manual_seed(seed)
    return TwoLayer()


@pytest.mark.parametrize("method", ["global", "fine_grained"])
@pytest.mark.parametrize("sparsity", [0.0, 0.3, 0.5, 0.9, 0.99])
def test_exact_sparsity(method, sparsity):
    model = _model()
    targets = compression_targets(model)
    masks = compute_masks(method, targets, sparsity)
    total = sum(m.numel() for m in masks.values())
    pruned = sum(int((~m).sum()) for m in masks.values())
    assert pruned == round(sparsity * total) or (
        method == "fine_grained"
        and pruned == sum(round(sparsity * m.numel()) for m in masks.values())
    )
    if method == "fine_grained":
        for mask in masks.values():
            assert int((~mask).sum()) == round(sparsity * mask.numel())


def test_global_ranks_across_tensors():
    model = _model()
    with torch.no_grad():
        model.b.weight.mul_(100.0)  # b's weights are all far larger than a's
    targets = compression_targets(model)
    masks = compute_masks("global", targets, 0.5)
    assert masks["b.weight"].all(), "global ranking must prune the small tensor first"
    assert not masks["a.weight"].all()


def test_magnitude_keeps_the_largest():
    model = _model()
    targets = compression_targets(model)
    masks = compute_masks("fine_grained", targets, 0.7)
    w = model.a.weight.detach().abs()
    assert w[masks["a.weight"]].min() >= w[~masks["a.weight"]].max()


def test_none_prunes_nothing():
    assert compute_masks("none", compression_targets(_model()), 0.5) == {}


@pytest.mark.parametrize("method", ["global", "fine_grained"])
def test_masks_hold_through_fine_tuning(method):
    model = _model()
    targets = compression_targets(model)
    masks = compute_masks(method, targets, 0.8)
    attach_masks(targets, masks)
    optimizer = torch.optim.Adam(model.parameters(), lr=0.1, weight_decay=0.01)
    x, y = torch.randn(64, 40), torch.randint(0, 7, (64,))
    for _ in range(20):
        optimizer.zero_grad()
        nn.functional.cross_entropy(model(x), y).backward()
        optimizer.step()
    for name, mask in masks.items():
        weight = targets[name].tensor
        assert torch.all(weight[~mask] == 0), f"{name}: pruned weights came back"
        assert torch.any(weight[mask] != 0)
    assert zero_fraction([targets[n].tensor for n in masks]) >= 0.8 - 1e-9


def test_registry_and_bad_input():
    assert {"none", "global", "fine_grained"} <= set(PRUNERS)
    targets = compression_targets(_model())
    with pytest.raises(ValueError, match="unknown pruning method 'magic'; allowed: none"):
        compute_masks("magic", targets, 0.5)
    with pytest.raises(ValueError, match=r"sparsity must be in \[0, 1\), got 1.0"):
        compute_masks("global", targets, 1.0)
