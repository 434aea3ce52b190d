"""Structured pruning: channel groups found by torch-pruning's DependencyGraph on any model
built from the layers it has pruners for; zeroed channels are removed exactly, and a model
file replays the removal on the original class."""

from __future__ import annotations

import warnings

import pytest
import torch
import torch.nn.functional as F
from torch import nn
from torch_geometric.nn import ChebConv, GATConv, GINConv, SAGEConv, global_add_pool

from trainables.compressed import load_compressed
from trainables.cycle import bake_parametrizations
from trainables.model_file import save_model
from trainables.models import MODELS, build_model, compression_targets
from trainables.params import check_fit
from trainables.pruning import apply_masks, compute_masks
from trainables.structured import (
    channel_groups,
    input_spec,
    probe_inputs,
    registered_support,
    remove_zero_channels,
    replay_removal,
    structured_support,
    synthetic_inputs,
)

warnings.filterwarnings("ignore", module="torch_pruning")


class SAGE(nn.Module):
    """A user's model: two SAGEConv layers and a linear head."""

    def __init__(self, num_features: int, num_classes: int, widths=(12, 10)) -> None:
        super().__init__()
        self.conv1 = SAGEConv(num_features, widths[0])
        self.conv2 = SAGEConv(widths[0], widths[1])
        self.head = nn.Linear(widths[1], num_classes)

    def forward(self, x, edge_index, edge_attr=None):
        x = F.relu(self.conv1(x, edge_index))
        return self.head(F.relu(self.conv2(x, edge_index)))


class GINUser(nn.Module):
    """A user's GIN with no ``hidden`` argument: widths per layer."""

    def __init__(self, num_features: int, num_classes: int, widths=(8, 6)) -> None:
        super().__init__()
        a, b = widths
        self.conv1 = GINConv(nn.Sequential(nn.Linear(num_features, a), nn.BatchNorm1d(a),
                                           nn.ReLU(), nn.Linear(a, a)))
        self.conv2 = GINConv(nn.Sequential(nn.Linear(a, b), nn.ReLU(), nn.Linear(b, b)))
        self.out = nn.Linear(a + b, num_classes)

    def forward(self, x, edge_index, batch):
        h1 = F.relu(self.conv1(x, edge_index))
        h2 = F.relu(self.conv2(h1, edge_index))
        return self.out(torch.cat([global_add_pool(h1, batch), global_add_pool(h2, batch)], -1))


class GAT(nn.Module):
    def __init__(self, num_features: int, num_classes: int, heads: int = 1) -> None:
        super().__init__()
        self.conv1 = GATConv(num_features, 8, heads=heads, residual=True)
        self.conv2 = GATConv(8 * heads, num_classes)

    def forward(self, x, edge_index, edge_attr=None):
        return self.conv2(F.elu(self.conv1(x, edge_index)), edge_index)


TASK_OF = {"spline": "node_classification", "gcn": "node_classification",
           "ness": "link_prediction", "gae": "link_prediction",
           "gin": "graph_classification", "graph_gcn": "graph_classification",
           "hgpsl": "graph_classification"}
SMALL = {"spline": {"hidden": 16}, "gcn": {"hidden": 16}, "gae": {"hidden": 16, "out": 6},
         "gin": {"hidden": 16, "layers": 2}, "graph_gcn": {"hidden": 16, "layers": 2}}
# the producers of hidden channels each model's groups are rooted at
GROUPS = {
    "spline": {"conv1"}, "gcn": {"conv1"}, "gae": {"conv1"},
    "gin": {"convs.0.nn.0", "convs.0.nn.3", "convs.1.nn.0", "convs.1.nn.3", "lin1"},
    "graph_gcn": {"convs.0", "convs.1"},
    "sage": {"conv1", "conv2"}, "gat": {"conv1"},
    "gin_user": {"conv1.nn.0", "conv1.nn.3", "conv2.nn.0", "conv2.nn.2"},
}
REFUSED = {"ness": "no hidden channels", "hgpsl": "'pool1' (HGPSLPool)"}


def _model(name: str) -> tuple[nn.Module, tuple]:
    torch.manual_seed(0)
    if name == "sage":
        return SAGE(5, 3).eval(), probe_inputs("node_classification", 5)
    if name == "gat":
        return GAT(5, 3).eval(), probe_inputs("node_classification", 5)
    if name == "gin_user":
        return GINUser(5, 3).eval(), probe_inputs("graph_classification", 5)
    return build_model(name, 5, 3, **SMALL[name]).eval(), probe_inputs(TASK_OF[name], 5)


def test_every_registered_model_is_classified():
    assert set(MODELS) == set(SMALL) | set(REFUSED)


@pytest.mark.parametrize("name", list(GROUPS))
def test_groups_are_found(name):
    model, inputs = _model(name)
    groups = channel_groups(model, inputs)
    assert {g.producer for g in groups} == GROUPS[name]
    params = dict(model.named_parameters())
    for group in groups:
        assert f"{group.producer}.weight" in {m.name for m in group.members} or (
            f"{group.producer}.lin.weight" in {m.name for m in group.members}) or (
            f"{group.producer}.lin_l.weight" in {m.name for m in group.members})
        for m in group.members:
            assert m.index.numel() == m.channel.numel() > 0
            assert int(m.index.max()) < params[m.name].shape[m.axis]
            assert set(m.channel.tolist()) == set(range(group.size)), f"{m.name}: a channel"
    if name == "gin":  # the readout concatenates every block: lin1 is indexed at an offset
        member = next(m for g in groups if g.producer == "convs.1.nn.3" for m in g.members
                      if m.name == "lin1.weight")
        assert member.axis == 1 and member.index.tolist() == list(range(16, 32))


@pytest.mark.parametrize("name", list(REFUSED))
def test_refused_models_name_the_reason(name):
    reason = registered_support(TASK_OF[name], {"name": name, "kwargs": {"hidden": 16}})
    assert reason is not None and REFUSED[name] in reason
    refusal = r"prune.method='structured' cannot run.*; allowed: none, global"
    with pytest.raises(ValueError, match=refusal):
        check_fit({"prune.method": "structured"}, False, lambda: reason)


class Cheb(nn.Module):
    def __init__(self, num_features: int, num_classes: int) -> None:
        super().__init__()
        self.conv1 = ChebConv(num_features, 8, K=2)
        self.lin = nn.Linear(8, num_classes)

    def forward(self, x, edge_index, edge_attr=None):
        return self.lin(F.relu(self.conv1(x, edge_index)))


def test_a_layer_without_a_pruner_is_named():
    reason = structured_support(Cheb(5, 3), probe_inputs("node_classification", 5))
    assert reason is not None and "'conv1' (ChebConv)" in reason and "no channel pruner" in reason


def test_gat_with_several_heads_is_refused():
    reason = structured_support(GAT(5, 3, heads=2), probe_inputs("node_classification", 5))
    assert reason is not None and "'conv1' (GATConv)" in reason and "heads=2" in reason


@pytest.mark.parametrize("name", list(GROUPS))
@pytest.mark.parametrize("sparsity", [0.25, 0.5, 0.9])
def test_removal_is_exact_smaller_and_replays(name, sparsity):
    model, inputs = _model(name)
    groups = channel_groups(model, inputs)
    targets = compression_targets(model)
    before = sum(t.tensor.numel() for t in targets.values())
    apply_masks(model, compute_masks("structured", model, targets, sparsity, groups=groups))
    bake_parametrizations(model)
    expected = model(*inputs)
    record = remove_zero_channels(model, inputs)
    for group in groups:
        kept, total = record["sizes"][group.producer]
        assert total == group.size and kept == group.size - min(round(sparsity * total),
                                                                 total - 1)
        assert len(record["removed"].get(group.producer, [])) == total - kept
    torch.testing.assert_close(model(*inputs), expected, rtol=1e-5, atol=1e-5)
    after = sum(t.tensor.numel() for t in compression_targets(model).values())
    assert after < before
    # the original class, rebuilt and replayed, holds the smaller model's state
    fresh, _ = _model(name)
    replay_removal(fresh, record)
    fresh.load_state_dict(model.state_dict())
    torch.testing.assert_close(fresh.eval()(*inputs), expected, rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("name", list(GROUPS))
def test_channel_masks_cover_whole_groups(name):
    model, inputs = _model(name)
    groups = channel_groups(model, inputs)
    masks = compute_masks("structured", model, compression_targets(model), 0.5, groups=groups)
    assert set(masks) == {m.name for g in groups for m in g.members}
    for group in groups:
        keep = None
        for m in group.members:
            mask = masks[m.name].movedim(m.axis, 0)
            per_slice = mask.reshape(mask.shape[0], -1)[m.index]
            channel_keep = torch.zeros(group.size, dtype=torch.bool)
            channel_keep[m.channel] = per_slice.any(dim=1)  # a dropped channel: all zero
            keep = channel_keep if keep is None else keep
            assert torch.equal(channel_keep, keep), f"{m.name}: another channel set"
        assert int((~keep).sum()) == round(0.5 * group.size)


def test_never_removes_every_channel():
    model, inputs = _model("gcn")
    groups = channel_groups(model, inputs)
    apply_masks(model, compute_masks("structured", model, compression_targets(model), 0.99,
                                     groups=groups))
    bake_parametrizations(model)
    assert remove_zero_channels(model, inputs)["sizes"] == {"conv1": [1, 16]}


def test_structured_needs_groups():
    model, _ = _model("gcn")
    with pytest.raises(ValueError, match="channel groups"):
        compute_masks("structured", model, compression_targets(model), 0.5)


def test_input_spec_shrinks_the_graph():
    x, edge_index = torch.rand(500, 7), torch.randint(0, 500, (2, 3000))
    batch = torch.zeros(500, dtype=torch.long)
    spec = input_spec((x, edge_index, torch.rand(3000, 2), batch))
    assert [s["shape"] for s in spec] == [[24, 7], [2, 96], [96, 2], [24]]
    a, b = synthetic_inputs(spec), synthetic_inputs(spec)
    assert all(torch.equal(u, v) for u, v in zip(a, b, strict=True))
    assert int(a[1].max()) < 24 and a[3].tolist() == sorted(a[3].tolist())


def _save(tmp_path, name: str, model: nn.Module, extra: dict) -> str:
    path = tmp_path / "m.gnnz"
    meta = {"model": {"name": name, "kwargs": SMALL[name]}, "num_features": 5,
            "num_classes": 3, "activation_quant": None, **extra}
    save_model(path, model.state_dict(), {}, meta)
    return path


def test_model_file_replays_the_removal(tmp_path):
    model, inputs = _model("gin")
    groups = channel_groups(model, inputs)
    apply_masks(model, compute_masks("structured", model, compression_targets(model), 0.5,
                                     groups=groups))
    bake_parametrizations(model)
    expected = model(*inputs)
    record = remove_zero_channels(model, inputs)
    loaded, meta = load_compressed(_save(tmp_path, "gin", model, {"structured": record}))
    assert meta["structured"]["removed"] == record["removed"]
    torch.testing.assert_close(loaded(*inputs), expected, rtol=1e-5, atol=1e-5)
    assert sum(p.numel() for p in loaded.parameters()) == sum(
        p.numel() for p in model.parameters())


def test_old_files_with_narrower_kwargs_still_load(tmp_path):
    """Files written before the replay carry the smaller width as a constructor argument."""
    torch.manual_seed(0)
    model = build_model("gcn", 5, 3, hidden=9).eval()
    path = tmp_path / "m.gnnz"
    save_model(path, model.state_dict(), {}, {"model": {"name": "gcn", "kwargs": {"hidden": 9}},
                                              "num_features": 5, "num_classes": 3})
    loaded, _ = load_compressed(path)
    inputs = probe_inputs("node_classification", 5)
    torch.testing.assert_close(loaded(*inputs), model(*inputs))
