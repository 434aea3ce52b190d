"""One search: Ray Tune + OptunaSearch over a space file, tracked in MLflow.

Data flow: load the task's data and the cached FP32 baseline once in the driver; ship both to
every trial through Ray's object store (``tune.with_parameters``); each trial runs
:func:`trainables.cycle.run_cycle` and reports per-epoch and final metrics; the driver's
:class:`~search.tracking.MlflowTrialCallback` writes them to MLflow.
"""

from __future__ import annotations

import logging
import os
import shutil
import tempfile
import time
import warnings
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import optuna
import ray
from mlflow.tracking import MlflowClient
from ray import tune

from search.env import QUIET_ENV, apply_quiet_env
from search.tracking import MlflowTrialCallback, SearchRun, default_tracking_uri, open_experiment
from spaces import SearchSpace
from trainables.baseline import Baseline, get_baseline
from trainables.cycle import run_cycle
from trainables.measure import MeasureSettings
from trainables.params import validate_config
from trainables.tasks import build_task

OBJECT_STORE_BYTES = 512 * 2**20  # Ray's default takes 30% of RAM; trials share ~20 MB


@dataclass
class SearchSettings:
    """Everything a search needs besides the space; the CLI fills it from its options."""

    name: str
    trials: int = 8
    concurrency: int = 2
    tracking_uri: str = field(default_factory=default_tracking_uri)
    storage: Path = field(default_factory=lambda: Path.cwd() / "ray_results")
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


def check_settings(settings: SearchSettings) -> None:
    """Bad numbers and paths fail here, before anything starts."""
    if settings.trials < 1:
        raise ValueError(f"--trials must be >= 1, got {settings.trials}")
    if settings.concurrency < 1:
        raise ValueError(f"--concurrency must be >= 1, got {settings.concurrency}")
    if not settings.name or "/" in settings.name:
        raise ValueError(f"--name must be non-empty and contain no '/', got {settings.name!r}")
    if settings.address is None and settings.concurrency > (os.cpu_count() or 1):
        raise ValueError(f"--concurrency {settings.concurrency} exceeds this machine's "
                         f"{os.cpu_count()} CPUs; allowed: 1..{os.cpu_count()}")
    experiment_dir = Path(settings.storage) / settings.name
    if experiment_dir.exists():
        raise ValueError(
            f"a Tune experiment named {settings.name!r} already exists in {settings.storage}; "
            "choose another --name"
        )


def make_sampler(name: str, seed: int, trials: int) -> optuna.samplers.BaseSampler:
    """Optuna sampler by space-file name: ``tpe`` (multi-objective TPE), ``nsga2``, ``random``."""
    warnings.filterwarnings("ignore", category=optuna.exceptions.ExperimentalWarning)
    if name == "tpe":
        return optuna.samplers.TPESampler(
            seed=seed,
            n_startup_trials=max(2, min(10, trials // 4)),  # small searches still use TPE
            multivariate=True,
            group=True,  # conditional parameters (bits only when quantizing)
            constant_liar=True,  # concurrent trials do not all sample the same point
        )
    if name == "nsga2":
        population = max(4, min(50, trials // 4))
        return optuna.samplers.NSGAIISampler(seed=seed, population_size=population)
    if name == "random":
        return optuna.samplers.RandomSampler(seed=seed)
    raise ValueError(f"unknown sampler {name!r}; allowed: tpe, nsga2, random")


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


class EpochReporter:
    """Sends per-epoch metrics to Tune every ``every`` epochs, each report carrying the
    epochs since the last one under ``history`` (every epoch reaches MLflow; a report is a
    round trip to the driver, ~2 ms)."""

    def __init__(self, every: int) -> None:
        self.every, self.rows = every, []

    def __call__(self, metrics: dict[str, Any]) -> None:
        self.rows.append(metrics)
        if len(self.rows) >= self.every:
            self.flush()

    def flush(self) -> None:
        if self.rows:
            tune.report({**self.rows[-1], "history": self.rows})
            self.rows = []


REPORTS_PER_TRIAL = 10  # intermediate reports when nothing needs every epoch


def trial_fn(
    config: dict[str, Any], task, baseline: Baseline, seed: int,
    measure_settings: MeasureSettings, every_epoch: bool = False,
) -> None:
    """Ray Tune function trainable: one compress-and-fine-tune cycle."""
    logging.getLogger("ray.train").setLevel(logging.WARNING)  # no line per checkpoint
    config = {k: v for k, v in config.items() if v is not None}  # grid points: unset keys
    out_dir = Path(tempfile.mkdtemp(prefix="gnn-trial-"))
    epochs = int(config.get("finetune.epochs", 0))
    reporter = EpochReporter(1 if every_epoch else max(1, epochs // REPORTS_PER_TRIAL))
    try:
        result = run_cycle(
            config, task, baseline, report=reporter, out_dir=out_dir, seed=seed,
            measure_settings=measure_settings,
        )
        reporter.flush()
        tune.report(
            {**result.metrics, "tags": result.tags},
            checkpoint=tune.Checkpoint.from_directory(str(out_dir)),
        )
    finally:
        shutil.rmtree(out_dir, ignore_errors=True)


def prepare(space: SearchSpace, settings: SearchSettings):
    """Load the data and the baseline (trained and cached on first use)."""
    dataset = space.dataset.as_dict()
    task = build_task(space.task, dataset, settings.data_root, space.baseline.seed)
    training = space.baseline.model_dump(exclude={"seed"})
    baseline, cached = get_baseline(
        task, space.task, dataset, space.model.model_dump(), training, space.baseline.seed,
        settings.cache_dir, progress=settings.progress,
    )
    return task, baseline, cached


def _init_ray(settings: SearchSettings) -> int:
    """Start or join Ray; returns the cluster's CPU count."""
    env = apply_quiet_env()
    runtime_env = {"env_vars": {k: env[k] for k in QUIET_ENV}}
    if settings.address:
        ray.init(address=settings.address, runtime_env=runtime_env, logging_level="WARNING")
    else:
        ray.init(
            _node_ip_address="127.0.0.1",
            object_store_memory=OBJECT_STORE_BYTES,
            include_dashboard=False,
            runtime_env=runtime_env,
            logging_level="WARNING",
        )
    cpus = int(ray.cluster_resources().get("CPU", 0))
    if settings.concurrency > cpus:
        raise ValueError(
            f"--concurrency {settings.concurrency} exceeds the cluster's {cpus} CPUs "
            "(each trial needs at least one); allowed: 1.." + str(cpus)
        )
    return cpus


def run_search(space: SearchSpace, settings: SearchSettings) -> SearchOutcome:
    """Run the search to completion; every trial ends up as a child run in MLflow."""
    from ray.tune.search import BasicVariantGenerator
    from ray.tune.search.optuna import OptunaSearch

    from search.early_stopping import BucketMedianStopping

    check_settings(settings)
    sampler = settings.sampler or space.sampler
    client = MlflowClient(settings.tracking_uri)
    existing = client.get_experiment_by_name(settings.name)
    if existing is not None and client.search_runs([existing.experiment_id], max_results=1):
        raise ValueError(f"an MLflow experiment named {settings.name!r} already exists in "
                         f"{settings.tracking_uri} with runs; choose another --name")
    task, baseline, cached = prepare(space, settings)
    experiment_id = open_experiment(client, settings.name, _artifact_root(settings))

    search_run = SearchRun(
        client, experiment_id, settings.name,
        params={
            "space": Path(space.source).name, "task": space.task, "model": space.model.name,
            "dataset": space.dataset.name, "sampler": sampler,
            "warm_start": settings.warm_start,
            "objectives": ",".join(f"{m}:{d}" for m, d in space.objectives.items()),
            "trials": settings.trials, "concurrency": settings.concurrency,
            "paper_grid": settings.paper_grid, "early_stopping": settings.early_stopping,
            "seed": settings.seed, "baseline.key": baseline.key,
            "baseline.epochs": space.baseline.epochs,
            "baseline.folds": len(baseline.folds or [baseline]),
        },
        tags={"gnn_search.baseline_cached": str(cached)},
    )
    search_run.log_metrics({f"baseline_{k}": v for k, v in baseline.metrics.items()})
    search_run.log_artifact(space.source)
    for fold in baseline.folds or [baseline]:  # the FP32 model(s) every trial starts from
        search_run.log_artifact(fold.settings["path"], "baseline")
    started = time.perf_counter()
    status = "FAILED"
    try:
        cpus = _init_ray(settings)
        if settings.paper_grid or settings.points:
            grid = paper_grid(space) if settings.paper_grid else [
                validate_config({**space.defaults(), **p}) for p in settings.points]
            searcher = BasicVariantGenerator(points_to_evaluate=grid,
                                             max_concurrent=settings.concurrency)
            # Tune needs every key in param_space; a point leaves out what does not apply.
            param_space = {key: None for point in grid for key in point}
            num_samples = len(grid)
        else:
            searcher = OptunaSearch(
                space=space.define_by_run,
                metric=space.metrics,
                mode=space.modes,
                sampler=make_sampler(sampler, settings.seed, settings.trials),
                points_to_evaluate=space.warm_start_points() if settings.warm_start else None,
            )
            num_samples = settings.trials
            param_space = None
        scheduler = BucketMedianStopping(task.search_metric, "max") if (
            settings.early_stopping) else None
        # Trials share the CPUs: one trial alone gets them all (torch threads follow).
        trial_cpus = max(1, cpus // settings.concurrency) if not settings.address else 1
        trainable = tune.with_resources(
            tune.with_parameters(
                trial_fn, task=task, baseline=baseline, seed=settings.seed,
                measure_settings=settings.measure, every_epoch=settings.early_stopping,
            ),
            {"cpu": trial_cpus},
        )
        reporter = tune.CLIReporter(
            metric_columns=[*space.metrics, *space.reported],
            parameter_columns=["prune.method", "prune.sparsity", "quant.method", "quant.bits",
                               "finetune.epochs"],
            max_report_frequency=30,
            print_intermediate_tables=False,
        )
        tuner = tune.Tuner(
            trainable,
            param_space=param_space,
            tune_config=tune.TuneConfig(
                search_alg=searcher,
                scheduler=scheduler,
                num_samples=num_samples,
                max_concurrent_trials=None if param_space else settings.concurrency,
                reuse_actors=True,  # ~0.35 s instead of ~1.5 s per trial, no torch re-import
                trial_dirname_creator=lambda trial: f"trial_{trial.trial_id}",
            ),
            run_config=tune.RunConfig(
                name=settings.name,
                storage_path=str(Path(settings.storage).resolve()),
                callbacks=[MlflowTrialCallback(search_run, settings.name)],
                verbose=1 if settings.progress else 0,
                progress_reporter=reporter if settings.progress else None,
                failure_config=tune.FailureConfig(max_failures=0),
            ),
        )
        results = tuner.fit()
        failed = sum(1 for r in results if r.error is not None)
        stopped = [r for r in results if r.error is None and "epoch" in (r.metrics or {})]
        completed = len(results) - failed - len(stopped)
        wall_s = time.perf_counter() - started
        epochs_saved = sum(int(r.config.get("finetune.epochs", 0)) - int(r.metrics["epoch"])
                           for r in stopped)
        search_run.log_metrics(
            {"trials_completed": completed, "trials_failed": failed,
             "trials_early_stopped": len(stopped), "epochs_saved": epochs_saved,
             "search_wall_s": wall_s}
        )
        status = "FINISHED"
    except KeyboardInterrupt:
        status = "KILLED"
        raise
    finally:
        search_run.end(status)
        if ray.is_initialized():
            ray.shutdown()
    return SearchOutcome(
        name=settings.name, experiment_id=experiment_id, parent_run_id=search_run.run_id,
        tracking_uri=settings.tracking_uri, completed=completed, failed=failed, wall_s=wall_s,
        baseline=baseline.metrics, early_stopped=len(stopped), epochs_saved=epochs_saved,
    )


def _artifact_root(settings: SearchSettings) -> Path | None:
    """Local artifact folder next to a local SQLite database; a server decides its own."""
    uri = settings.tracking_uri
    if uri.startswith("sqlite:///"):
        return Path(uri.removeprefix("sqlite:///")).parent / "mlartifacts"
    return None
