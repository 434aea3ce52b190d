"""Bring your own dataset: a user function by import path, any torch_geometric.datasets class
by name, feature normalization on every task, and one-line errors for what cannot work."""

from __future__ import annotations

import shutil
import urllib.error
from pathlib import Path

import pytest
import torch

from spaces import SpaceError, load_space
from tests.userdata import csv_graph
from trainables.baseline import baseline_key, get_baseline
from trainables.data import DatasetMissingError, UntrustedDataError, load_dataset
from trainables.sources import DatasetSourceError
from trainables.tasks import CrossValidation, build_task

TRAINING = {"epochs": 2, "lr": 0.01, "weight_decay": 0.0}
NODES = {"function": "tests.userdata.csv_graph:load", "split": "random", "num_val": 10,
         "num_test": 10}
LINK = {"function": "tests.userdata.csv_graph:load", "kwargs": {"labels": False},
        "split": "random", "val_ratio": 0.1, "test_ratio": 0.2}
GRAPHS = {"function": "tests.userdata.graphs:rings_and_stars", "kwargs": {"count": 40},
          "split": "stratified", "val_ratio": 0.2, "test_ratio": 0.2, "batch_size": 8}


@pytest.fixture
def csv_root(tmp_path) -> Path:
    """A data root holding my_graph/nodes.csv and my_graph/edges.csv (60 nodes, 5 features,
    3 classes)."""
    csv_graph.write(tmp_path)
    return tmp_path


def _baseline(task, task_name, dataset, model, cache):
    baseline, cached = get_baseline(task, task_name, dataset, {"name": model, "kwargs": {}},
                                    TRAINING, 0, cache, progress=False)
    assert not cached
    return baseline


def test_node_classification_from_two_csv_files(csv_root, tmp_path):
    task = build_task("node_classification", NODES, csv_root, seed=0)
    assert (task.num_features, task.num_classes, task.num_nodes) == (5, 3, 60)
    assert [int(m.sum()) for m in (task.train_mask, task.val_mask, task.test_mask)] == [40, 10,
                                                                                       10]
    assert not (task.train_mask & task.val_mask).any()
    rows = (csv_root / "my_graph" / "nodes.csv").read_text().splitlines()[1:]
    _, label, *features = next(r for r in rows if r.startswith("7,")).split(",")
    assert int(task.y[7]) == int(label)  # rows in any order: node ids decide
    assert torch.allclose(task.x[7], torch.tensor([float(f) for f in features]))
    baseline = _baseline(task, "node_classification", NODES, "gcn", tmp_path / "cache")
    assert 0.0 <= baseline.metrics["val_acc"] <= 1.0 and baseline.num_features == 5
    again = build_task("node_classification", NODES, csv_root, seed=0)
    assert torch.equal(again.val_mask, task.val_mask), "the random split is seeded"


def test_public_split_uses_the_graphs_own_masks_and_needs_them(csv_root):
    with pytest.raises(DatasetSourceError, match=r"split 'public' needs the graph's own "
                       r"train_mask, val_mask and test_mask .* use split: random"):
        build_task("node_classification", {"function": NODES["function"]}, csv_root)
    public = {"function": "tests.userdata.csv_graph:load_public", "split": "public"}
    task = build_task("node_classification", public, csv_root)
    assert [int(m.sum()) for m in (task.train_mask, task.val_mask, task.test_mask)] == [30, 15,
                                                                                       15]


def test_cache_keys_hold_the_function_and_its_kwargs():
    keys = {baseline_key("node_classification", d, {"name": "gcn"}, TRAINING, 0) for d in (
        NODES, {**NODES, "kwargs": {"folder": "other"}},
        {**NODES, "function": "tests.userdata.csv_graph:load_public"},
        {**NODES, "normalize_features": True})}
    assert len(keys) == 4


def test_link_prediction_from_a_function(csv_root, tmp_path):
    task = build_task("link_prediction", LINK, csv_root, seed=0)
    graph = csv_graph.load(csv_root, labels=False)
    assert task.num_features == 5 and task.num_nodes == 60
    undirected = graph.edge_index.size(1) // 2
    val_pos = int(task.val_labels.sum())
    assert val_pos == int(0.1 * undirected) and task.val_labels.numel() == 2 * val_pos
    _baseline(task, "link_prediction", LINK, "gae", tmp_path / "cache")


@pytest.mark.parametrize("function", ["tests.userdata.graphs:rings_and_stars",
                                      "tests.userdata.graphs:as_dataset"])
def test_graph_classification_from_a_list_or_a_dataset(function, tmp_path):
    dataset = {**GRAPHS, "function": function}
    task = build_task("graph_classification", dataset, tmp_path, seed=0)
    assert (task.num_features, task.num_classes) == (3, 2)
    assert (len(task.train), task.val.num_graphs, task.test.num_graphs) == (24, 8, 8)
    baseline = _baseline(task, "graph_classification", dataset, "gin", tmp_path / "cache")
    assert "val_acc" in baseline.metrics


def test_graph_classification_kfold_from_a_function(tmp_path):
    dataset = {**GRAPHS, "split": "kfold", "folds": 4}
    del dataset["test_ratio"]
    task = build_task("graph_classification", dataset, tmp_path, seed=0)
    assert isinstance(task, CrossValidation) and len(task.folds) == 4
    assert {f.test.num_graphs for f in task.folds} == {10}


def test_pyg_class_reads_planetoid_cora_from_its_folder(data_root, tmp_path):
    shutil.copytree(data_root / "Cora" / "raw", tmp_path / "Planetoid" / "Cora" / "raw")
    pyg = {"loader": "pyg", "class": "Planetoid", "name": "Cora", "split": "public"}
    task = build_task("node_classification", pyg, tmp_path)
    builtin = build_task("node_classification", {"loader": "planetoid", "name": "Cora"},
                         data_root)
    assert (task.num_features, task.num_classes) == (1433, 7)
    assert torch.equal(task.x, builtin.x) and torch.equal(task.train_mask, builtin.train_mask)
    assert (tmp_path / "Planetoid" / "Cora" / "processed").is_dir()


def test_pyg_planetoid_raw_pickles_are_checked_as_the_builtin_ones(data_root, tmp_path):
    raw = tmp_path / "Planetoid" / "Cora" / "raw"
    shutil.copytree(data_root / "Cora" / "raw", raw)
    (raw / "ind.cora.x").write_bytes(b"not the known pickle")
    with pytest.raises(UntrustedDataError, match=r"ind.cora.x is not the known Cora file"):
        build_task("node_classification", {"loader": "pyg", "class": "Planetoid",
                                           "name": "Cora"}, tmp_path)


def test_pyg_class_reads_tudataset_proteins(data_root, tmp_path):
    shutil.copytree(data_root / "PROTEINS" / "raw", tmp_path / "TUDataset" / "PROTEINS" / "raw")
    split = {"split": "stratified", "val_ratio": 0.1, "test_ratio": 0.1}
    task = build_task("graph_classification",
                      {"loader": "pyg", "class": "TUDataset", "name": "PROTEINS", **split},
                      tmp_path)
    builtin = build_task("graph_classification", {"loader": "tu", "name": "PROTEINS", **split},
                         data_root)
    assert (task.num_features, task.num_classes) == (builtin.num_features, 2) == (3, 2)
    assert torch.equal(task.test.x, builtin.test.x)
    with_attr = build_task("graph_classification", {
        "loader": "pyg", "class": "TUDataset", "name": "PROTEINS", "kwargs":
        {"use_node_attr": True}, **split}, tmp_path)
    assert with_attr.num_features == 4  # kwargs reach the class


def test_pyg_class_without_raw_files(tmp_path):
    dataset = {"loader": "pyg", "class": "FakeDataset", "kwargs": {
        "num_graphs": 30, "avg_num_nodes": 8, "num_channels": 4, "num_classes": 2}}
    task = build_task("graph_classification", dataset, tmp_path)
    assert (task.num_features, task.num_classes) == (4, 2)


def test_pyg_class_offline_names_the_folder_and_raw_files(tmp_path, monkeypatch):
    def offline(*args, **kwargs):
        raise urllib.error.URLError("no network")

    monkeypatch.setattr("torch_geometric.datasets.Amazon.download", offline)
    dataset = {"loader": "pyg", "class": "Amazon", "name": "Photo", "split": "random",
               "num_val": 500, "num_test": 500}
    with pytest.raises(DatasetMissingError) as info:
        build_task("node_classification", dataset, tmp_path)
    message = str(info.value)
    assert str(tmp_path / "Amazon" / "Photo" / "raw") in message, message
    assert "amazon_electronics_photo.npz" in message and "--data-root" in message
    assert "\n" not in message


@pytest.mark.parametrize(("dataset", "message"), [
    ({"loader": "pyg", "class": "Amazonn", "name": "Photo"},
     r"dataset.class 'Amazonn' is not a torch_geometric.datasets class; did you mean Amazon"),
    ({"loader": "pyg", "name": "Photo"}, r"dataset.loader pyg needs class"),
    ({"loader": "planetoid", "name": "Cora", "class": "Planetoid"},
     r"dataset.class applies only to loader: pyg or to a function"),
    ({"loader": "pyg", "class": "FakeDataset", "name": "x"},
     r"dataset.name: torch_geometric.datasets.FakeDataset takes no name"),
    ({"loader": "pyg", "class": "KarateClub", "kwargs": {"colour": 3}},
     r"torch_geometric.datasets.KarateClub\(colour=3\) cannot be built \(TypeError: .*"
     r"'colour'\); check dataset.name and dataset.kwargs"),
    ({"loader": "pyg", "class": "FakeDataset"},  # one graph of node labels
     r"dataset FakeDataset: graph 0 has \d+ labels \(y\); task 'graph_classification' needs "
     r"one label per graph"),
])
def test_bad_pyg_sources_are_one_line(dataset, message, tmp_path):
    with pytest.raises(ValueError, match=message) as info:
        build_task("graph_classification", dataset, tmp_path)
    assert "\n" not in str(info.value)


@pytest.mark.parametrize("task_name", ["node_classification", "link_prediction",
                                       "graph_classification"])
def test_normalize_features_applies_on_every_task(task_name, csv_root):
    dataset = {"node_classification": NODES, "link_prediction": LINK,
               "graph_classification": GRAPHS}[task_name]
    plain = build_task(task_name, dataset, csv_root, seed=0)
    scaled = build_task(task_name, {**dataset, "normalize_features": True}, csv_root, seed=0)
    xs = [(plain.x, scaled.x)] if task_name != "graph_classification" else [
        (a.x, b.x) for a, b in zip(plain.train, scaled.train, strict=True)]
    for before, after in xs:
        assert not torch.allclose(before, after)
        assert torch.allclose(after.sum(dim=1), torch.ones(after.size(0)))
        assert torch.allclose(after * before.sum(dim=1, keepdim=True), before, atol=1e-5)


def test_normalize_features_refuses_negative_features(tmp_path):
    with pytest.raises(DatasetSourceError, match=r"normalize_features needs features >= 0; "
                       r"the graph of tests.userdata.broken:negative_features has -1"):
        build_task("link_prediction", {"function": f"{F}:negative_features",
                                       "normalize_features": True}, tmp_path)


def test_normalize_features_on_cora_is_pygs_transform(data_root):
    from torch_geometric.transforms import NormalizeFeatures

    dataset = {"loader": "planetoid", "name": "Cora", "normalize_features": True}
    task = build_task("node_classification", dataset, data_root)
    expected = NormalizeFeatures()(load_dataset("planetoid", "Cora", data_root)[0]).x
    assert torch.equal(task.x, expected)


def _space(tmp_path: Path, dataset: str, task: str = "node_classification",
           model: str = "gcn") -> Path:
    path = tmp_path / "space.yaml"
    path.write_text(f"task: {task}\ndataset: {dataset}\nmodel: {{name: {model}}}\n"
                    "objectives: {val_acc: max}\nspace: {prune.method: [global, none]}\n")
    return path


def test_space_files_name_a_function_or_a_pyg_class(tmp_path):
    space = load_space(_space(tmp_path, "{function: 'tests.userdata.csv_graph:load', kwargs: "
                                        "{folder: g}, split: random, num_val: 5, num_test: 5, "
                                        "normalize_features: true}"))
    assert space.dataset.as_dict() == {
        "function": "tests.userdata.csv_graph:load", "kwargs": {"folder": "g"},
        "split": "random", "num_val": 5, "num_test": 5, "normalize_features": True}
    assert space.dataset.label == "tests.userdata.csv_graph:load"
    space = load_space(_space(tmp_path, "{loader: pyg, class: Amazon, name: Photo, split: "
                                        "random, num_val: 5, num_test: 5}"))
    assert space.dataset.as_dict()["class"] == "Amazon" and space.dataset.label == "Amazon/Photo"
    plain = load_space(_space(tmp_path, "{loader: planetoid, name: Cora}"))
    assert "normalize_features" not in plain.dataset.as_dict(), "unset: not in cache keys"
    with pytest.raises(SpaceError, match=r"dataset: unknown key 'clas'; did you mean 'class'"):
        load_space(_space(tmp_path, "{loader: pyg, clas: Amazon, name: Photo}"))


# ---- bad input: one line each, naming the function and what the task expects ---------------

F = "tests.userdata.broken"
BAD_AT_LOAD = [  # refused when the space file loads (before any data)
    ("{function: 'tests.userdata.nope:load'}", r"dataset.function 'tests.userdata.nope:load' "
     r"cannot be imported \(ModuleNotFoundError: No module named 'tests.userdata.nope'\); give "
     r"a module on the Python path"),
    (f"{{function: '{F}:absent'}}", r"module 'tests.userdata.broken' has no 'absent'"),
    (f"{{function: '{F}:NOT_A_FUNCTION'}}", r"is a int, not a function"),
    ("{function: 'tests.userdata.broken'}", r"is not an import path; expected "
     r"'package.module:function'"),
    (f"{{function: '{F}:raises', loader: planetoid}}", r"dataset.function cannot be given with "
     r"dataset.loader: data comes from a function or from a loader; remove one"),
    (f"{{function: '{F}:raises', name: Cora}}", r"dataset.function cannot be given with "
     r"dataset.name"),
    ("{split: public}", r"dataset needs a source: a loader \(planetoid, tu, moleculenet, pyg\)"),
]


@pytest.mark.parametrize(("dataset", "message"), BAD_AT_LOAD)
def test_bad_dataset_sources_are_refused_when_the_space_loads(tmp_path, dataset, message):
    with pytest.raises(SpaceError, match=message) as info:
        load_space(_space(tmp_path, dataset))
    assert "\n" not in str(info.value)


BAD_AT_BUILD = [  # refused when the data is built (the search's pre-flight)
    ("node_classification", {"function": f"{F}:raises"}, r"dataset.function "
     r"tests.userdata.broken:raises raised RuntimeError: nodes.csv: column 'label' is missing; "
     r"fix the function or its dataset.kwargs"),
    ("node_classification", {"function": f"{F}:wrong_type"}, r"dataset.function "
     r"tests.userdata.broken:wrong_type returned dict; task 'node_classification' expects one "
     r"torch_geometric.data.Data graph"),
    ("graph_classification", {"function": f"{F}:no_labels"}, r"returned "
     r"torch_geometric.data.data.Data; task 'graph_classification' expects a PyG dataset or a "
     r"list of torch_geometric.data.Data graphs"),
    ("node_classification", {"function": f"{F}:no_labels", "split": "random", "num_val": 2,
                             "num_test": 2},
     r"the graph of tests.userdata.broken:no_labels has no labels \(y\); task "
     r"'node_classification' needs an integer class in y"),
    ("node_classification", {"function": f"{F}:fractional_labels"},
     r"labels \(y\) must be classes 0, 1, 2, ...; task 'node_classification' needs integer"),
    ("graph_classification", {"function": f"{F}:mixed_features"},
     r"dataset tests.userdata.broken:mixed_features: graph 7 has 5 node features, graph 0 has "
     r"3; every graph needs the same features"),
    ("node_classification", {"function": "tests.userdata.csv_graph:load", "kwargs":
                             {"colour": 1}}, r"raised TypeError: load\(\) got an unexpected "
     r"keyword argument 'colour'"),
]


@pytest.mark.parametrize(("task_name", "dataset", "message"), BAD_AT_BUILD,
                         ids=[f"{c[0]}-{c[1]['function'].split(':')[1]}" for c in BAD_AT_BUILD])
def test_bad_dataset_functions_are_one_line(task_name, dataset, message, csv_root):
    with pytest.raises(DatasetSourceError, match=message) as info:
        build_task(task_name, dataset, csv_root)
    assert "\n" not in str(info.value)


def test_link_prediction_needs_no_labels_but_features(tmp_path):
    with pytest.raises(DatasetSourceError, match=r"has no node features \(x of shape "):
        build_task("link_prediction", {"function": f"{F}:no_features"}, tmp_path)
    with pytest.raises(DatasetSourceError, match=r"dataset tests.userdata.broken:"
                       r"unlabelled_graphs: graph 4 has no labels \(y\)"):
        build_task("graph_classification", {"function": f"{F}:unlabelled_graphs"}, tmp_path)
