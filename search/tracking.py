"""MLflow tracking: one parent run per search, one child run per trial.

Everything is logged from the driver through :class:`MlflowTrialCallback`, so trials never
talk to MLflow and a trial's run is written even when the trial process dies.
"""

from __future__ import annotations

import math
import time
from pathlib import Path
from typing import Any

from mlflow.entities import Metric, Param, RunTag
from mlflow.tracking import MlflowClient
from ray.tune import Callback

from analysis.load import ROLE_TAG, SEARCH_TAG
from search.early_stopping import EARLY_STOPPED_TAG

PARENT_TAG = "mlflow.parentRunId"  # what nests runs in the MLflow UI
# Result keys Tune fills in itself; everything else numeric that a trial reports is a metric.
_TUNE_KEYS = {
    "training_iteration", "time_this_iter_s", "time_total_s", "timestamp", "pid", "date",
    "hostname", "node_ip", "time_since_restore", "iterations_since_restore", "done",
    "trial_id", "experiment_id", "checkpoint_dir_name", "should_checkpoint", "config",
    "experiment_tag", "epoch",
}
_FLUSH_EVERY = 500  # buffered per-epoch metrics per trial before a batch write


def default_tracking_uri(cwd: Path | None = None) -> str:
    """``sqlite:////abs/path/mlflow.db`` in the current directory (absolute: Ray trials run
    elsewhere)."""
    return f"sqlite:///{((cwd or Path.cwd()) / 'mlflow.db').resolve()}"


def open_experiment(client: MlflowClient, name: str, artifact_root: Path | None) -> str:
    """The experiment ``name``'s id, created if needed (artifacts under ``artifact_root``)."""
    experiment = client.get_experiment_by_name(name)
    if experiment is not None:
        if experiment.lifecycle_stage == "deleted":
            raise ValueError(
                f"MLflow experiment {name!r} is deleted; restore it or pick another --name"
            )
        return experiment.experiment_id
    location = (artifact_root / name).resolve().as_uri() if artifact_root else None
    # The MLflow 3 UI opens "custom model development" experiments on their runs table
    # (not the GenAI traces overview).
    return client.create_experiment(name, artifact_location=location,
                                    tags={"mlflow.experimentKind": "custom_model_development"})


def _params(config: dict[str, Any]) -> list[Param]:
    return [Param(k, str(v)) for k, v in sorted(config.items()) if v is not None]


def _numeric(result: dict[str, Any]) -> dict[str, float]:
    return {
        k: float(v)
        for k, v in result.items()
        if k not in _TUNE_KEYS
        and isinstance(v, (int, float))
        and not isinstance(v, bool)
        and math.isfinite(float(v))
    }


class SearchRun:
    """The parent run of one search."""

    def __init__(self, client: MlflowClient, experiment_id: str, name: str,
                 params: dict[str, Any], tags: dict[str, str]) -> None:
        self.client = client
        self.experiment_id = experiment_id
        run = client.create_run(
            experiment_id, run_name=name, tags={ROLE_TAG: "search", SEARCH_TAG: name, **tags}
        )
        self.run_id = run.info.run_id
        client.log_batch(self.run_id, params=_params(params))

    def log_metrics(self, metrics: dict[str, float]) -> None:
        now = int(time.time() * 1000)
        self.client.log_batch(
            self.run_id, metrics=[Metric(k, float(v), now, 0) for k, v in metrics.items()]
        )

    def log_artifact(self, path: str | Path, artifact_path: str | None = None) -> None:
        self.client.log_artifact(self.run_id, str(path), artifact_path)

    def end(self, status: str = "FINISHED") -> None:
        self.client.set_terminated(self.run_id, status)


class MlflowTrialCallback(Callback):
    """Tune callback: a child run per trial with its config as params, per-epoch metrics
    (step = epoch), final metrics and tags, and the compressed model as an artifact."""

    def __init__(self, search: SearchRun, search_name: str) -> None:
        self.search = search
        self.client = search.client
        self.search_name = search_name
        self._runs: dict[str, str] = {}  # trial_id -> run_id
        self._pending: dict[str, list[Metric]] = {}
        self._seconds: dict[str, float] = {}  # driver time spent tracking each trial
        self._steps: dict[str, int] = {}  # last step logged per trial

    def _run_id(self, trial) -> str:
        if trial.trial_id not in self._runs:
            run = self.client.create_run(
                self.search.experiment_id,
                run_name=f"{self.search_name}/{trial.trial_id}",
                tags={
                    PARENT_TAG: self.search.run_id,
                    ROLE_TAG: "trial",
                    SEARCH_TAG: self.search_name,
                    "gnn_search.trial_id": trial.trial_id,
                },
            )
            self._runs[trial.trial_id] = run.info.run_id
            self._pending[trial.trial_id] = []
            self.client.log_batch(run.info.run_id, params=_params(trial.config))
        return self._runs[trial.trial_id]

    def _flush(self, trial) -> None:
        pending = self._pending.get(trial.trial_id)
        while pending:
            batch, pending[:] = pending[:1000], pending[1000:]  # MLflow's batch limit
            self.client.log_batch(self._run_id(trial), metrics=batch)

    def _timed(self, trial, started: float) -> None:
        self._seconds[trial.trial_id] = (self._seconds.get(trial.trial_id, 0.0)
                                         + time.perf_counter() - started)

    def on_trial_start(self, iteration, trials, trial, **info) -> None:
        started = time.perf_counter()
        self._run_id(trial)
        self._timed(trial, started)

    def on_trial_result(self, iteration, trials, trial, result, **info) -> None:
        started = time.perf_counter()
        run_id = self._run_id(trial)
        now = int(time.time() * 1000)
        final = "epoch" not in result
        rows = result.get("history") or [result]  # per-epoch rows arrive in chunks
        for row in rows:
            # per-epoch rows at step = epoch; the final metrics one step later, so MLflow's
            # latest value of val_acc is the final (reloaded model's) one
            step = int(row["epoch"]) if "epoch" in row else self._steps.get(trial.trial_id, 0) + 1
            self._steps[trial.trial_id] = step
            self._pending[trial.trial_id].extend(
                Metric(k, v, now, step) for k, v in _numeric(row).items())
        if final or len(self._pending[trial.trial_id]) >= _FLUSH_EVERY:
            self._flush(trial)
        if final:
            tags = result.get("tags") or {}
            tags = {**tags, "gnn_search.node_ip": str(result.get("node_ip", ""))}
            self.client.log_batch(run_id, tags=[RunTag(k, str(v)) for k, v in tags.items()])
        self._timed(trial, started)

    def on_trial_complete(self, iteration, trials, trial, **info) -> None:
        started = time.perf_counter()
        run_id = self._run_id(trial)
        self._flush(trial)
        checkpoint = trial.checkpoint
        if checkpoint is not None:
            with checkpoint.as_directory() as folder:
                for path in sorted(Path(folder).iterdir()):
                    self.client.log_artifact(run_id, str(path), artifact_path="model")
        self._timed(trial, started)
        self.client.log_metric(run_id, "tracking_s", self._seconds.pop(trial.trial_id, 0.0))
        if "epoch" in (trial.last_result or {}):  # stopped before its final report
            self.client.set_tag(run_id, EARLY_STOPPED_TAG, "true")
            self.client.set_terminated(run_id, "KILLED")
            return
        self.client.set_terminated(run_id, "FINISHED")

    def on_trial_error(self, iteration, trials, trial, **info) -> None:
        run_id = self._run_id(trial)
        self._flush(trial)
        error = trial.get_error()
        message = str(error).strip().splitlines()[-1][:4000] if error else "unknown error"
        self.client.set_tag(run_id, "gnn_search.error", message)
        self._seconds.pop(trial.trial_id, None)
        self.client.set_terminated(run_id, "FAILED")
