"""One search: Ray Tune + OptunaSearch over a space file, tracked in MLflow.

Data flow: load the task's data and the cached FP32 baseline once in the driver; ship both to
every trial through Ray's object store (``tune.with_parameters``); each trial runs
:func:`trainables.cycle.run_cycle` and reports per-epoch and final metrics; the driver's
:class:`~search.tracking.MlflowTrialCallback` writes them to MLflow.
"""

from __future__ import annotations

import logging
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


def check_settings(settings: SearchSettings) -> None:
    """Bad numbers and paths fail here, before anything starts."""
    if settings.trials < 1:
        raise ValueError(f"--trials must be >= 1, got {settings.trials}")
    if settings.concurrency < 1:
        raise ValueError(f"--concurrency must be >= 1, got {settings.concurrency}")
    if not settings.name or "/" in settings.name:
        raise ValueError(f"--name must be non-empty and contain no '/', got {settings.name!r}")
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


def trial_fn(
    config: dict[str, Any], task, baseline: Baseline, seed: int,
    measure_settings: MeasureSettings,
) -> None:
    """Ray Tune function trainable: one compress-and-fine-tune cycle."""
    logging.getLogger("ray.train").setLevel(logging.WARNING)  # no line per checkpoint
    out_dir = Path(tempfile.mkdtemp(prefix="gnn-trial-"))
    try:
        result = run_cycle(
            config, task, baseline, report=tune.report, out_dir=out_dir, seed=seed,
            measure_settings=measure_settings,
        )
        tune.report(
            {**result.metrics, "tags": result.tags},
            checkpoint=tune.Checkpoint.from_directory(str(out_dir)),
        )
    finally:
        shutil.rmtree(out_dir, ignore_errors=True)


def prepare(space: SearchSpace, settings: SearchSettings):
    """Load the data and the baseline (trained and cached on first use)."""
    dataset = space.dataset.model_dump()
    task = build_task(space.task, dataset, settings.data_root, space.baseline.seed)
    training = space.baseline.model_dump(exclude={"seed"})
    baseline, cached = get_baseline(
        task, space.task, dataset, space.model.model_dump(), training, space.baseline.seed,
        settings.cache_dir, progress=settings.progress,
    )
    return task, baseline, cached


def _init_ray(settings: SearchSettings) -> None:
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
            "(each trial takes one); allowed: 1.." + str(cpus)
        )


def run_search(space: SearchSpace, settings: SearchSettings) -> SearchOutcome:
    """Run the search to completion; every trial ends up as a child run in MLflow."""
    from ray.tune.search.optuna import OptunaSearch

    check_settings(settings)
    sampler = settings.sampler or space.sampler
    make_sampler(sampler, settings.seed, settings.trials)  # an unknown name fails here
    task, baseline, cached = prepare(space, settings)
    client = MlflowClient(settings.tracking_uri)
    experiment_id = open_experiment(client, settings.name, _artifact_root(settings))

    search_run = SearchRun(
        client, experiment_id, settings.name,
        params={
            "space": Path(space.source).name, "task": space.task, "model": space.model.name,
            "dataset": space.dataset.name, "sampler": sampler,
            "warm_start": settings.warm_start,
            "objectives": ",".join(f"{m}:{d}" for m, d in space.objectives.items()),
            "trials": settings.trials, "concurrency": settings.concurrency,
            "seed": settings.seed, "baseline.key": baseline.key,
            "baseline.epochs": space.baseline.epochs,
        },
        tags={"gnn_search.baseline_cached": str(cached)},
    )
    search_run.log_metrics({f"baseline_{k}": v for k, v in baseline.metrics.items()})
    search_run.log_artifact(space.source)
    started = time.perf_counter()
    status = "FAILED"
    try:
        _init_ray(settings)
        searcher = OptunaSearch(
            space=space.define_by_run,
            metric=space.metrics,
            mode=space.modes,
            sampler=make_sampler(sampler, settings.seed, settings.trials),
            points_to_evaluate=space.warm_start_points() if settings.warm_start else None,
        )
        trainable = tune.with_resources(
            tune.with_parameters(
                trial_fn, task=task, baseline=baseline, seed=settings.seed,
                measure_settings=settings.measure,
            ),
            {"cpu": 1},
        )
        reporter = tune.CLIReporter(
            metric_columns=[*space.metrics, "test_acc"],
            parameter_columns=["prune.method", "prune.sparsity", "quant.method", "quant.bits",
                               "finetune.epochs"],
            max_report_frequency=30,
            print_intermediate_tables=False,
        )
        tuner = tune.Tuner(
            trainable,
            tune_config=tune.TuneConfig(
                search_alg=searcher,
                num_samples=settings.trials,
                max_concurrent_trials=settings.concurrency,
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
        completed = len(results) - failed
        wall_s = time.perf_counter() - started
        search_run.log_metrics(
            {"trials_completed": completed, "trials_failed": failed, "search_wall_s": wall_s}
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
        baseline=baseline.metrics,
    )


def _artifact_root(settings: SearchSettings) -> Path | None:
    """Local artifact folder next to a local SQLite database; a server decides its own."""
    uri = settings.tracking_uri
    if uri.startswith("sqlite:///"):
        return Path(uri.removeprefix("sqlite:///")).parent / "mlartifacts"
    return None
