"""Make MLflow agree with Tune's storage: ``gnn-search sync NAME``.

Tune's storage is the search's source of truth: its experiment state says how every trial
ended, and each finished trial's checkpoint holds its model and a record of everything it
measured (:data:`~search.trial.RECORD_FILE`). Sync writes each ended trial that MLflow
lacks: a run that is complete (FINISHED, FAILED, KILLED) is left alone, a run left
unfinished is replaced by a complete one, so running it twice writes nothing twice. It runs
at the end of every search, and by hand after MLflow was away.
"""

from __future__ import annotations

import json
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from mlflow.entities import Metric
from mlflow.tracking import MlflowClient

from analysis.load import ROLE_TAG, SEARCH_TAG
from search import tune_storage
from search.tracking import (
    ATTEMPTS_TAG,
    DONE_STATUSES,
    ERROR_KEY,
    SearchRun,
    artifact_root,
    create_trial_run,
    end_trial_run,
    history_metrics,
    open_experiment,
    read_record,
    trial_runs,
)
from trainables.errors import first_line, last_line


@dataclass
class SyncReport:
    """How a search's trials ended (Tune's view) and what sync wrote to MLflow."""

    trials: int = 0
    completed: int = 0
    failed: int = 0
    early_stopped: int = 0
    unfinished: int = 0  # pending or running when the driver stopped: continue with --resume
    retried: int = 0  # finished after Tune retried them (lost worker or node)
    epochs_saved: int = 0
    written: int = 0  # trial runs written now (missing or unfinished in MLflow)
    present: int = 0  # trial runs MLflow had complete already
    discarded: int = 0  # unfinished runs of trials Tune never saved (driver killed first)
    wall_s: float = 0.0
    error: str | None = None  # MLflow failed: the next sync writes what is left


def _error_message(trial) -> str:
    """Why a trial failed: what it reported before raising, else Tune's error file."""
    reported = (trial.last_result or {}).get(ERROR_KEY)
    if reported:
        return str(reported)
    fs = trial.storage.storage_filesystem
    lines = tune_storage.read_lines(fs, f"{trial.storage.trial_fs_path}/error.txt")
    return last_line("\n".join(line for line in lines if not line.startswith("Failure #")))


def _reported_epochs(trial) -> list[dict[str, Any]]:
    """Every per-epoch row a trial reported (Tune's result.json holds each report)."""
    fs = trial.storage.storage_filesystem
    rows: list[dict[str, Any]] = []
    for line in tune_storage.read_lines(fs, f"{trial.storage.trial_fs_path}/result.json"):
        try:
            result = json.loads(line)
        except json.JSONDecodeError:
            continue
        rows.extend(r for r in (result.get("history") or [result]) if "epoch" in r)
    return rows


def _outcome(trial) -> str:
    """``finished``, ``stopped`` (early stopping), ``failed`` or ``unfinished``."""
    if trial.status == "ERROR":
        return "failed"
    if trial.status != "TERMINATED":
        return "unfinished"
    return "stopped" if "epoch" in (trial.last_result or {}) else "finished"


def _count(trials: list, report: SyncReport) -> None:
    for trial in trials:
        outcome = _outcome(trial)
        report.trials += 1
        if outcome == "finished":
            report.completed += 1
            report.retried += trial.run_metadata.num_failures > 0
        elif outcome == "stopped":
            report.early_stopped += 1
            report.epochs_saved += (int(trial.config.get("finetune.epochs") or 0)
                                    - int(trial.last_result["epoch"]))
        elif outcome == "failed":
            report.failed += 1
        else:
            report.unfinished += 1


def _parent(client: MlflowClient, name: str, tracking_uri: str,
            saved: dict[str, Any]) -> tuple[str, str]:
    """The search's experiment and parent run, recreated if MLflow lost them."""
    experiment = client.get_experiment_by_name(name)
    if experiment is not None and experiment.lifecycle_stage == "active":
        runs = client.search_runs(
            [experiment.experiment_id],
            filter_string=f"tags.`{ROLE_TAG}` = 'search' and tags.`{SEARCH_TAG}` = '{name}'",
            order_by=["attributes.start_time DESC"], max_results=1)
        if runs:
            return experiment.experiment_id, runs[0].info.run_id
    experiment_id = open_experiment(client, name, artifact_root(tracking_uri))
    parent = SearchRun(client, experiment_id, name, params=saved.get("params") or {},
                       tags={"gnn_search.recreated_by": "sync"})
    return experiment_id, parent.run_id


def _write_trial(client: MlflowClient, experiment_id: str, parent_id: str, name: str,
                 trial, outcome: str, attempts: int) -> None:
    """One ended trial as a complete run."""
    run_id = create_trial_run(client, experiment_id, parent_id, name, trial.trial_id,
                              trial.config, attempts, tags={"gnn_search.synced": "true"})
    if outcome == "stopped":
        metrics = history_metrics(_reported_epochs(trial), int(time.time() * 1000))
        end_trial_run(client, run_id, "stopped", metrics=metrics)
        return
    if outcome == "failed":
        end_trial_run(client, run_id, "failed", error=_error_message(trial))
        return
    checkpoint = trial.checkpoint
    if checkpoint is not None:
        with checkpoint.as_directory() as folder:
            record = read_record(folder)
            if record is not None:
                end_trial_run(client, run_id, "finished", record=record, model_dir=Path(folder))
                return
    last = trial.last_result or {}  # no record: the final report is all there is
    record = {"metrics": last, "tags": last.get("tags") or {}, "history": []}
    end_trial_run(client, run_id, "finished", record=record)


def sync_search(name: str, storage_location: str, tracking_uri: str | None = None,
                wall_s: float | None = None) -> SyncReport:
    """Write every ended trial of search ``name`` that MLflow lacks, log the search's trial
    counts on its parent run, and end that run once every trial has ended. MLflow failing
    is reported in ``error``, never raised: Tune's storage keeps everything."""
    from ray.tune import ExperimentAnalysis

    tune_storage.check_name(name)
    location = tune_storage.normalize_storage(storage_location)
    if not tune_storage.exists(location, name):
        raise ValueError(f"no search named {name!r} in {location}; pass the --storage it ran "
                         "with")
    saved = json.loads(tune_storage.read_text(location, name, tune_storage.SEARCH_FILE)) if (
        tune_storage.exists(location, name, tune_storage.SEARCH_FILE)) else {}
    tracking_uri = tracking_uri or saved.get("tracking_uri")
    if not tracking_uri:
        raise ValueError(f"search {name!r} recorded no tracking URI; pass --tracking-uri")
    trials = ExperimentAnalysis(tune_storage.experiment_path(location, name)).trials
    report = SyncReport(wall_s=wall_s or 0.0)
    _count(trials, report)
    try:
        client = MlflowClient(tracking_uri)
        experiment_id, parent_id = _parent(client, name, tracking_uri, saved)
        runs = trial_runs(client, experiment_id, name)
        for trial in trials:
            outcome = _outcome(trial)
            if outcome == "unfinished":
                continue
            run = runs.get(trial.trial_id)
            if run is not None and run.info.status in DONE_STATUSES:
                report.present += 1
                continue
            attempts = 1
            if run is not None:  # an attempt cut short: replaced, never appended to
                attempts = int(run.data.tags.get(ATTEMPTS_TAG, "1")) + 1
                client.delete_run(run.info.run_id)
            _write_trial(client, experiment_id, parent_id, name, trial, outcome, attempts)
            report.written += 1
        known = {trial.trial_id for trial in trials}
        for trial_id, run in runs.items():  # started after Tune's last save, then lost
            if trial_id not in known and run.info.status not in DONE_STATUSES:
                client.delete_run(run.info.run_id)
                report.discarded += 1
        now = int(time.time() * 1000)
        counts = {"trials_completed": report.completed, "trials_failed": report.failed,
                  "trials_early_stopped": report.early_stopped,
                  "epochs_saved": report.epochs_saved, "trials_retried": report.retried,
                  "trials_unfinished": report.unfinished}
        if wall_s is not None:
            counts["search_wall_s"] = wall_s
        client.log_batch(parent_id, metrics=[Metric(k, float(v), now, 0)
                                             for k, v in counts.items()])
        if report.unfinished == 0:
            client.set_terminated(parent_id, "FINISHED")
    except Exception as err:  # any store or network failure: report it, keep going
        report.error = first_line(err, with_type=True, limit=500)
    return report
