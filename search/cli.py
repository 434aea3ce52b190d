"""``gnn-search``: run a search, run one trial, extract the Pareto front.

The analysis commands (pareto, report, export, compare) live in :mod:`analysis.cli`; this
parser offers them under the same names."""

from __future__ import annotations

import argparse
import functools
import json
import sys
import time
from pathlib import Path

from analysis import cli as analysis_cli
from analysis.cli import Parser, UsageError, add_tracking_uri
from search import limits
from search.env import apply_quiet_env
from spaces.samplers import SAMPLERS, SEED_MAX

EPILOG = "Docs: README.md. Space files: a path, or a bundled name such as cora_node."


def _add_common(p: argparse.ArgumentParser) -> None:
    p.add_argument("--space", default="cora_node",
                   help="space file (YAML path) or bundled name (default: cora_node)")
    p.add_argument("--data-root", help="folder holding datasets (default: $GNN_SEARCH_DATA, "
                   "else ~/.cache/gnn-search/datasets)")
    p.add_argument("--cache-dir", help="where FP32 baselines are cached (default: "
                   "$GNN_SEARCH_CACHE, else ~/.cache/gnn-search)")
    p.add_argument("--seed", type=limits.SEED, default=0, help="seed of the sampler and of "
                   f"each trial, 0..{SEED_MAX} (default: 0)")
    p.add_argument("--latency-threads", type=limits.LATENCY_THREADS, metavar="N",
                   help="measure latency and energy with N torch threads (default: as the "
                        "trial runs; 1 inside Ray trials)")
    p.add_argument("--energy-window", type=limits.ENERGY_WINDOW, default=1.0, metavar="S",
                   help="seconds of back-to-back inference to measure energy over; 0 = no "
                        "energy figures (default: 1.0)")


def _add_run(sub) -> None:
    run = sub.add_parser("run", help="run a search (Ray Tune + Optuna, tracked in MLflow)",
                         description="Run a multi-objective compression search.")
    _add_common(run)
    run.add_argument("--trials", type=limits.TRIALS, default=8,
                     help=f"number of trials, at most {limits.TRIALS.high:g} (default: 8)")
    run.add_argument("--concurrency", type=limits.CONCURRENCY, default=2,
                     help="trials at a time, one CPU each (default: 2)")
    run.add_argument("--gpus-per-trial", type=limits.GPUS_PER_TRIAL, default=0.0, metavar="F",
                     help="GPUs Ray reserves for each trial, fractions allowed (0.25: four "
                          "trials share a GPU); trials then run on cuda (default: 0, CPUs "
                          "only)")
    run.add_argument("--py-modules", action="append", default=[], metavar="PATH",
                     help="a folder, module file or wheel of your own code (a model class or "
                          "dataset function) for Ray to ship to every node (repeatable; "
                          "source folders of the space's import paths are found and shipped "
                          "without it)")
    run.add_argument("--name", help="search name = MLflow experiment = Tune experiment: "
                     "letters, digits, '.', '_', '-', at most 100 characters (default: "
                     "<space>-<date>-<time>)")
    add_tracking_uri(run)
    run.add_argument("--storage", help="where Tune keeps the search: a folder (shared by all "
                     "nodes on a cluster) or a URI such as s3://bucket/prefix (default: "
                     "<cwd>/ray_results)")
    run.add_argument("--address", help="existing Ray cluster to join: auto, HOST:PORT or "
                     "ray://HOST:PORT (default: start Ray on this machine, on 127.0.0.1)")
    run.add_argument("--resume", metavar="NAME",
                     help="continue the search NAME (in --storage) to its full trial count "
                          "after its driver stopped; it keeps its own settings")
    run.add_argument("--max-failures", type=limits.MAX_FAILURES, default=2, metavar="N",
                     help="retries of a trial whose worker or node is lost (default: 2); a "
                          "trial that raises is not retried")
    run.add_argument("--trial-timeout", type=limits.TRIAL_TIMEOUT, metavar="S",
                     help="fail a trial still fine-tuning after S seconds (default: none)")
    _add_run_strategy(run)
    run.add_argument("--quiet", action="store_true", help="no progress bar or progress table")


def _add_run_strategy(run: argparse.ArgumentParser) -> None:
    """How a search picks its trials: sampler, grid, early stopping, warm start."""
    run.add_argument("--sampler", choices=list(SAMPLERS),
                     help="Optuna sampler (default: the space file's, else tpe)")
    run.add_argument("--paper-grid", action="store_true",
                     help="run the study's hand sweep (each pruning method at sparsity 0.1-0.9, "
                          "each quantization method at INT4/INT8) as a Tune grid; --trials is "
                          "then the grid's size")
    run.add_argument("--early-stopping", action="store_true",
                     help="stop a trial below the median of comparable trials (same "
                          "compression bucket, same epoch); it never enters the front")
    run.add_argument("--no-warm-start", action="store_true",
                     help="do not evaluate the uncompressed model and the space file's "
                          "warm_start points first")


def _add_trial(sub) -> None:
    trial = sub.add_parser("trial", help="run one compress-and-fine-tune cycle, no Ray",
                           description="Run one trial in-process and print its final metrics.")
    _add_common(trial)
    trial.add_argument("--set", action="append", default=[], metavar="KEY=VALUE",
                       help="override a parameter, e.g. --set prune.sparsity=0.95 (repeatable); "
                            "unset keys take the space file's defaults")
    trial.add_argument("--json", action="store_true", help="print one JSON object")
    trial.add_argument("--out", default="gnn-search-trial",
                       help="folder for the compressed model file (default: ./gnn-search-trial)")


def _add_mlflow_server(sub) -> None:
    server = sub.add_parser(
        "mlflow-server", help="start a lean MLflow tracking server (SQLite, artifacts)",
        description="A tracking server for searches on a cluster: SQLite (or any SQL) "
                    "backend, artifacts uploaded through the server, one worker, bound to "
                    "127.0.0.1 unless --host opens it.")
    server.add_argument("--backend-store-uri", help="where runs are kept (default: "
                        "sqlite:///<cwd>/mlflow.db)")
    server.add_argument("--artifacts-destination", help="where model files are kept: a folder "
                        "or an object-store URI (default: <cwd>/mlartifacts)")
    server.add_argument("--host", default="127.0.0.1", help="interface to listen on (default: "
                        "127.0.0.1, this machine only; 0.0.0.0 opens it to the network)")
    server.add_argument("--port", type=limits.PORT, default=5000,
                        help="TCP port (default: 5000)")
    server.add_argument("--workers", type=limits.WORKERS, default=1,
                        help=f"server processes, at most {limits.WORKERS.high:g} (default: 1)")
    server.add_argument("--allowed-hosts", help="Host headers the server accepts when opened "
                        "with --host (MLflow's DNS-rebinding protection), e.g. mlflow.lan:5000")


def _add_sync(sub) -> None:
    sync = sub.add_parser(
        "sync", help="write a search's trials from Tune's storage to MLflow",
        description="Replay the ended trials of a search that MLflow lacks (it was away): "
                    "complete runs are left alone, unfinished ones replaced; no duplicates.")
    sync.add_argument("name", metavar="NAME", help="the search's name")
    sync.add_argument("--storage", help="where Tune keeps the search (default: "
                      "<cwd>/ray_results)")
    sync.add_argument("--tracking-uri", help="MLflow tracking URI (default: the one the search "
                      "ran with)")


def _add_infer(sub) -> None:
    infer = sub.add_parser(
        "infer", help="run a model file with its deployed kernels on its space's test data",
        description="Load a trial's or an export's model file as it ships (the kernel plan "
                    "its header records), score it on the test split, and measure latency "
                    "and memory beside the eager reference.")
    infer.add_argument("--model", required=True, metavar="FILE",
                       help="a model file (model.gnnz) written by trial, run or export")
    infer.add_argument("--space", help="space file (YAML path) or bundled name whose test "
                       "data to use (default: the task and dataset the model file records)")
    infer.add_argument("--data-root", help="folder holding datasets (default: "
                       "$GNN_SEARCH_DATA, else ~/.cache/gnn-search/datasets)")
    infer.add_argument("--threads", type=limits.INFER_THREADS, metavar="N",
                       help="torch threads for inference and its measurement, >= 1 "
                            "(default: torch's, one per core)")
    infer.add_argument("--json", action="store_true", help="print one JSON object")


# The subcommands in the order --help lists them.
PARSERS = (_add_run, _add_trial, analysis_cli.add_pareto, analysis_cli.add_report,
           analysis_cli.add_export, _add_mlflow_server, _add_sync, analysis_cli.add_compare,
           _add_infer)


def build_parser() -> argparse.ArgumentParser:
    parser = Parser(
        prog="gnn-search",
        description="Search pruning x quantization x fine-tuning of GNNs with Ray Tune + "
                    "Optuna, tracked in MLflow.",
        epilog=EPILOG,
    )
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    for add in PARSERS:
        add(sub)
    return parser


def _parse_sets(items: list[str]) -> dict[str, str]:
    overrides = {}
    for item in items:
        key, sep, value = item.partition("=")
        if not sep or not key:
            raise ValueError(f"--set {item!r} is not KEY=VALUE, e.g. --set prune.sparsity=0.9")
        overrides[key.strip()] = value.strip()
    return overrides


def _measure_settings(args):
    from trainables.measure import MeasureSettings

    return MeasureSettings(threads=args.latency_threads, energy_window_s=args.energy_window)


# Options that define a search: --resume continues it with the values it started with.
RESUME_KEEPS = ("space", "trials", "concurrency", "name", "tracking_uri", "seed", "sampler",
                "paper_grid", "early_stopping", "no_warm_start", "latency_threads",
                "energy_window", "max_failures", "trial_timeout", "gpus_per_trial")


def _check_resume_options(args) -> None:
    run = build_parser()._subparsers._group_actions[0].choices["run"]
    for key in RESUME_KEEPS:
        if getattr(args, key) != run.get_default(key):
            raise ValueError(f"--{key.replace('_', '-')} cannot be given with --resume: search "
                             f"{args.resume!r} keeps the settings it started with")


def cmd_run(args) -> int:
    from analysis.load import default_tracking_uri, load_trials
    from analysis.pareto import pareto_front
    from analysis.report import pareto_table, render
    from search.run import SearchSettings, resume_search, run_search
    from spaces import load_space

    storage_location = args.storage or str(Path.cwd() / "ray_results")
    if args.resume:
        from search.run import load_saved

        _check_resume_options(args)
        space, settings, _ = load_saved(args.resume, storage_location)
        name = args.resume
        outcome = resume_search(name, storage_location, address=args.address,
                                progress=not args.quiet, data_root=args.data_root,
                                cache_dir=args.cache_dir,
                                py_modules=tuple(args.py_modules))
    else:
        space = load_space(args.space)
        name = (args.name if args.name is not None  # --name "" is refused, not replaced
                else f"{Path(space.source).stem}-{time.strftime('%Y%m%d-%H%M%S')}")
        settings = SearchSettings(
            name=name, trials=args.trials, concurrency=args.concurrency,
            tracking_uri=args.tracking_uri or default_tracking_uri(),
            storage=storage_location,
            data_root=args.data_root, cache_dir=args.cache_dir, seed=args.seed,
            address=args.address, progress=not args.quiet, measure=_measure_settings(args),
            sampler=args.sampler, warm_start=not args.no_warm_start, paper_grid=args.paper_grid,
            early_stopping=args.early_stopping, max_failures=args.max_failures,
            trial_timeout_s=args.trial_timeout, gpus_per_trial=args.gpus_per_trial,
            py_modules=tuple(args.py_modules),
        )
        outcome = run_search(space, settings)
    stopped = (f", {outcome.early_stopped} stopped early ({outcome.epochs_saved} epochs saved)"
               if settings.early_stopping else "")
    retried = f" ({outcome.retried} after a retry)" if outcome.retried else ""
    print(f"\nSearch {name!r}{' (resumed)' if args.resume else ''}: {outcome.completed} "
          f"trials finished{retried}{stopped}, {outcome.failed} failed, "
          f"{outcome.wall_s:.0f} s. Baseline (FP32): " + " ".join(
              f"{k}={v:.4f}" for k, v in outcome.baseline.items() if k.startswith(("val_", "test_"))
          ) + f" size_bytes={outcome.baseline['size_bytes']:.0f}")
    if outcome.tracking_error:
        print(f"\nwarning: MLflow ({settings.tracking_uri}) failed during the search: "
              f"{outcome.tracking_error}. Every trial is kept in Tune's storage "
              f"({settings.storage}); write the missing ones to MLflow, without duplicates, "
              f"with:\n  gnn-search sync {name} --storage {settings.storage}", file=sys.stderr)
        return 0 if outcome.completed else 1
    trials = load_trials([name], settings.tracking_uri)
    if not trials.frame.empty:
        wanted = ", ".join(f"{m}:{d}" for m, d in space.objectives.items())
        print(f"\nPareto-optimal configurations ({wanted}):")
        print(render(pareto_table(pareto_front(trials.frame, space.objectives),
                                  space.objectives), "table"))
    _print_ui_hint(settings.tracking_uri, outcome.experiment_id, name)
    return 0 if outcome.completed else 1


def _print_ui_hint(tracking_uri: str, experiment_id: str, name: str) -> None:
    print("\nBrowse the trials in the MLflow UI:")
    if tracking_uri.startswith(("http://", "https://")):
        print(f"  open {tracking_uri.rstrip('/')}/#/experiments/{experiment_id}/runs")
    else:
        print(f"  mlflow ui --backend-store-uri {tracking_uri} --host 127.0.0.1 --port 5000")
        print(f"  then open http://127.0.0.1:5000/#/experiments/{experiment_id}/runs")
    print(f"Pareto front again: gnn-search pareto --experiment {name} "
          f"--tracking-uri {tracking_uri}")


def _ignore(metrics: dict) -> None:
    """A report callback that shows nothing (``trial --json``: stdout is one JSON object)."""


def _print_epoch(metrics: dict, epochs: int, folds: int) -> None:
    """One line on stderr per fine-tuning epoch (stdout keeps only the final metrics)."""
    fold = metrics.get("fold")
    where = "" if fold is None else f"fold {fold + 1}/{folds} "
    epoch = metrics["epoch"] - (fold or 0) * epochs  # the cycle counts epochs across folds
    figures = " ".join(f"{k}={v:.4g}" if isinstance(v, float) else f"{k}={v}"
                       for k, v in metrics.items() if k not in ("epoch", "fold"))
    print(f"fine-tune {where}epoch {epoch}/{epochs}: {figures}", file=sys.stderr, flush=True)


def _epoch_printer(config: dict, task):
    """The ``report`` callback of ``gnn-search trial``: :func:`_print_epoch` with the epoch
    and fold counts of this trial."""
    from trainables.params import complete_config
    from trainables.tasks import CrossValidation

    epochs = int(complete_config(config)["finetune.epochs"])
    folds = len(task.folds) if isinstance(task, CrossValidation) else 1
    return functools.partial(_print_epoch, epochs=epochs, folds=folds)


def cmd_trial(args) -> int:
    from spaces import load_space
    from trainables.baseline import get_baseline, resolve_cache_dir
    from trainables.cycle import run_cycle
    from trainables.data import resolve_data_root
    from trainables.paths import check_folder
    from trainables.tasks import build_task

    space = load_space(args.space)
    config = space.with_overrides(_parse_sets(args.set))
    measure_settings = _measure_settings(args)  # bad values fail before any work
    out = analysis_cli.check_out_folder(args.out)
    check_folder(resolve_data_root(args.data_root), "--data-root")
    check_folder(resolve_cache_dir(args.cache_dir), "--cache-dir", write=True)
    dataset = space.dataset.as_dict()
    task = build_task(space.task, dataset, args.data_root, space.baseline.seed)
    space.check_on_data(task)  # a user's model: built and run once on this data
    baseline, _ = get_baseline(
        task, space.task, dataset, space.model.model_dump(),
        space.baseline.model_dump(exclude={"seed"}), space.baseline.seed, args.cache_dir,
        progress=not args.json,
    )
    report = _epoch_printer(config, task) if not args.json else _ignore
    result = run_cycle(config, task, baseline, report, out,
                       seed=args.seed, measure_settings=measure_settings)
    if args.json:
        print(json.dumps({**result.metrics, "tags": result.tags, "config": config,
                          "model_path": str(result.model_path),
                          "baseline": baseline.metrics}))
        return 0
    print("config:   " + " ".join(f"{k}={v}" for k, v in config.items()))
    for key, value in result.metrics.items():
        print(f"{key:>16} {value:.6g}")
    for key, value in result.tags.items():
        print(f"{key:>16} {value}")
    print(f"model file: {result.model_path}")
    return 0


def cmd_mlflow_server(args) -> int:
    from search.cluster import serve_mlflow

    serve_mlflow(args.backend_store_uri, args.artifacts_destination, args.host, args.port,
                 args.workers, args.allowed_hosts)
    return 0  # not reached: the server replaced this process


def cmd_sync(args) -> int:
    from analysis.tracking_store import check_tracking_uri
    from search.sync import sync_search
    from search.tune_storage import normalize_storage

    location = normalize_storage(args.storage or Path.cwd() / "ray_results")
    if args.tracking_uri:
        check_tracking_uri(args.tracking_uri)
    else:
        from search.run import load_saved

        check_tracking_uri(load_saved(args.name, location)[1].tracking_uri)
    report = sync_search(args.name, location, args.tracking_uri)
    if report.error:
        raise ConnectionError(f"MLflow failed during the sync ({report.error}); run it again")
    print(f"search {args.name!r}: {report.trials} trials in Tune's storage ({report.completed} "
          f"finished, {report.failed} failed, {report.early_stopped} stopped early, "
          f"{report.unfinished} unfinished); {report.written} written to MLflow, "
          f"{report.present} already there" + (f", {report.discarded} unfinished runs of "
          "trials Tune never saved deleted" if report.discarded else ""))
    if report.unfinished:
        print(f"{report.unfinished} trials have not ended: continue the search with "
              f"gnn-search run --resume {args.name} --storage {location}", file=sys.stderr)
    return 0


def cmd_infer(args) -> int:
    from search.infer import infer

    result = infer(args.model, args.space, args.data_root, args.threads)
    if args.json:
        print(json.dumps(result))
        return 0
    print("\n".join(_infer_lines(result)))
    return 0


def _infer_lines(r: dict) -> list[str]:
    """``infer``'s result as labelled lines (``--json`` prints the dict as it is)."""
    scores = " ".join(f"{k}={v:.4f}" for k, v in r.items() if k.startswith("test_"))
    lines = [
        f"model file  {r['model_file']}",
        f"data        {r['dataset']}, task {r['task']}, "
        + (f"space {r['space']}" if r["space"] else "as the model file records"),
        f"accuracy    {scores}",
        f"latency     {r['latency_ms']:.4g} ms median (p10 {r['latency_ms_p10']:.4g}, p90 "
        f"{r['latency_ms_p90']:.4g}), threads {r['latency_threads']}; eager reference "
        f"{r['latency_ms_reference']:.4g} ms",
        f"kernels     {r['latency_kernel']} (plan {r['kernel_plan']})",
        f"memory      infer_peak_mb {r['infer_peak_mb']:.4g} (eager reference "
        f"{r['infer_peak_mb_reference']:.4g})",
    ]
    if "runtime_fallback" in r:
        lines.append(f"warning     runtime_fallback {r['runtime_fallback']}: this machine "
                     "lacks a kernel the plan names; the next candidate ran")
    return lines


COMMANDS = {"run": cmd_run, "trial": cmd_trial, **analysis_cli.COMMANDS,
            "mlflow-server": cmd_mlflow_server, "sync": cmd_sync, "infer": cmd_infer}


def main(argv: list[str] | None = None) -> int:
    apply_quiet_env()
    try:
        args = build_parser().parse_args(argv)
    except UsageError as err:  # one line, as every other bad input
        print(err, file=sys.stderr)
        return 2
    from spaces import SpaceError
    from trainables.data import DatasetMissingError
    from trainables.errors import first_line
    from trainables.model_file import StorageError

    try:
        return COMMANDS[args.command](args)
    except (SpaceError, DatasetMissingError, StorageError, ValueError, KeyError,
            FileNotFoundError, ConnectionError, ArithmeticError) as err:
        print(f"gnn-search {args.command}: error: {first_line(err)}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
