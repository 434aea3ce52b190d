"""One --seed makes a search reproducible on one machine (concurrency 1); warm-start points
come first."""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap

import pytest
from mlflow.tracking import MlflowClient

SPACE = """
task: node_classification
dataset: {loader: planetoid, name: Cora, split: random, num_val: 500, num_test: 500}
model: {name: gcn, kwargs: {hidden: 16}}
baseline: {epochs: 30, lr: 0.01, weight_decay: 5.0e-4, seed: 0}
objectives: {val_acc: max, size_bytes: min}
space:
  prune.method: [global, random, none]
  prune.sparsity: {low: 0.3, high: 0.9}
  quant.method: [qat, fp32]
  quant.bits: [8, 4]
  finetune.epochs: {low: 2, high: 4}
  finetune.lr: {low: 1.0e-3, high: 1.0e-2, log: true}
warm_start:
  - {prune.method: global, prune.sparsity: 0.5, quant.method: qat, quant.bits: 8}
"""


@pytest.mark.integration
@pytest.mark.slow
def test_same_seed_same_trials_in_the_same_order(data_root, cache_dir, tmp_path):
    space = tmp_path / "space.yaml"
    space.write_text(textwrap.dedent(SPACE))
    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    env = {**os.environ, "GNN_SEARCH_DATA": str(data_root), "GNN_SEARCH_CACHE": str(cache_dir)}
    sequences = []
    for name in ("first", "second"):
        proc = subprocess.run(
            [sys.executable, "-m", "search.cli", "run", "--space", str(space), "--trials", "4",
             "--concurrency", "1", "--name", name, "--seed", "3", "--tracking-uri", uri,
             "--storage", str(tmp_path / "ray"), "--energy-window", "0", "--quiet"],
            capture_output=True, text=True, cwd=tmp_path, env=env, timeout=600)
        assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-2000:]
        client = MlflowClient(uri)
        experiment = client.get_experiment_by_name(name)
        runs = client.search_runs([experiment.experiment_id],
                                  filter_string="tags.`gnn_search.role` = 'trial'",
                                  order_by=["attributes.start_time ASC"])
        sequences.append([dict(r.data.params) for r in runs])
    first, second = sequences
    assert len(first) == 4 and first == second
    # warm start: the uncompressed model, then the space file's point
    assert (first[0]["prune.method"], first[0]["quant.method"]) == ("none", "fp32")
    assert (first[1]["prune.method"], first[1]["prune.sparsity"], first[1]["quant.bits"]) == (
        "global", "0.5", "8")
