"""Search modes on a small GCN space: one --seed reproduces a search (concurrency 1) with
warm-start points first; --paper-grid runs the study's sweep; --early-stopping stops trials
against comparable ones and keeps them out of the front."""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap

import pytest
from mlflow.tracking import MlflowClient

from tests import fault_helpers as fh

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


def _run(tmp_path, env, space_text, *args):
    space = tmp_path / "space.yaml"
    space.write_text(textwrap.dedent(space_text))
    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    proc = subprocess.run(
        [sys.executable, "-m", "search.cli", "run", "--space", str(space), "--tracking-uri",
         uri, "--storage", str(tmp_path / "ray"), "--energy-window", "0", "--quiet", *args],
        capture_output=True, text=True, cwd=tmp_path, env=env, timeout=600)
    assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-2000:]
    return proc.stdout, MlflowClient(uri), uri


@pytest.mark.integration
@pytest.mark.slow
def test_paper_grid_runs_the_studys_sweep(data_root, cache_dir, tmp_path):
    env = {**os.environ, "GNN_SEARCH_DATA": str(data_root), "GNN_SEARCH_CACHE": str(cache_dir)}
    text = SPACE.replace("finetune.epochs: {low: 2, high: 4}", "finetune.epochs: 2")
    stdout, client, _ = _run(tmp_path, env, text, "--paper-grid", "--name", "grid",
                             "--concurrency", "2")
    assert "33 trials finished, 0 failed" in stdout
    experiment = client.get_experiment_by_name("grid")
    runs = client.search_runs([experiment.experiment_id],
                              filter_string="tags.`gnn_search.role` = 'trial'", max_results=100)
    points = {(r.data.params["prune.method"], r.data.params.get("prune.sparsity"),
               r.data.params["quant.method"], r.data.params.get("quant.bits")) for r in runs}
    pruning = {(m, str(s)) for m in ("global", "fine_grained", "regularization")
               for s in (0.1, 0.2, 0.3, 0.4, 0.5, 0.6, 0.7, 0.8, 0.9)}
    assert {(m, s) for m, s, q, _ in points if q == "fp32"} == pruning
    assert {(q, b) for m, _, q, b in points if m == "none"} == {
        (q, b) for q in ("degree_quant", "qat", "a2q") for b in ("4", "8")}


EARLY = """
task: node_classification
dataset: {loader: planetoid, name: Cora, split: random, num_val: 500, num_test: 500}
model: {name: gcn, kwargs: {hidden: 16}}
baseline: {epochs: 30, lr: 0.01, weight_decay: 5.0e-4, seed: 0}
objectives: {val_acc: max, size_bytes: min}
space:
  prune.method: [global]
  prune.sparsity: [0.5]
  quant.method: [fp32]
  finetune.epochs: 12
  finetune.lr: {low: 1.0e-5, high: 0.3, log: true}
"""


@pytest.mark.integration
@pytest.mark.slow
def test_early_stopping_is_sound(data_root, cache_dir, tmp_path):
    from analysis.load import load_trials

    env = {**os.environ, "GNN_SEARCH_DATA": str(data_root), "GNN_SEARCH_CACHE": str(cache_dir)}
    stdout, client, uri = _run(tmp_path, env, EARLY, "--early-stopping", "--name", "es",
                               "--trials", "8", "--concurrency", "2", "--no-warm-start")
    experiment = client.get_experiment_by_name("es")
    runs = client.search_runs([experiment.experiment_id])
    parent = next(r for r in runs if r.data.tags.get("gnn_search.role") == "search")
    trials = [r for r in runs if r.data.tags.get("gnn_search.role") == "trial"]
    stopped = [r for r in trials if r.data.tags.get("gnn_search.early_stopped") == "true"]
    assert stopped, "lr spans 4 decades: some trials fall below their bucket's median"
    assert parent.data.metrics["trials_early_stopped"] == len(stopped)
    assert parent.data.metrics["epochs_saved"] >= len(stopped)
    for run in stopped:
        assert run.info.status == "KILLED" and "size_bytes" not in run.data.metrics
    assert f"{len(stopped)} stopped early" in stdout
    loaded = load_trials(["es"], uri)
    assert loaded.excluded.get("KILLED") == len(stopped), "never on the front"
    assert len(loaded.frame) == len(trials) - len(stopped)
    # Optuna learns that they were stopped (PRUNED), not that they finished (COMPLETE)
    states = [t.state.name for t in fh.saved_studies(tmp_path / "ray" / "es")[-1].trials]
    assert states.count("PRUNED") == len(stopped), states
    assert states.count("COMPLETE") == len(trials) - len(stopped), states
