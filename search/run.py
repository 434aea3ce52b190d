"""One search: Ray Tune + OptunaSearch over a space file, tracked in MLflow.

Data flow: load the task's data and the cached FP32 baseline once in the driver; ship both to
every trial through Ray's object store (``tune.with_parameters``); each trial runs
:func:`trainables.cycle.run_cycle` and reports per-epoch and final metrics; the driver's
:class:`~search.tracking.MlflowTrialCallback` writes them to MLflow.

Faults: a trial that raises is recorded FAILED and the search goes on; a trial whose worker
or node is lost is retried (``FailureConfig``); a killed driver is continued with
:func:`resume_search` (Tune's experiment state and the Optuna study are saved as trials
finish); MLflow going away costs nothing that :mod:`search.sync` cannot write later.
"""

from __future__ import annotations

import json
import os
import sys
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, NamedTuple

import ray
from mlflow.tracking import MlflowClient
from ray import tune
from ray.tune.logger import CSVLoggerCallback, JsonLoggerCallback

from analysis.load import ROLE_TAG, SEARCH_TAG, default_tracking_uri
from analysis.tracking_store import check_tracking_uri
from search import cluster, limits, tune_storage
from search.env import apply_quiet_env
from search.tracking import (
    MlflowTrialCallback,
    SearchRun,
    artifact_root,
    open_experiment,
)
from search.trial import ERROR_KEY, trial_fn
from spaces import SearchSpace
from spaces.samplers import make_sampler
from trainables.baseline import Baseline, get_baseline, resolve_cache_dir
from trainables.data import resolve_data_root
from trainables.deployment import baseline_figures
from trainables.measure import MeasureSettings
from trainables.params import validate_config
from trainables.paths import check_folder
from trainables.tasks import build_task

OBJECT_STORE_BYTES = 512 * 2**20  # Ray's default takes 30% of RAM; trials share ~20 MB


@dataclass
class SearchSettings:
    """Everything a search needs besides the space; the CLI fills it from its options."""

    name: str
    trials: int = 8
    concurrency: int = 2
    tracking_uri: str = field(default_factory=default_tracking_uri)
    storage: str | Path = field(default_factory=lambda: Path.cwd() / "ray_results")  # or a URI
    data_root: str | None = None
    cache_dir: str | None = None
    seed: int = 0
    address: str | None = None  # None: start a local Ray instance
    sampler: str | None = None  # None: the space file's
    warm_start: bool = True  # evaluate the uncompressed model and known-good points first
    paper_grid: bool = False  # the study's sweep as a Tune grid instead of Optuna
    points: list[dict[str, Any]] | None = None  # run exactly these configurations instead
    early_stopping: bool = False  # BucketMedianStopping on the search metric
    measure: MeasureSettings = field(default_factory=MeasureSettings)
    progress: bool = True
    max_failures: int = 2  # retries of a trial whose worker or node is lost
    trial_timeout_s: float | None = None  # a trial still fine-tuning after this fails
    gpus_per_trial: float = 0.0  # > 0: Ray reserves this share of a GPU, the trial runs on it
    py_modules: tuple[str, ...] = ()  # the user's code Ray ships to every worker (--py-modules)

    @property
    def device(self) -> str:
        """Where trials compute: ``cuda`` (the GPU Ray reserved for the trial) or ``cpu``."""
        return "cuda" if self.gpus_per_trial > 0 else "cpu"


# Saved with the search for --resume; the rest (address, progress, paths) is per invocation.
SAVED_SETTINGS = ("name", "trials", "concurrency", "tracking_uri", "seed", "sampler",
                  "warm_start", "paper_grid", "early_stopping", "max_failures",
                  "trial_timeout_s", "data_root", "cache_dir", "gpus_per_trial")
NAME_PATTERN, NAME_MAX = tune_storage.NAME_PATTERN, tune_storage.NAME_MAX


@dataclass
class SearchOutcome:
    name: str
    experiment_id: str
    parent_run_id: str
    tracking_uri: str
    completed: int
    failed: int
    wall_s: float
    baseline: dict[str, float]
    early_stopped: int = 0
    epochs_saved: int = 0
    retried: int = 0  # trials that finished after Tune retried them
    unfinished: int = 0  # trials not ended (only when the search was interrupted)
    tracking_error: str | None = None  # MLflow failed: `gnn-search sync` writes the rest


def check_settings(settings: SearchSettings, resuming: bool = False) -> None:
    """Bad numbers, names, paths and addresses fail here, before anything starts; a new
    search also needs a name no Tune experiment in the storage has."""
    for bound, value in ((limits.TRIALS, settings.trials),
                         (limits.CONCURRENCY, settings.concurrency), (limits.SEED, settings.seed),
                         (limits.MAX_FAILURES, settings.max_failures)):
        bound.check(value)
    if settings.trial_timeout_s is not None:
        limits.TRIAL_TIMEOUT.check(settings.trial_timeout_s)
    limits.GPUS_PER_TRIAL.check(settings.gpus_per_trial)
    settings.py_modules = tuple(cluster.check_py_module(p) for p in settings.py_modules)
    if not settings.name:
        raise ValueError("--name '' is empty; give a name of letters, digits, '.', '_' and '-', "
                         "or leave out --name for <space>-<date>-<time>")
    if not NAME_PATTERN.fullmatch(settings.name):
        raise ValueError(f"--name {settings.name!r} is not allowed; use letters, digits, '.', "
                         "'_' and '-', starting with a letter or digit")
    if len(settings.name) > NAME_MAX:
        raise ValueError(f"--name {settings.name[:20]}... is {len(settings.name)} characters "
                         f"long; allowed: at most {NAME_MAX}")
    if settings.address is None and settings.concurrency > (os.cpu_count() or 1):
        raise ValueError(f"--concurrency {settings.concurrency} exceeds this machine's "
                         f"{os.cpu_count()} CPUs; allowed: 1..{os.cpu_count()}")
    settings.storage = tune_storage.normalize_storage(settings.storage)
    if not resuming and tune_storage.exists(settings.storage, settings.name):
        _refuse_existing_storage(settings)
    if settings.address is not None:
        cluster.check_address(settings.address)
    check_folder(resolve_data_root(settings.data_root), "--data-root")
    check_folder(resolve_cache_dir(settings.cache_dir), "--cache-dir", write=True)
    check_tracking_uri(settings.tracking_uri)
    if settings.gpus_per_trial > 0:
        _check_gpus(settings)
    tune_storage.check_writable(settings.storage)  # the first thing written: after every check


def _check_gpus(settings: SearchSettings) -> None:
    """A GPU request that no node can meet is refused before anything is written (a trial
    asking for it would wait forever): the cluster's nodes as Ray sees them, or this
    machine's GPUs as torch sees them (as the Ray it would start would)."""
    if settings.address is None:
        import torch

        cluster.check_gpus(settings.gpus_per_trial, [float(torch.cuda.device_count())],
                           "this machine")
        return
    cluster.check_gpus(settings.gpus_per_trial, cluster.node_gpus(settings.address),
                       f"the Ray cluster at {settings.address}")


def _refuse_existing_storage(settings: SearchSettings) -> None:
    """A new search's name is taken in the storage: continue it, or (when it never started a
    trial, its start killed) remove it."""
    folder = tune_storage.experiment_path(str(settings.storage), settings.name)
    if not tune_storage.has_trials(str(settings.storage), settings.name):
        raise ValueError(f"a Tune experiment named {settings.name!r} in {settings.storage} "
                         f"never started a trial (its start failed or was killed); remove "
                         f"{folder} to run it again, or choose another --name")
    raise ValueError(
        f"a Tune experiment named {settings.name!r} already exists in {settings.storage}; "
        f"choose another --name, or continue it with --resume {settings.name}")


PAPER_PRUNING = ("global", "fine_grained", "regularization")
PAPER_SPARSITIES = tuple(round(0.1 * i, 1) for i in range(1, 10))
PAPER_QUANTIZATION = ("degree_quant", "qat", "a2q")


def paper_grid(space: SearchSpace) -> list[dict[str, Any]]:
    """The study's hand sweep for a task: each pruning method at sparsity 0.1-0.9 in FP32,
    and each quantization method at INT4 and INT8 unpruned (other settings: the space
    file's defaults). The study ran each point twice; trials here are seeded, so once.
    Points the task or model cannot run (A2Q on graph classification) are left out."""
    base = space.defaults()
    grid = [{**base, "prune.method": m, "prune.sparsity": s, "prune.schedule": "one_shot",
             "quant.method": "fp32"} for m in PAPER_PRUNING for s in PAPER_SPARSITIES]
    grid += [{**base, "prune.method": "none", "quant.method": q, "quant.bits": b}
             for q in PAPER_QUANTIZATION for b in (4, 8)]
    return [validate_config(point) for point in grid if space.allows(point)]


class NoRetryOnTrialError(tune.Callback):
    """A trial that reported its own failure (``ERROR_KEY``) is not retried: the retries of
    ``FailureConfig`` are for lost workers and nodes, where a rerun can succeed."""

    def on_trial_result(self, iteration, trials, trial, result, **info) -> None:
        if ERROR_KEY in result and trial.max_failures >= 0:
            trial.max_failures = trial.run_metadata.num_failures  # the next failure is final


def prepare(space: SearchSpace, settings: SearchSettings):
    """Load the data, check the model on it, and load the baseline (trained and cached on
    first use)."""
    dataset = space.dataset.as_dict()
    task = build_task(space.task, dataset, settings.data_root, space.baseline.seed)
    space.check_on_data(task)  # a user's model: built and run once on this data
    training = space.baseline.model_dump(exclude={"seed"})
    baseline, cached = get_baseline(
        task, space.task, dataset, space.model.model_dump(), training, space.baseline.seed,
        settings.cache_dir, progress=settings.progress,
    )
    return task, baseline, cached


def _init_ray(space: SearchSpace, settings: SearchSettings) -> int:
    """Start or join Ray (saying on stderr which cluster it joined), shipping the user's
    code the space names; returns the cluster's CPU count."""
    apply_quiet_env()
    code = cluster.user_code(space.import_paths(), settings.py_modules,
                             cluster=settings.address is not None)
    joined = cluster.connect(settings.address, OBJECT_STORE_BYTES, code)
    if settings.concurrency > joined.cpus:
        raise ValueError(
            f"--concurrency {settings.concurrency} exceeds the cluster's {joined.cpus} CPUs "
            "(each trial needs at least one); allowed: 1.." + str(joined.cpus)
        )
    if settings.address:
        print(f"joined the Ray cluster at {joined.address} (--address {settings.address}): "
              f"{joined.nodes} node{'s' * (joined.nodes != 1)}, {joined.cpus} CPUs",
              file=sys.stderr, flush=True)
    return joined.cpus


def _grid(space: SearchSpace, settings: SearchSettings) -> list[dict[str, Any]] | None:
    """The configurations of a grid search (--paper-grid, or bench points); None: Optuna."""
    if settings.paper_grid:
        return paper_grid(space)
    if settings.points:
        return [validate_config({**space.defaults(), **p}) for p in settings.points]
    return None


def trial_resources(settings: SearchSettings, cpus: int) -> dict[str, float]:
    """What Ray reserves for each trial: CPUs (trials share them: one trial alone gets them
    all, torch threads follow; one each on a cluster) and ``--gpus-per-trial`` GPUs."""
    resources: dict[str, float] = {
        "cpu": max(1, cpus // settings.concurrency) if not settings.address else 1}
    if settings.gpus_per_trial > 0:
        resources["gpu"] = settings.gpus_per_trial
    return resources


def _trainable(settings: SearchSettings, task, baseline: Baseline, cpus: int):
    return tune.with_resources(
        tune.with_parameters(
            trial_fn, task=task, baseline=baseline, seed=settings.seed,
            measure_settings=settings.measure, every_epoch=settings.early_stopping,
            timeout_s=settings.trial_timeout_s, device=settings.device,
        ),
        trial_resources(settings, cpus),
    )


class _Started(NamedTuple):
    """What a search has once Ray runs and its data and baseline are loaded."""

    task: Any
    baseline: Baseline
    cached: bool  # the baseline came from the cache
    cpus: int  # the cluster's CPUs


@contextmanager
def _started(space: SearchSpace, settings: SearchSettings,
             baseline_key: str | None = None) -> Iterator[_Started]:
    """The set-up a new and a resumed search share, after their checks: Ray started or
    joined, data and baseline loaded (a resumed search needs the ``baseline_key`` it ran
    with); Ray stops when the search ends, however it ends."""
    try:
        # On a cluster, Ray first: one too small for --concurrency is refused before any data
        # or baseline work. Here, data first: a missing dataset is refused without Ray.
        cpus = _init_ray(space, settings) if settings.address else 0
        task, baseline, cached = prepare(space, settings)
        if baseline_key is not None and baseline.key != baseline_key:
            raise ValueError(f"the FP32 baseline of search {settings.name!r} changed (key "
                             f"{baseline_key} -> {baseline.key}); resume with the "
                             "--cache-dir it ran with")
        cpus = cpus or _init_ray(space, settings)
        yield _Started(task, baseline, cached, cpus)
    finally:
        if ray.is_initialized():
            ray.shutdown()


def run_search(space: SearchSpace, settings: SearchSettings) -> SearchOutcome:
    """Run a new search to completion; every trial ends up as a child run in MLflow. A start
    that fails (or is interrupted) before any trial started leaves nothing behind: the same
    --name runs again (:func:`_undo_start`)."""
    check_settings(settings)
    client = MlflowClient(settings.tracking_uri)
    _check_new_experiment(client, settings)
    with _started(space, settings) as started:
        experiment_id = open_experiment(client, settings.name, _artifact_root(settings))
        try:
            search_run = _open_search_run(client, experiment_id, space, settings, started)
            return _run_new(space, settings, started, search_run)
        except BaseException:
            _undo_start(client, experiment_id, settings)
            raise


def _check_new_experiment(client: MlflowClient, settings: SearchSettings) -> None:
    """A new search needs a name no MLflow experiment with runs has (nor a deleted one,
    which MLflow keeps until it is purged); a search that never started a trial is named
    with the way to clear it."""
    existing = client.get_experiment_by_name(settings.name)
    if existing is None:
        return
    if existing.lifecycle_stage == "deleted":
        raise ValueError(f"MLflow experiment {settings.name!r} is deleted in "
                         f"{settings.tracking_uri}; restore it (mlflow experiments restore "
                         f"--experiment-id {existing.experiment_id}) or choose another --name")
    runs = client.search_runs([existing.experiment_id], max_results=100)
    if not runs:
        return
    if all(r.data.tags.get(ROLE_TAG) == "search" for r in runs) and not (
            tune_storage.has_trials(str(settings.storage), settings.name)):
        ids = " ".join(r.info.run_id for r in runs)
        raise ValueError(f"MLflow experiment {settings.name!r} in {settings.tracking_uri} holds "
                         "only the parent run of a search that never started a trial (its "
                         "start failed or was killed); delete "
                         f"it (MLFLOW_TRACKING_URI={settings.tracking_uri} mlflow runs delete "
                         f"--run-id {ids}) to run it again, or choose another --name")
    raise ValueError(f"an MLflow experiment named {settings.name!r} already exists in "
                     f"{settings.tracking_uri} with runs; choose another --name, or "
                     f"continue it with --resume {settings.name}")


def _undo_start(client: MlflowClient, experiment_id: str, settings: SearchSettings) -> None:
    """After a failed start with no trial started: delete the parent run(s) this start
    created (the experiment had no run before it) and ``<storage>/<name>`` (which did not
    exist before it). A search with a trial is kept for --resume. Best effort: what is left
    (MLflow away) is named, with how to clear it, when the name is used again."""
    try:
        if tune_storage.has_trials(str(settings.storage), settings.name):
            return
        for run in client.search_runs([experiment_id], f"tags.`{SEARCH_TAG}` = "
                                      f"'{settings.name}'", max_results=100):
            client.delete_run(run.info.run_id)
        tune_storage.remove(str(settings.storage), settings.name)
    except Exception:  # the start's own error is the one to show
        pass


def _open_search_run(client: MlflowClient, experiment_id: str, space: SearchSpace,
                     settings: SearchSettings, started: _Started) -> SearchRun:
    """The search's parent run: its settings as params, the baseline's metrics, the space
    file and the FP32 model(s) every trial starts from as artifacts."""
    baseline = started.baseline
    search_run = SearchRun(
        client, experiment_id, settings.name,
        params={
            "space": Path(space.source).name, "task": space.task, "model": space.model.label,
            "dataset": space.dataset.label, "sampler": settings.sampler or space.sampler,
            "warm_start": settings.warm_start,
            "objectives": ",".join(f"{m}:{d}" for m, d in space.objectives.items()),
            "trials": settings.trials, "concurrency": settings.concurrency,
            "paper_grid": settings.paper_grid, "early_stopping": settings.early_stopping,
            "seed": settings.seed, "baseline.key": baseline.key,
            "gpus_per_trial": settings.gpus_per_trial,
            "baseline.epochs": space.baseline.epochs,
            "baseline.folds": len(baseline.folds or [baseline]),
        },
        tags={"gnn_search.baseline_cached": str(started.cached)},
    )
    # the uncompressed model through the same runtime and measurements as every trial
    figures = baseline_figures(started.task, baseline, settings.measure)
    search_run.log_metrics({f"baseline_{k}": v
                            for k, v in {**baseline.metrics, **figures}.items()})
    search_run.log_artifact(space.source)
    for fold in baseline.folds or [baseline]:
        search_run.log_artifact(fold.settings["path"], "baseline")
    return search_run


def _run_new(space: SearchSpace, settings: SearchSettings, started: _Started,
             search_run: SearchRun) -> SearchOutcome:
    """Build the tuner, save what --resume needs, run. The parent run ends FAILED (KILLED
    on Ctrl-C) unless the search finished: then sync has ended it (or MLflow is away)."""
    status = "FAILED"
    try:
        tuner = _new_tuner(space, settings, started, search_run)
        _save_search(space, settings, search_run.experiment_id, search_run.run_id,
                     started.baseline.key)
        outcome = _fit(tuner, settings, search_run, started.baseline)
        status = "FINISHED"
    except KeyboardInterrupt:
        status = "KILLED"
        raise
    finally:
        if status != "FINISHED":
            search_run.end(status)
    return outcome


def _param_space(grid: list[dict[str, Any]]) -> dict[str, None]:
    """Tune needs every key in param_space; a grid point leaves out what does not apply."""
    return {key: None for point in grid for key in point}


def _search_alg(space: SearchSpace, settings: SearchSettings):
    """Tune's search algorithm, its param_space and its number of samples: a grid
    (--paper-grid, bench points) or Optuna."""
    from ray.tune.search import BasicVariantGenerator

    from search.searcher import ObjectiveSearch

    grid = _grid(space, settings)
    if grid is not None:
        searcher = BasicVariantGenerator(points_to_evaluate=grid,
                                         max_concurrent=settings.concurrency)
        return searcher, _param_space(grid), len(grid)
    searcher = ObjectiveSearch(
        space=space.define_by_run,
        metric=space.metrics,
        mode=space.modes,
        sampler=make_sampler(settings.sampler or space.sampler, settings.seed, settings.trials),
        points_to_evaluate=space.warm_start_points() if settings.warm_start else None,
    )
    return searcher, None, settings.trials


def trial_dirname(trial) -> str:
    """A trial's folder in Tune's storage. A module function, not a lambda: Tune saves it
    with every trial's state (a lambda is pickled by value, 1.2 KB per trial per save)."""
    return f"trial_{trial.trial_id}"


def _new_tuner(space: SearchSpace, settings: SearchSettings, started: _Started,
               search_run: SearchRun) -> tune.Tuner:
    """A new search's tuner: the trainable, the search algorithm, early stopping if asked,
    MLflow tracking, retries of lost workers, and saves that --resume continues from."""
    from search.early_stopping import BucketMedianStopping

    searcher, param_space, num_samples = _search_alg(space, settings)
    scheduler = BucketMedianStopping(started.task.search_metric, "max") if (
        settings.early_stopping) else None
    return tune.Tuner(
        _trainable(settings, started.task, started.baseline, started.cpus),
        param_space=param_space,
        tune_config=tune.TuneConfig(
            search_alg=searcher,
            scheduler=scheduler,
            num_samples=num_samples,
            max_concurrent_trials=None if param_space else settings.concurrency,
            reuse_actors=True,  # ~0.35 s instead of ~1.5 s per trial, no re-import
            trial_dirname_creator=trial_dirname,
        ),
        run_config=tune.RunConfig(
            name=settings.name,
            storage_path=str(settings.storage),
            callbacks=[MlflowTrialCallback(settings.tracking_uri, search_run.experiment_id,
                                           search_run.run_id, settings.name),
                       NoRetryOnTrialError(), JsonLoggerCallback(), CSVLoggerCallback()],
            verbose=1 if settings.progress else 0,
            progress_reporter=_reporter(space) if settings.progress else None,
            # lost workers and nodes: retry the trial (from scratch)
            failure_config=tune.FailureConfig(max_failures=settings.max_failures),
            # a finished trial's checkpoint forces a save of the experiment state
            # (trials + Optuna study), so a killed driver loses no finished trial
            checkpoint_config=tune.CheckpointConfig(num_to_keep=1),
        ),
    )


def _reporter(space: SearchSpace) -> tune.CLIReporter:
    return tune.CLIReporter(
        metric_columns=[*space.metrics, *space.reported],
        parameter_columns=["prune.method", "prune.sparsity", "quant.method", "quant.bits",
                           "finetune.epochs"],
        max_report_frequency=30,
        print_intermediate_tables=False,
    )


def _save_search(space: SearchSpace, settings: SearchSettings, experiment_id: str,
                 parent_run_id: str, baseline_key: str) -> None:
    """What --resume and sync need, beside Tune's own state: settings, space file, MLflow
    ids. No credentials: tracking URIs with them are refused."""
    saved = {k: getattr(settings, k) for k in SAVED_SETTINGS}
    saved.update(measure=asdict(settings.measure), experiment_id=experiment_id,
                 parent_run_id=parent_run_id, baseline_key=baseline_key,
                 space_source=str(space.source),
                 params=MlflowClient(settings.tracking_uri).get_run(parent_run_id).data.params)
    tune_storage.write_text(settings.storage, settings.name, tune_storage.SPACE_FILE,
                       Path(space.source).read_text())
    tune_storage.write_text(settings.storage, settings.name, tune_storage.SEARCH_FILE,
                       json.dumps(saved, indent=2, sort_keys=True))


def _fit(tuner: tune.Tuner, settings: SearchSettings, search_run: SearchRun,
         baseline: Baseline) -> SearchOutcome:
    """Run (or continue) the search, then make MLflow agree with Tune's storage (which also
    ends the parent run once every trial has ended)."""
    from search.sync import sync_search

    started = time.perf_counter()
    tuner.fit()
    report = sync_search(settings.name, str(settings.storage), settings.tracking_uri,
                         wall_s=time.perf_counter() - started)
    return SearchOutcome(
        name=settings.name, experiment_id=search_run.experiment_id,
        parent_run_id=search_run.run_id, tracking_uri=settings.tracking_uri,
        completed=report.completed, failed=report.failed, wall_s=report.wall_s,
        baseline=baseline.metrics, early_stopped=report.early_stopped,
        epochs_saved=report.epochs_saved, retried=report.retried,
        unfinished=report.unfinished, tracking_error=report.error,
    )


def load_saved(name: str, storage_location: str | Path) -> tuple[SearchSpace, SearchSettings,
                                                                   dict[str, Any]]:
    """A search's space and settings as it started them (``--resume``, ``sync``)."""
    from spaces import load_space

    location = tune_storage.normalize_storage(storage_location)
    tune_storage.check_name(name)
    if not tune_storage.exists(location, name, tune_storage.SEARCH_FILE):
        raise ValueError(f"no search named {name!r} in {location} (no {tune_storage.SEARCH_FILE}); "
                         "pass the --storage it ran with")
    saved = json.loads(tune_storage.read_text(location, name, tune_storage.SEARCH_FILE))
    folder = Path(tempfile.mkdtemp(prefix="gnn-search-space-"))
    space_file = folder / f"{Path(saved['space_source']).stem}.yaml"
    space_file.write_text(tune_storage.read_text(location, name, tune_storage.SPACE_FILE))
    space = load_space(space_file)
    settings = SearchSettings(**{k: saved[k] for k in SAVED_SETTINGS if k in saved},
                              storage=location,
                              measure=MeasureSettings(**saved["measure"]))
    return space, settings, saved


def resume_search(name: str, storage_location: str | Path, address: str | None = None,
                  progress: bool = True, data_root: str | None = None,
                  cache_dir: str | None = None, py_modules: tuple[str, ...] = ()
                  ) -> SearchOutcome:
    """Continue a search whose driver stopped (killed, lost, Ctrl-C) to its full trial count.

    Finished trials are kept, never rerun; trials that were running start again (from
    their final checkpoint when they had finished their work); the Optuna study carries
    on from its saved state; MLflow runs are reused (see :class:`MlflowTrialCallback`)."""
    space, settings, saved = load_saved(name, storage_location)
    settings.address, settings.progress = address, progress
    settings.py_modules = tuple(py_modules)  # where the user's code is: per invocation
    settings.data_root = data_root or settings.data_root
    settings.cache_dir = cache_dir or settings.cache_dir
    check_settings(settings, resuming=True)
    path = tune_storage.experiment_path(settings.storage, name)
    if not tune.Tuner.can_restore(path):
        raise ValueError(f"search {name!r} stopped before Tune saved its state; nothing to "
                         "resume: start it again under a new --name")
    with _started(space, settings, saved["baseline_key"]) as started:
        client = MlflowClient(settings.tracking_uri)
        search_run = SearchRun.reopen(client, saved["experiment_id"], saved["parent_run_id"])
        resumes = client.get_run(search_run.run_id).data.metrics.get("search_resumes", 0)
        search_run.log_metrics({"search_resumes": resumes + 1})
        grid = _grid(space, settings)
        tuner = tune.Tuner.restore(
            path, _trainable(settings, started.task, started.baseline, started.cpus),
            resume_unfinished=True,  # running trials start again
            resume_errored=False, restart_errored=False,  # failed trials stay failed
            param_space=_param_space(grid) if grid else None,
        )
        return _fit(tuner, settings, search_run, started.baseline)


def _artifact_root(settings: SearchSettings) -> Path | None:
    return artifact_root(settings.tracking_uri)
