"""MLflow tracking: one parent run per search, one child run per trial.

Everything is logged from the driver through :class:`MlflowTrialCallback`, so trials never
talk to MLflow and a trial's run is written even when the trial process dies. A trial's run
is complete once it is FINISHED, FAILED or KILLED; anything else (an attempt cut short by a
lost node or a killed driver) is replaced, never appended to, so no metric is doubled. When
MLflow stops answering, the callback stops writing and the search goes on: every finished
trial's record stays in Tune's storage, and ``gnn-search sync`` (:mod:`search.sync`) writes
what is missing later.
"""

from __future__ import annotations

import json
import math
import sys
import time
from collections.abc import Collection, Iterable
from pathlib import Path
from typing import Any

from mlflow.entities import Metric, Param, Run, RunTag
from mlflow.tracking import MlflowClient
from ray.tune import Callback

from analysis.load import ROLE_TAG, SEARCH_TAG
from search.early_stopping import EARLY_STOPPED_TAG
from search.trial import ERROR_KEY, RECORD_FILE
from trainables.errors import last_line

PARENT_TAG = "mlflow.parentRunId"  # what nests runs in the MLflow UI
TRIAL_TAG = "gnn_search.trial_id"  # Tune's trial id: one active run per trial id
ATTEMPTS_TAG = "gnn_search.attempts"  # runs made for this trial (a retry replaces the run)
ERROR_TAG = "gnn_search.error"  # why a trial failed
DONE_STATUSES = ("FINISHED", "FAILED", "KILLED")  # a run in one of these is complete
# Result keys Tune fills in itself; everything else numeric that a trial reports is a metric.
_TUNE_KEYS = {
    "training_iteration", "time_this_iter_s", "time_total_s", "timestamp", "pid", "date",
    "hostname", "node_ip", "time_since_restore", "iterations_since_restore", "done",
    "trial_id", "experiment_id", "checkpoint_dir_name", "should_checkpoint", "config",
    "experiment_tag", "epoch",
}


def artifact_root(tracking_uri: str) -> Path | None:
    """Local artifact folder next to a local SQLite database; a server decides its own."""
    if tracking_uri.startswith("sqlite:///"):
        return Path(tracking_uri.removeprefix("sqlite:///")).parent / "mlartifacts"
    return None


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

    @classmethod
    def reopen(cls, client: MlflowClient, experiment_id: str, run_id: str) -> SearchRun:
        """An existing search's parent run, RUNNING again (``--resume``)."""
        run = cls.__new__(cls)
        run.client, run.experiment_id, run.run_id = client, experiment_id, run_id
        client.update_run(run_id, status="RUNNING")
        return run

    def log_metrics(self, metrics: dict[str, float]) -> None:
        now = int(time.time() * 1000)
        self.client.log_batch(
            self.run_id, metrics=[Metric(k, float(v), now, 0) for k, v in metrics.items()]
        )

    def log_artifact(self, path: str | Path, artifact_path: str | None = None) -> None:
        self.client.log_artifact(self.run_id, str(path), artifact_path)

    def end(self, status: str = "FINISHED") -> None:
        self.client.set_terminated(self.run_id, status)


def _chunks(items: list, size: int) -> Iterable[list]:
    for i in range(0, len(items), size):
        yield items[i:i + size]


def trial_runs(client: MlflowClient, experiment_id: str, search_name: str) -> dict[str, Run]:
    """The active (not deleted) trial runs of a search, by Tune trial id."""
    found: dict[str, Run] = {}
    token = None
    while True:
        page = client.search_runs(
            [experiment_id],
            filter_string=f"tags.`{ROLE_TAG}` = 'trial' and tags.`{SEARCH_TAG}` = '{search_name}'",
            order_by=["attributes.start_time ASC"], max_results=1000, page_token=token)
        for run in page:
            trial_id = run.data.tags.get(TRIAL_TAG)
            if trial_id:
                found[trial_id] = run
        token = page.token
        if not token:
            return found


def create_trial_run(client: MlflowClient, experiment_id: str, parent_run_id: str,
                     search_name: str, trial_id: str, config: dict[str, Any], attempts: int = 1,
                     tags: dict[str, str] | None = None) -> str:
    """A trial's child run with its config as params; returns the run id."""
    run = client.create_run(
        experiment_id, run_name=f"{search_name}/{trial_id}",
        tags={PARENT_TAG: parent_run_id, ROLE_TAG: "trial", SEARCH_TAG: search_name,
              TRIAL_TAG: trial_id, ATTEMPTS_TAG: str(attempts), **(tags or {})})
    client.log_batch(run.info.run_id, params=_params(config))
    return run.info.run_id


def history_metrics(rows: list[dict[str, Any]], now: int) -> list[Metric]:
    """Per-epoch rows as metrics at step = epoch."""
    return [Metric(k, v, now, int(row["epoch"])) for row in rows if "epoch" in row
            for k, v in _numeric(row).items()]


def record_metrics(record: dict[str, Any], now: int) -> list[Metric]:
    """A finished trial's metrics: per-epoch ones at step = epoch, final ones one step after
    the last epoch (so MLflow's latest ``val_acc`` is the reloaded model's)."""
    history = record.get("history") or []
    final_step = max((int(r["epoch"]) for r in history if "epoch" in r), default=0) + 1
    return history_metrics(history, now) + [
        Metric(k, v, now, final_step) for k, v in _numeric(record["metrics"]).items()]


TRIAL_STATUSES = {"finished": "FINISHED", "stopped": "KILLED", "failed": "FAILED"}


def end_trial_run(client: MlflowClient, run_id: str, outcome: str, *,
                  metrics: Iterable[Metric] = (), record: dict[str, Any] | None = None,
                  model_dir: Path | None = None, error: str | None = None,
                  logged: Collection[tuple[str, int]] = ()) -> None:
    """How a trial's run ends in MLflow, live (:class:`MlflowTrialCallback`) or caught up
    from Tune's storage (:mod:`search.sync`): ``metrics``, then by ``outcome``
    (:data:`TRIAL_STATUSES`):

    - ``finished``: the trial's ``record`` (per-epoch and final metrics, skipping what
      ``logged`` says MLflow has already; its tags) and its model files from
      ``model_dir``; FINISHED.
    - ``stopped`` (early stopping): the early-stopped tag; KILLED.
    - ``failed``: ``error`` as the error tag; FAILED.

    Metrics and tags go in as few ``log_batch`` calls as MLflow's limits allow (one for a
    trial of up to ~900 metrics): each call is a database transaction on the driver's loop.
    """
    if outcome not in TRIAL_STATUSES:
        raise ValueError(f"unknown trial outcome {outcome!r}; allowed: "
                         f"{', '.join(TRIAL_STATUSES)}")
    metrics = list(metrics)
    if outcome == "finished":
        now = int(time.time() * 1000)
        metrics += [m for m in record_metrics(record, now) if (m.key, m.step) not in logged]
        tags = [RunTag(k, str(v)) for k, v in (record.get("tags") or {}).items()]
    elif outcome == "stopped":
        tags = [RunTag(EARLY_STOPPED_TAG, "true")]
    else:
        tags = [RunTag(ERROR_TAG, str(error))]  # as set_tag writes it
    log_batches(client, run_id, metrics, tags)
    if outcome == "finished" and model_dir is not None:
        for path in sorted(model_dir.iterdir()):
            if path.is_file() and path.name != RECORD_FILE:
                client.log_artifact(run_id, str(path), artifact_path="model")
    client.set_terminated(run_id, TRIAL_STATUSES[outcome])


BATCH_ENTRIES, BATCH_TAGS = 1000, 100  # MLflow's log_batch limits


def log_batches(client: MlflowClient, run_id: str, metrics: list[Metric],
                tags: list[RunTag]) -> None:
    """``metrics`` and ``tags`` in the fewest ``log_batch`` calls: at most 100 tags and 1000
    entries in all per call."""
    while metrics or tags:
        batch_tags, tags = tags[:BATCH_TAGS], tags[BATCH_TAGS:]
        room = BATCH_ENTRIES - len(batch_tags)
        batch_metrics, metrics = metrics[:room], metrics[room:]
        client.log_batch(run_id, metrics=batch_metrics, tags=batch_tags)


def read_record(folder: str | Path) -> dict[str, Any] | None:
    """The record a finished trial saved beside its model (None: it saved none)."""
    path = Path(folder) / RECORD_FILE
    return json.loads(path.read_text()) if path.is_file() else None


LIVE_FLUSH_S = 2.0  # per-epoch metrics of a running trial reach MLflow at most this often


class MlflowTrialCallback(Callback):
    """Tune callback: a child run per trial with its config as params, per-epoch metrics
    (step = epoch), final metrics and tags, and the compressed model as an artifact.

    It keeps only where to log when pickled (Tune saves it in the experiment), and on
    ``--resume`` adopts the search's runs: complete ones are left alone, runs an earlier
    driver left RUNNING are replaced when their trial runs again. A trial that Tune retries
    (a lost node or worker) gets a fresh run; the cut-short attempt's run is deleted.
    """

    def __init__(self, tracking_uri: str, experiment_id: str, parent_run_id: str,
                 search_name: str) -> None:
        self.tracking_uri = tracking_uri
        self.experiment_id = experiment_id
        self.parent_run_id = parent_run_id
        self.search_name = search_name
        self._reset()

    def _reset(self) -> None:
        self._client: MlflowClient | None = None
        self._runs: dict[str, str] = {}  # trial_id -> run id of its current attempt
        self._done: set[str] = set()  # trials whose run is complete in MLflow
        self._stale: dict[str, str] = {}  # trial_id -> run left unfinished by an earlier driver
        self._attempts: dict[str, int] = {}  # trial_id -> runs made for it so far
        self._logged: dict[str, set[tuple[str, int]]] = {}  # (metric, step) already written
        self._pending: dict[str, list[Metric]] = {}
        self._flushed: dict[str, float] = {}  # trial_id -> when its metrics were last written
        self._seconds: dict[str, float] = {}  # driver time spent tracking each trial
        self._errors: dict[str, str] = {}  # failure messages reported by trials
        self._retried: dict[str, str] = {}  # trial_id -> why its last attempt was lost
        self.offline: str | None = None  # why MLflow stopped answering (None: it answers)

    def __getstate__(self) -> dict[str, Any]:
        return {k: getattr(self, k) for k in ("tracking_uri", "experiment_id", "parent_run_id",
                                              "search_name")}

    def __setstate__(self, state: dict[str, Any]) -> None:
        self.__dict__.update(state)
        self._reset()

    @property
    def client(self) -> MlflowClient:
        if self._client is None:
            self._client = MlflowClient(self.tracking_uri)
        return self._client

    def _guard(self, fn, *args, **kwargs) -> Any:
        """Run MLflow writes; when MLflow fails, stop writing for the rest of the search (the
        trials go on; ``gnn-search sync`` writes what is missing from Tune's storage)."""
        if self.offline is not None:
            return None
        try:
            return fn(*args, **kwargs)
        except Exception as err:  # any store or network failure: never stop the search
            self.offline = f"{type(err).__name__}: {last_line(err, limit=300)}"
            print(f"warning: MLflow at {self.tracking_uri} failed ({self.offline}); trials go "
                  "on and their results stay in Tune's storage; they are written to MLflow "
                  f"when the search ends or by `gnn-search sync {self.search_name}`",
                  file=sys.stderr, flush=True)
            return None

    def _timed(self, trial_id: str, started: float) -> None:
        self._seconds[trial_id] = (self._seconds.get(trial_id, 0.0)
                                   + time.perf_counter() - started)

    def setup(self, **info) -> None:
        """Tune calls this before the first trial, on a fresh search and on ``--resume``."""
        self._guard(self._adopt)

    def _adopt(self) -> None:
        for trial_id, run in trial_runs(self.client, self.experiment_id,
                                        self.search_name).items():
            self._attempts[trial_id] = int(run.data.tags.get(ATTEMPTS_TAG, "1"))
            if run.info.status in DONE_STATUSES:
                self._done.add(trial_id)
            else:
                self._stale[trial_id] = run.info.run_id

    def _run_id(self, trial) -> str:
        trial_id = trial.trial_id
        if trial_id not in self._runs:
            stale = self._stale.pop(trial_id, None)
            if stale is not None:  # an earlier driver's unfinished run: start clean
                self.client.delete_run(stale)
            attempts = self._attempts.get(trial_id, 0) + 1
            tags = {"gnn_search.retried_after": self._retried[trial_id]} if (
                trial_id in self._retried) else None
            self._runs[trial_id] = create_trial_run(
                self.client, self.experiment_id, self.parent_run_id, self.search_name,
                trial_id, trial.config, attempts, tags)
            self._attempts[trial_id] = attempts
            self._pending[trial_id] = []
            self._logged[trial_id] = set()
        return self._runs[trial_id]

    def _flush(self, trial_id: str) -> None:
        pending = self._pending.get(trial_id) or []
        for batch in _chunks(pending, 1000):  # MLflow's batch limit
            self.client.log_batch(self._runs[trial_id], metrics=batch)
        self._logged.setdefault(trial_id, set()).update((m.key, m.step) for m in pending)
        self._pending[trial_id] = []
        self._flushed[trial_id] = time.monotonic()

    def on_trial_start(self, iteration, trials, trial, **info) -> None:
        if trial.trial_id in self._done:
            return
        started = time.perf_counter()
        self._guard(self._run_id, trial)
        self._timed(trial.trial_id, started)

    def on_trial_result(self, iteration, trials, trial, result, **info) -> None:
        trial_id = trial.trial_id
        if trial_id in self._done:
            return
        if ERROR_KEY in result:  # the trial is about to raise: on_trial_error records it
            self._errors[trial_id] = str(result[ERROR_KEY])
            return
        if "epoch" not in result:  # the final report: its record arrives with the checkpoint
            return
        started = time.perf_counter()
        self._guard(self._epochs, trial, result)
        self._timed(trial_id, started)

    def _epochs(self, trial, result: dict[str, Any]) -> None:
        self._run_id(trial)
        rows = result.get("history") or [result]  # per-epoch rows arrive in ~10 chunks
        self._pending[trial.trial_id].extend(history_metrics(rows, int(time.time() * 1000)))
        # live in the MLflow UI while the trial runs, one write per LIVE_FLUSH_S at most (a
        # write is a database transaction on the driver's loop: short trials would pay ~10)
        if time.monotonic() - self._flushed.get(trial.trial_id, float("-inf")) >= LIVE_FLUSH_S:
            self._flush(trial.trial_id)

    def on_trial_complete(self, iteration, trials, trial, **info) -> None:
        trial_id = trial.trial_id
        if trial_id in self._done:
            return
        started = time.perf_counter()
        checkpoint = trial.checkpoint  # early-stopped trials have none
        if checkpoint is None:
            self._guard(self._end, trial, "stopped", started)
        else:
            with checkpoint.as_directory() as folder:
                record = read_record(folder)
                if record is None:
                    self._guard(self._end, trial, "stopped", started)
                else:
                    self._guard(self._end, trial, "finished", started, record=record,
                                model_dir=Path(folder))
        self._done.add(trial_id)

    def _end(self, trial, outcome: str, started: float | None = None,
             record: dict[str, Any] | None = None, model_dir: Path | None = None,
             error: str | None = None) -> None:
        """Write what is pending and end the trial's run (:func:`end_trial_run`); a trial
        that ran to its end (``started`` given) also gets the driver's time tracking it."""
        run_id = self._run_id(trial)
        if record is None:
            self._flush(trial.trial_id)
        else:  # the record holds every epoch: what is pending goes in with it, in one write
            self._pending[trial.trial_id] = []
        self._flushed.pop(trial.trial_id, None)
        metrics = []
        if started is not None:
            self._timed(trial.trial_id, started)
            metrics = [Metric("tracking_s", self._seconds.pop(trial.trial_id, 0.0),
                              int(time.time() * 1000), 0)]
        end_trial_run(self.client, run_id, outcome, metrics=metrics, record=record,
                      model_dir=model_dir, error=error, logged=self._logged[trial.trial_id])

    def on_trial_error(self, iteration, trials, trial, **info) -> None:
        trial_id = trial.trial_id
        if trial_id in self._done:
            return
        message = self._errors.pop(trial_id, None) or last_line(trial.get_error())
        self._guard(self._end, trial, "failed", error=message)
        self._seconds.pop(trial_id, None)
        self._done.add(trial_id)

    def on_trial_recover(self, iteration, trials, trial, **info) -> None:
        """Tune retries the trial from scratch (a lost node or worker): its next attempt
        gets a fresh run; this attempt's partial run is deleted."""
        trial_id = trial.trial_id
        self._retried[trial_id] = last_line(trial.get_error(), "lost worker")
        self._errors.pop(trial_id, None)
        run_id = self._runs.pop(trial_id, None)
        self._pending.pop(trial_id, None)
        self._flushed.pop(trial_id, None)
        self._logged.pop(trial_id, None)
        if run_id is not None:
            self._guard(self.client.delete_run, run_id)
