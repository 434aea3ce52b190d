"""Space files of every task: the bundled ones load, and what a task or model cannot do is
refused at load time with one line naming the value and what is allowed."""

from __future__ import annotations

import pytest

from spaces import SpaceError, load_space
from spaces.loader import bundled_spaces

GRAPH = """
task: graph_classification
dataset: {loader: tu, name: PROTEINS, split: stratified, metric: acc}
model: {name: gin}
objectives: {val_acc: max, size_bytes: min}
space:
  prune.method: [global, none]
  prune.sparsity: {low: 0.3, high: 0.9}
  quant.method: [qat, fp32]
  quant.bits: [8, 4]
"""
LINK = """
task: link_prediction
dataset: {loader: planetoid, name: Cora, subgraphs: 2}
model: {name: ness}
objectives: {val_roc_auc: max, size_bytes: min}
space:
  prune.method: [global, none]
  quant.method: [a2q, fp32]
  quant.bits: [8, 4]
"""


def _load(tmp_path, text):
    path = tmp_path / "space.yaml"
    path.write_text(text)
    return load_space(path)


@pytest.mark.parametrize("name", sorted(bundled_spaces()))
def test_every_bundled_space_loads(name):
    space = load_space(name)
    assert space.defaults()
    assert space.reported and all(m.startswith("test_") for m in space.reported)
    searched = [m for m in space.objectives if m.startswith("val_")]
    assert searched, "each bundled space searches a validation score"


def test_valid_task_spaces_load(tmp_path):
    assert _load(tmp_path, GRAPH).reported == ["test_acc"]
    # GIN's channel groups are found by tracing it: structured pruning runs on it
    assert _load(tmp_path, GRAPH.replace("[global, none]", "[structured, none]"))
    assert _load(tmp_path, LINK).reported == ["test_roc_auc", "test_ap"]


BAD = [
    (GRAPH.replace("[qat, fp32]", "[a2q, fp32]"),
     r"space.quant.method: quant.method='a2q' .* inductive .*allowed: fp32, ptq, qat"),
    (GRAPH.replace("[global, none]", "[structured, none]").replace("name: gin", "name: hgpsl"),
     r"space.prune.method: prune.method='structured' cannot run on this model: it cannot prune "
     r"layer 'pool1' \(HGPSLPool\): it has no channel pruner; .*; allowed: none, global"),
    (LINK.replace("[global, none]", "[structured, none]"),
     r"prune.method='structured' cannot run on this model: it finds no hidden channels .* "
     r"model NESS .*; allowed: none, global"),
    (GRAPH.replace("name: gin", "name: ness"),
     r"model 'ness' does not fit task 'graph_classification'; allowed: gin, graph_gcn, hgpsl"),
    (GRAPH.replace("split: stratified", "split: public"),
     r"dataset.split 'public' does not fit task 'graph_classification'; allowed: stratified, "
     r"kfold, scaffold"),
    (GRAPH.replace("split: stratified", "split: scaffold"),
     r"split 'scaffold' needs molecules; loader 'tu' has none"),
    (GRAPH.replace("metric: acc", "metric: f1"), r"dataset.metric: expected 'acc' or 'roc_auc' "
     r"\(got 'f1'\)"),
    (GRAPH.replace("{val_acc: max", "{val_roc_auc: max"),
     r"objective 'val_roc_auc' is not a score of task 'graph_classification' here; allowed: "
     r"val_acc"),
    (LINK.replace("val_roc_auc: max", "val_acc: max"),
     r"objective 'val_acc' is not a score of task 'link_prediction' here; allowed: val_ap, "
     r"val_roc_auc"),
    (LINK.replace("subgraphs: 2", "subgraphs: 0"), r"dataset.subgraphs: expected a number >= 1 "
     r"\(got 0\)"),
    (LINK.replace("loader: planetoid", "loader: tu"),
     r"dataset.loader 'tu' does not fit task 'link_prediction'; allowed: planetoid"),
    # dataset settings the task or its split does not read are refused, not ignored
    (LINK.replace("subgraphs: 2", "subgraphs: 2, num_val: 500"),
     r"dataset.num_val does not apply to task 'link_prediction'; allowed: loader, name, split, "
     r"val_ratio, test_ratio, subgraphs, normalize_features"),
    (GRAPH.replace("metric: acc", "metric: acc, subgraphs: 2"),
     r"dataset.subgraphs does not apply to task 'graph_classification'; allowed: loader, name, "
     r"split, val_ratio, test_ratio, folds, metric, batch_size, node_attributes"),
    (GRAPH.replace("metric: acc", "metric: acc, folds: 5"),
     r"dataset.folds applies only to split: kfold \(this split: stratified\)"),
    (GRAPH.replace("split: stratified", "split: kfold, test_ratio: 0.1"),
     r"dataset.test_ratio does not apply to split: kfold"),
]


@pytest.mark.parametrize(("text", "message"), BAD)
def test_what_a_task_or_model_cannot_do_is_refused(tmp_path, text, message):
    with pytest.raises(SpaceError, match=message) as info:
        _load(tmp_path, text)
    assert "\n" not in str(info.value)
