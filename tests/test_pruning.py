"""Pruning reaches the exact sparsity asked, and masks hold through fine-tuning."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from trainables.models import compression_targets, zero_fraction
from trainables.pruning import PENALTIES, PRUNERS, apply_masks, compute_masks, sparsity_at

# Every registered method ranks single weights, except these (each tested where it fits):
NOT_PER_WEIGHT = {
    "none": "prunes nothing (test_none_prunes_nothing)",
    "structured": "whole channels of traced channel groups (tests/test_structured.py)",
}
PER_WEIGHT = [m for m in PRUNERS if m not in NOT_PER_WEIGHT]


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


def test_the_exceptions_are_registered_methods():
    assert set(NOT_PER_WEIGHT) <= set(PRUNERS), "a method left out here is no longer registered"
    assert PER_WEIGHT, "no per-weight method is registered"


@pytest.mark.parametrize("method", PER_WEIGHT)
@pytest.mark.parametrize("sparsity", [0.0, 0.3, 0.5, 0.9, 0.99])
def test_exact_sparsity(method, sparsity):
    model = _model()
    targets = compression_targets(model)
    masks = compute_masks(method, model, targets, sparsity)
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
    masks = compute_masks("global", model, targets, 0.5)
    assert masks["b.weight"].all(), "global ranking must prune the small tensor first"
    assert not masks["a.weight"].all()


def test_magnitude_keeps_the_largest():
    model = _model()
    targets = compression_targets(model)
    masks = compute_masks("fine_grained", model, targets, 0.7)
    w = model.a.weight.detach().abs()
    assert w[masks["a.weight"]].min() >= w[~masks["a.weight"]].max()


def test_none_prunes_nothing():
    model = _model()
    assert compute_masks("none", model, compression_targets(model), 0.5) == {}


@pytest.mark.parametrize("method", PER_WEIGHT)
def test_masks_hold_through_fine_tuning(method):
    model = _model()
    targets = compression_targets(model)
    masks = compute_masks(method, model, targets, 0.8)
    apply_masks(model, masks)
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
    model = _model()
    targets = compression_targets(model)
    with pytest.raises(ValueError, match="unknown pruning method 'magic'; allowed: none"):
        compute_masks("magic", model, targets, 0.5)
    with pytest.raises(ValueError, match=r"sparsity must be in \[0, 1\), got 1.0"):
        compute_masks("global", model, targets, 1.0)
    with pytest.raises(ValueError, match="unknown pruning schedule 'linear'; allowed: one_shot"):
        sparsity_at(1, 0, 10, 0.5, "linear")


def test_random_is_not_magnitude_and_is_seeded():
    model = _model()
    targets = compression_targets(model)
    a = compute_masks("random", model, targets, 0.5, seed=1)
    b = compute_masks("random", model, targets, 0.5, seed=1)
    c = compute_masks("random", model, targets, 0.5, seed=2)
    assert all(torch.equal(a[k], b[k]) for k in a)
    assert not all(torch.equal(a[k], c[k]) for k in a)
    magnitude = compute_masks("global", model, targets, 0.5)
    assert not all(torch.equal(a[k], magnitude[k]) for k in a)


def test_gradual_schedule_is_cubic_monotone_and_reaches_target():
    values = [sparsity_at(e, 0, 20, 0.9, "gradual") for e in range(1, 21)]
    assert values == sorted(values) and values[0] > 0
    assert values[14] == pytest.approx(0.9) and values[-1] == pytest.approx(0.9)  # 75% of 20
    # cubic: most pruning happens early
    assert values[4] > 0.9 * (5 / 15)
    assert [sparsity_at(e, 0, 20, 0.9, "one_shot") for e in (1, 20)] == [0.9, 0.9]
    # after a regularization phase (start=10) nothing is pruned before epoch 11
    assert sparsity_at(10, 10, 20, 0.9, "one_shot") == 0.0
    assert sparsity_at(11, 10, 20, 0.9, "one_shot") == 0.9


def test_gradual_masks_are_nested():
    model = _model()
    targets = compression_targets(model)
    previous = None
    for sparsity in (0.2, 0.5, 0.8):
        masks = compute_masks("global", model, targets, sparsity)
        apply_masks(model, masks)
        if previous is not None:
            assert all(torch.all(masks[k] <= previous[k]) for k in masks)
        previous = masks


@pytest.mark.parametrize("kind", PENALTIES)
def test_regularization_penalty_drives_weights_down(kind):
    from trainables.pruning import penalty

    model = _model()
    targets = compression_targets(model)
    before = penalty(targets, kind).item()
    optimizer = torch.optim.SGD(model.parameters(), lr=0.01)
    for _ in range(50):
        optimizer.zero_grad()
        penalty(targets, kind).backward()
        optimizer.step()
    assert penalty(targets, kind).item() < 0.8 * before
    with pytest.raises(ValueError, match="unknown penalty 'l3'"):
        penalty(targets, "l3")
