"""Searches on the other tasks through the unchanged search service: link prediction
(searched on val_roc_auc) and cross-validated graph classification, with Ray and MLflow."""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap

import pytest
from mlflow.tracking import MlflowClient

LINK = """
task: link_prediction
dataset: {loader: planetoid, name: Cora, split: random, val_ratio: 0.05, test_ratio: 0.1,
          subgraphs: 2}
model: {name: ness, kwargs: {hidden: 64}}
baseline: {epochs: 20, lr: 0.01, weight_decay: 0.0, seed: 0}
objectives: {val_roc_auc: max, size_bytes: min}
space:
  prune.method: [global, none]
  prune.sparsity: {low: 0.3, high: 0.9}
  quant.method: [qat, a2q, fp32]
  quant.bits: [8, 4]
  finetune.epochs: {low: 2, high: 4}
"""
PROTEINS_CV = """
task: graph_classification
dataset: {loader: tu, name: PROTEINS, split: kfold, folds: 2, metric: acc}
model: {name: gin, kwargs: {hidden: 16, layers: 2}}
baseline: {epochs: 3, lr: 0.01, weight_decay: 0.0, seed: 0}
objectives: {val_acc: max, size_bytes: min}
space:
  prune.method: [global, none]
  prune.sparsity: {low: 0.3, high: 0.9}
  quant.method: [qat, fp32]
  quant.bits: [8, 4]
  finetune.epochs: 2
"""


def _search(tmp_path, data_root, cache_dir, text, name, trials):
    space = tmp_path / f"{name}.yaml"
    space.write_text(textwrap.dedent(text))
    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    env = {**os.environ, "GNN_SEARCH_DATA": str(data_root), "GNN_SEARCH_CACHE": str(cache_dir)}
    proc = subprocess.run(
        [sys.executable, "-m", "search.cli", "run", "--space", str(space), "--trials",
         str(trials), "--concurrency", "2", "--name", name, "--tracking-uri", uri, "--storage",
         str(tmp_path / "ray"), "--energy-window", "0", "--quiet"],
        capture_output=True, text=True, cwd=tmp_path, env=env, timeout=600)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    client = MlflowClient(uri)
    experiment = client.get_experiment_by_name(name)
    runs = client.search_runs([experiment.experiment_id])
    trials_ = [r for r in runs if r.data.tags.get("gnn_search.role") == "trial"]
    parent = next(r for r in runs if r.data.tags.get("gnn_search.role") != "trial")
    return proc.stdout, client, uri, parent, trials_


@pytest.mark.integration
@pytest.mark.slow
def test_link_prediction_search(data_root, cache_dir, tmp_path):
    stdout, client, uri, parent, trials = _search(tmp_path, data_root, cache_dir, LINK,
                                                  "links", 3)
    assert "Baseline (FP32): val_roc_auc=" in stdout and "test_ap=" in stdout
    assert len(trials) == 3
    for run in trials:
        m = run.data.metrics
        assert 0.5 < m["val_roc_auc"] <= 1 and 0.5 < m["test_roc_auc"] <= 1 and "test_ap" in m
        history = client.get_metric_history(run.info.run_id, "val_roc_auc")
        assert len(history) >= 2  # per-epoch and final
    # the search started from a logged baseline: its scores and its model file
    assert "baseline_val_roc_auc" in parent.data.metrics
    artifacts = [a.path for a in client.list_artifacts(parent.info.run_id, "baseline")]
    assert len(artifacts) == 1 and artifacts[0].endswith(".gnnz")
    # the analysis reads the search's own objectives
    proc = subprocess.run([sys.executable, "-m", "search.cli", "pareto", "--experiment",
                           "links", "--tracking-uri", uri, "--format", "csv"],
                          capture_output=True, text=True, cwd=tmp_path, timeout=300)
    assert proc.returncode == 0, proc.stderr
    header = proc.stdout.splitlines()[0]
    assert "val_roc_auc" in header and "test_roc_auc" in header and "val_acc" not in header


@pytest.mark.integration
@pytest.mark.slow
def test_cross_validated_graph_search(data_root, cache_dir, tmp_path):
    _, client, _, parent, trials = _search(tmp_path, data_root, cache_dir, PROTEINS_CV,
                                           "proteins-cv", 2)
    assert parent.data.params["baseline.folds"] == "2"
    assert "baseline_test_acc_std" in parent.data.metrics
    assert len(client.list_artifacts(parent.info.run_id, "baseline")) == 2
    assert len(trials) == 2
    for run in trials:
        m = run.data.metrics
        assert 0.4 < m["test_acc"] < 1 and "test_acc_std" in m
        assert run.data.tags.get("folds") == "2"  # how the figure was obtained
