"""A running trial's per-epoch metrics reach MLflow live, at most one write per
``LIVE_FLUSH_S`` per trial, and every epoch is written exactly once by the time it ends."""

from __future__ import annotations

import time
from types import SimpleNamespace

from mlflow.tracking import MlflowClient

import search.tracking as tracking
from search.tracking import MlflowTrialCallback, SearchRun, open_experiment


def _steps(client: MlflowClient, run_id: str) -> list[int]:
    return sorted(m.step for m in client.get_metric_history(run_id, "val_acc"))


def test_live_metrics_are_throttled_and_none_is_lost(tmp_path, monkeypatch):
    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    client = MlflowClient(uri)
    experiment_id = open_experiment(client, "live", None)
    parent = SearchRun(client, experiment_id, "live", params={}, tags={})
    callback = MlflowTrialCallback(uri, experiment_id, parent.run_id, "live")
    trial = SimpleNamespace(trial_id="t0", config={"prune.method": "none"}, checkpoint=None)

    def report(epoch: int) -> None:
        callback.on_trial_result(0, [], trial, {"epoch": epoch, "val_acc": 0.5 + epoch / 100})

    callback.on_trial_start(0, [], trial)
    run_id = callback._runs["t0"]
    report(1)
    assert _steps(client, run_id) == [1]  # the first report is written at once
    report(2)
    report(3)
    assert _steps(client, run_id) == [1]  # within LIVE_FLUSH_S: held back
    monkeypatch.setattr(tracking, "LIVE_FLUSH_S", 0.05)
    time.sleep(0.06)
    report(4)
    assert _steps(client, run_id) == [1, 2, 3, 4]  # the next write carries what was held
    report(5)
    callback.on_trial_complete(0, [], trial)  # ends the run: what is pending is written
    assert _steps(client, run_id) == [1, 2, 3, 4, 5]
    assert client.get_run(run_id).info.status == "KILLED"  # no checkpoint: stopped early


def test_a_finished_trial_ends_in_one_write_within_mlflows_limits(tmp_path):
    from mlflow.entities import Metric, RunTag

    from search.tracking import BATCH_ENTRIES, BATCH_TAGS, end_trial_run, log_batches

    client = MlflowClient(f"sqlite:///{tmp_path / 'mlflow.db'}")
    experiment_id = open_experiment(client, "batch", None)
    calls = []
    log_batch = client.log_batch
    client.log_batch = lambda run_id, metrics=(), params=(), tags=(): (
        calls.append((len(metrics), len(tags))), log_batch(run_id, metrics, params, tags))
    run_id = client.create_run(experiment_id).info.run_id
    record = {"metrics": {"val_acc": 0.8, "size_bytes": 100.0},
              "tags": {f"t{i}": str(i) for i in range(5)},
              "history": [{"epoch": e, "val_acc": 0.5, "train_loss": 1.0} for e in (1, 2, 3)]}
    end_trial_run(client, run_id, "finished", record=record, logged={("val_acc", 1)},
                  metrics=[Metric("tracking_s", 0.1, 0, 0)])
    assert calls == [(1 + 2 + 3 + 2, 5)]  # tracking_s, history less what was logged, final
    run = client.get_run(run_id)
    assert run.info.status == "FINISHED" and run.data.tags["t4"] == "4"
    assert sorted(m.step for m in client.get_metric_history(run_id, "val_acc")) == [2, 3, 4]

    calls.clear()
    many = [Metric(f"m{i}", 1.0, 0, 0) for i in range(1500)]
    tags = [RunTag(f"k{i}", "v") for i in range(150)]
    log_batches(client, run_id, many, tags)
    assert all(t <= BATCH_TAGS and m + t <= BATCH_ENTRIES for m, t in calls), calls
    assert sum(m for m, _ in calls) == 1500 and sum(t for _, t in calls) == 150
    assert len(calls) == 2  # 100 tags + 900 metrics, then 50 tags + 600 metrics
    assert len(client.get_run(run_id).data.tags) >= 150
