"""A real search: Ray Tune + OptunaSearch + MLflow (SQLite) on real Cora, then the front."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest
import torch
from mlflow.tracking import MlflowClient

from analysis.load import load_trials
from trainables.cycle import load_compressed
from trainables.pruning import PRUNERS
from trainables.storage import load_state


@pytest.mark.integration
@pytest.mark.slow
def test_two_trial_search_end_to_end(data_root, cache_dir, tmp_path, cora_task):
    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    env = {**os.environ, "GNN_SEARCH_DATA": str(data_root), "GNN_SEARCH_CACHE": str(cache_dir)}
    proc = subprocess.run(
        [sys.executable, "-m", "search.cli", "run", "--trials", "2", "--concurrency", "2",
         "--name", "it", "--tracking-uri", uri, "--storage", str(tmp_path / "ray"),
         "--seed", "1", "--energy-window", "0.3", "--quiet"],
        capture_output=True, text=True, cwd=tmp_path, env=env, timeout=900,
    )
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    assert "2 trials finished, 0 failed" in proc.stdout
    assert "Pareto-optimal configurations (val_acc:max, size_bytes:min)" in proc.stdout
    assert f"mlflow ui --backend-store-uri {uri}" in proc.stdout

    client = MlflowClient(uri)
    experiment = client.get_experiment_by_name("it")
    runs = client.search_runs([experiment.experiment_id])
    parents = [r for r in runs if r.data.tags.get("gnn_search.role") == "search"]
    children = [r for r in runs if r.data.tags.get("gnn_search.role") == "trial"]
    assert len(parents) == 1 and len(children) == 2
    parent = parents[0]
    assert parent.info.status == "FINISHED"
    assert parent.data.metrics["trials_completed"] == 2
    assert parent.data.metrics["baseline_val_acc"] > 0.85
    assert parent.data.params["objectives"] == "val_acc:max,size_bytes:min"

    for child in children:
        assert child.info.status == "FINISHED"
        assert child.data.tags["mlflow.parentRunId"] == parent.info.run_id
        params = child.data.params
        assert params["prune.method"] in PRUNERS
        assert {"quant.method", "finetune.epochs", "finetune.lr", "finetune.schedule"} <= set(
            params)
        metrics = child.data.metrics
        for key in ("val_acc", "test_acc", "size_bytes", "size_ratio", "latency_ms",
                    "sparsity_actual"):
            assert key in metrics, key
        history = client.get_metric_history(child.info.run_id, "train_loss")
        assert len(history) == int(params["finetune.epochs"])
        assert [h.step for h in history] == list(range(1, len(history) + 1))
        assert child.data.tags["latency_kernel"] == "float"
        assert child.data.tags["latency_threads"] == "1", "Ray trials run single-threaded"
        assert child.data.tags["energy_source"] and metrics["energy_mj"] > 0
        assert metrics["trial_energy_j"] > 0 and metrics["cpu_percent"] > 0
        # the artifact is the compressed model that was measured, and it reloads exactly
        local = client.download_artifacts(child.info.run_id, "model/model.gnnz", str(tmp_path))
        assert os.path.getsize(local) == metrics["size_bytes"]
        model, meta = load_compressed(local)
        assert meta["config"]["prune.method"] == params["prune.method"]
        scores = cora_task.evaluate(model)
        assert scores["val_acc"] == pytest.approx(metrics["val_acc"])
        state, _ = load_state(local)
        assert all(torch.equal(state[k], v) for k, v in model.state_dict().items())

    trials = load_trials(["it"], uri)
    assert len(trials.frame) == 2 and trials.excluded == {}

    proc = subprocess.run(
        [sys.executable, "-m", "search.cli", "pareto", "--experiment", "it", "--tracking-uri",
         uri, "--format", "json", "--out", str(tmp_path / "front.csv")],
        capture_output=True, text=True, cwd=tmp_path, env=env, timeout=300,
    )
    assert proc.returncode == 0, proc.stderr
    front = json.loads(proc.stdout)
    assert 1 <= len(front) <= 2
    assert {r["run_id"] for r in front} <= {c.info.run_id for c in children}
    assert (tmp_path / "front.csv").read_text().startswith("run_id,search,val_acc,size_bytes")

    # the same name again is refused before anything runs, and nothing recorded is lost
    again = subprocess.run(
        [sys.executable, "-m", "search.cli", "run", "--trials", "1", "--name", "it",
         "--tracking-uri", uri, "--storage", str(tmp_path / "ray")],
        capture_output=True, text=True, cwd=tmp_path, env=env, timeout=300,
    )
    assert again.returncode == 2 and "already exists" in again.stderr
    assert len(client.search_runs([experiment.experiment_id])) == 3

    bad = subprocess.run(
        [sys.executable, "-m", "search.cli", "pareto", "--experiment", "it", "--tracking-uri",
         uri, "--objectives", "flops:min"],
        capture_output=True, text=True, cwd=tmp_path, env=env, timeout=300,
    )
    assert bad.returncode == 2 and "unknown metric 'flops'" in bad.stderr
