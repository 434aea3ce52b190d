"""Every task x model runs a short compress-and-fine-tune cycle on its real dataset, through
the same run_cycle and registries; k-fold tasks run every fold; HGP-SL's pieces."""

from __future__ import annotations

import pytest
import torch

from tests.conftest import fast_measure
from trainables import deployment
from trainables.baseline import get_baseline
from trainables.cycle import load_compressed, run_cycle
from trainables.hgpsl import HGPSLPool, segment_sparsemax
from trainables.metrics import METRICS
from trainables.tasks import TASKS, CrossValidation, build_task

CORA_LINK = {"loader": "planetoid", "name": "Cora", "split": "random", "val_ratio": 0.05,
             "test_ratio": 0.1, "subgraphs": 2}
PROTEINS = {"loader": "tu", "name": "PROTEINS", "split": "stratified", "val_ratio": 0.1,
            "test_ratio": 0.1, "metric": "acc", "batch_size": 128}
BBBP = {"loader": "moleculenet", "name": "BBBP", "split": "scaffold", "val_ratio": 0.1,
        "test_ratio": 0.1, "metric": "roc_auc", "batch_size": 128}
CORA_PUBLIC = {"loader": "planetoid", "name": "Cora", "split": "public"}
TRAINING = {"epochs": 3, "lr": 0.01, "weight_decay": 0.0}
# one config that exercises pruning masks, fake quantization and integer storage
CONFIG = {"prune.method": "global", "prune.sparsity": 0.7, "quant.method": "qat",
          "quant.bits": 8, "finetune.epochs": 2, "finetune.lr": 0.001}

CASES = [
    ("node_classification", CORA_PUBLIC, "gcn", ["val_acc", "test_acc"]),
    ("link_prediction", CORA_LINK, "ness", ["val_roc_auc", "test_roc_auc", "test_ap"]),
    ("link_prediction", CORA_LINK, "gae", ["val_roc_auc", "test_roc_auc", "test_ap"]),
    ("graph_classification", PROTEINS, "gin", ["val_acc", "test_acc"]),
    ("graph_classification", PROTEINS, "hgpsl", ["val_acc", "test_acc"]),
    ("graph_classification", BBBP, "graph_gcn", ["val_roc_auc", "test_roc_auc", "test_acc"]),
    ("graph_classification", BBBP, "gin", ["val_roc_auc", "test_roc_auc", "test_acc"]),
    ("graph_classification", BBBP, "hgpsl", ["val_roc_auc", "test_roc_auc", "test_acc"]),
]
_TASKS: dict[str, object] = {}


def _task(name: str, dataset: dict, data_root):
    key = f"{name}:{sorted(dataset.items())}"
    if key not in _TASKS:
        _TASKS[key] = build_task(name, dataset, data_root, seed=0)
    return _TASKS[key]


@pytest.mark.parametrize(("task_name", "dataset", "model", "scores"), CASES,
                         ids=[f"{c[1]['name']}-{c[2]}" for c in CASES])
def test_each_task_and_model_runs_a_cycle(task_name, dataset, model, scores, data_root,
                                          cache_dir, tmp_path):
    task = _task(task_name, dataset, data_root)
    baseline, _ = get_baseline(task, task_name, dataset, {"name": model, "kwargs": {}},
                               TRAINING, 0, cache_dir, progress=False)
    assert task.search_metric in baseline.metrics
    reports: list[dict] = []
    result = run_cycle(CONFIG, task, baseline, reports.append, tmp_path, seed=0,
                       measure_settings=fast_measure())
    m = result.metrics
    assert [r["epoch"] for r in reports] == [1, 2]
    assert all(task.search_metric in r for r in reports)
    for score in scores:
        assert 0.0 <= m[score] <= 1.0, score
    # every score the task computes is a row of the metrics table, as the task spec says
    spec = TASKS[task_name].metrics(dataset)
    assert set(m) <= set(METRICS), sorted(set(m) - set(METRICS))
    assert {spec.searched, *spec.scores, *spec.reported} <= set(m)
    # compressed for real: 70% of the weights zero, stored as 8-bit integers, file smaller
    assert m["sparsity_actual"] >= 0.7 - 1e-3
    assert m["size_bytes"] < 0.3 * baseline.metrics["size_bytes"]
    assert m["size_bytes"] == result.model_path.stat().st_size
    assert result.tags["roundtrip"] == "exact"
    # the file alone rebuilds the deployed model, which scores exactly what the trial
    # reported; the eager reloaded model agrees but for rounding (HGP-SL's top-k pooling can
    # turn a rounding difference into another kept node: 0.8457 against 0.8459 was seen)
    reloaded, meta = load_compressed(result.model_path)
    assert meta["model"]["name"] == model
    deployed, _ = deployment.load_deployed(result.model_path, task)
    again = task.evaluate(deployed)
    assert {k: again[k] for k in scores} == {k: m[k] for k in scores}
    eager = task.evaluate(reloaded)
    assert {k: eager[k] for k in scores} == pytest.approx({k: m[k] for k in scores}, abs=0.02)


def test_cross_validated_trial_runs_every_fold(data_root, cache_dir, tmp_path):
    dataset = {**PROTEINS, "split": "kfold", "folds": 3}
    dataset.pop("test_ratio")
    task = _task("graph_classification", dataset, data_root)
    assert isinstance(task, CrossValidation) and len(task.folds) == 3
    tests = torch.cat([fold.test.y for fold in task.folds])
    assert tests.numel() == 1113  # every PROTEINS graph is tested exactly once
    model = {"name": "gin", "kwargs": {"hidden": 16, "layers": 2}}
    baseline, _ = get_baseline(task, "graph_classification", dataset, model, TRAINING, 0,
                               cache_dir, progress=False)
    assert len(baseline.folds) == 3 and "test_acc_std" in baseline.metrics
    reports: list[dict] = []
    result = run_cycle({**CONFIG, "finetune.epochs": 1}, task, baseline, reports.append,
                       tmp_path, measure_settings=fast_measure())
    assert [(r["fold"], r["epoch"]) for r in reports] == [(0, 1), (1, 2), (2, 3)]
    per_fold = [task.folds[k].evaluate(load_compressed(tmp_path / f"fold{k}" / "model.gnnz")[0])
                for k in range(3)]
    mean = sum(f["test_acc"] for f in per_fold) / 3
    assert result.metrics["test_acc"] == pytest.approx(mean)
    assert result.metrics["test_acc_std"] >= 0 and result.tags["folds"] == "3"


def test_a2q_is_refused_on_inductive_tasks(data_root, cache_dir, tmp_path):
    task = _task("graph_classification", PROTEINS, data_root)
    baseline, _ = get_baseline(task, "graph_classification", PROTEINS,
                               {"name": "gin", "kwargs": {}}, TRAINING, 0, cache_dir,
                               progress=False)
    with pytest.raises(ValueError, match="a2q.*inductive.*allowed: fp32, ptq, qat"):
        run_cycle({"quant.method": "a2q", "quant.bits": 8}, task, baseline, lambda m: None,
                  tmp_path)


def test_segment_sparsemax_is_sparsemax_per_segment():
    generator = torch.Generator().manual_seed(0)
    segment = torch.randint(0, 6, (80,), generator=generator)
    scores = torch.randn(80, generator=generator) * 3
    out = segment_sparsemax(scores, segment, 7)
    for k in range(7):
        z = scores[segment == k]
        if z.numel() == 0:
            continue
        # sparsemax = Euclidean projection onto the simplex: tau solves sum(max(z - tau, 0)) = 1
        lo, hi = float(z.min()) - 1, float(z.max())
        for _ in range(100):
            tau = (lo + hi) / 2
            lo, hi = (tau, hi) if (z - tau).clamp(min=0).sum() > 1 else (lo, tau)
        assert torch.allclose(out[segment == k], (z - tau).clamp(min=0), atol=1e-5)
    assert (out == 0).any()  # sparse, unlike softmax


def test_hgpsl_pool_keeps_half_of_each_graph_and_links_them():
    from torch_geometric.utils import to_undirected

    # two paths of 6 and 4 nodes
    edges = to_undirected(torch.tensor([[0, 1, 2, 3, 4, 6, 7, 8], [1, 2, 3, 4, 5, 7, 8, 9]]))
    batch = torch.tensor([0] * 6 + [1] * 4)
    pool = HGPSLPool(8, ratio=0.5)
    x, edge_index, weight, new_batch = pool(torch.randn(10, 8), edges, None, batch)
    assert x.shape == (5, 8) and new_batch.tolist() == [0, 0, 0, 1, 1]
    assert (new_batch[edge_index[0]] == new_batch[edge_index[1]]).all()  # within graphs
    assert (weight > 0).all()
    # every kept node's weights (itself included as a candidate) sum to 1
    sums = torch.zeros(5).index_add_(0, edge_index[0], weight)
    assert torch.allclose(sums, torch.ones(5), atol=1e-6)


def test_information_score_uses_weighted_degree():
    from trainables.hgpsl import information_score

    generator = torch.Generator().manual_seed(1)
    x = torch.randn(4, 3, generator=generator)
    edges = torch.tensor([[0, 1, 1, 2, 2, 3, 0], [1, 0, 2, 1, 3, 2, 0]])  # and a self-loop
    weight = torch.tensor([0.5, 1.0, 0.25, 2.0, 1.0, 3.0, 9.0])
    dense = torch.zeros(4, 4)
    dense[edges[0, :-1], edges[1, :-1]] = weight[:-1]  # self-loops are not neighbours
    inv = dense.sum(1).pow(-0.5)
    expected = (x - (inv[:, None] * dense * inv[None, :]) @ x).abs().sum(1)
    assert torch.allclose(information_score(x, edges, weight), expected, atol=1e-6)


def test_node_attributes_add_proteins_continuous_attribute(data_root):
    """``node_attributes: true`` (tu) puts PROTEINS' continuous attribute before its three
    one-hot labels, as HGP-SL's authors load it; other loaders refuse it by name."""
    plain = _task("graph_classification", PROTEINS, data_root)
    with_attr = _task("graph_classification", {**PROTEINS, "node_attributes": True}, data_root)
    assert (plain.num_features, with_attr.num_features) == (3, 4)
    a, b = plain.train[0], with_attr.train[0]
    assert torch.equal(b.x[:, 1:], a.x) and b.x[:, 0].abs().sum() > 0
    with pytest.raises(ValueError, match="loader 'moleculenet' has no continuous node "
                                         "attributes; allowed with: tu"):
        build_task("graph_classification", {**BBBP, "node_attributes": True}, data_root, 0)
