"""Search quality against a reference front: how close a search of N trials gets to the best
front there is, per sampler, over seeds, against trials and against the compute spent.

The reference front of a space is the non-dominated set of every distinct configuration this
benchmark has evaluated on it (every sampler's runs, topped up with random configurations to
``--reference-min``). Its hypervolume, against one fixed reference point, is the denominator
of the hypervolume ratio reported at each budget (median and range over seeds, the same seeds
for every sampler), on the axes score, log10 size and log10 latency. The reference point is
fixed by the uncompressed model (no pruning, FP32, the space's default fine-tuning): 80% of
its validation score, its size, twice its latency; a configuration worse than that in any
objective adds nothing.

Every search is one Optuna ask/tell study of the largest budget (the sampler sized for it, as
``gnn-search run --trials`` sizes it) with the service's define-by-run space; the ratio at a
smaller budget is that study's first N trials. Warm start: the uncompressed model only, as
the first trial of every sampler; ``tpe + warm_start`` adds the space file's points, to show
what that prior knowledge adds. Objectives: ``2`` = score and size, ``3`` = score, size and
the deployed runtime's latency (the space file's three).

Evaluations are cached on disk by configuration and cycle seed (``--store``, one JSON line
per evaluation, with its fine-tuning epochs and wall time), and so are the studies' trial
sequences: a rerun costs nothing, an interrupted run keeps what it finished, and a bigger
machine can extend the committed cache. ``--workers`` runs studies in parallel processes
(one torch thread each).

    python bench/search_quality.py [--quick] [--space NAME ...] [--objectives 2,3]
        [--samplers tpe,gp,...] [--seeds N] [--budgets 8,16,32,64] [--reference-min N]
        [--workers K] [--seed-check N] [--store DIR] [--analyze-only] [--data-root DIR]
        [--cache-dir DIR] [--no-write]

Targets (search-quality issue): the default sampler's median ratio >= 0.97 at 32 trials and
>= 0.93 at 16 on each space; the default beats random at 16 trials on >= 4 of 5 seeds.
"""

from __future__ import annotations

import argparse
import fcntl
import hashlib
import json
import math
import multiprocessing
import os
import statistics
import sys
import tempfile
import time
import warnings
from collections.abc import Iterable
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench.common import append_result, parse_args

REPO = Path(__file__).resolve().parents[1]
PLOTS = REPO / "bench" / "plots"
STORE = REPO / "bench" / "search_quality"
SPACES = ("cora_node", "proteins", "bbbp")
SAMPLERS = ("tpe", "gp", "nsga2", "nsga3", "qmc", "random")
# The default sampler with one setting changed, to find out what its figures point to.
VARIANTS = {
    # gamma and prior_weight are deprecated since Optuna 4.9 (removed in 6): measured, not
    # candidates for the default
    "tpe-gamma25": {"gamma": "quarter"},  # the best quarter of trials is "good", not a tenth
    "tpe-prior3": {"prior_weight": 3.0},  # 3x the uniform prior's weight: explores more
    "tpe-univariate": {"multivariate": False, "group": False},  # Optuna's TPESampler defaults
    "tpe-startup-half": {"n_startup_trials": "half"},  # random for half the budget, then TPE
    # 4 random trials, as the default sizes a 16-trial search: at 16 this is `--trials 16`
    "tpe-startup4": {"n_startup_trials": 4},
    # the random start-up trials cover every pruning and every quantization method
    "tpe-stratified": {"stratified_start": True},
}
WARM_FILE = "tpe + warm_start"  # the default sampler with the space file's points
DEFAULT = "tpe"
CYCLE_SEED = 0
REFERENCE_SCORE = 0.8  # of the uncompressed model's validation score
REFERENCE_LATENCY = 2.0  # times the uncompressed model's deployed latency
TOP_UP_SEED = 10_000  # random studies that top the reference set up use seeds from here
TARGETS = {32: 0.97, 16: 0.93}
WINS_AT, WINS_NEEDED = 16, 4


@dataclass(frozen=True)
class Study:
    """One search: a sampler, a seed, an objective set, a budget, a warm start."""

    space: str
    objectives: int  # 2: score, size; 3: score, size, latency
    sampler: str
    seed: int
    trials: int
    warm: str = "baseline"  # "baseline": the uncompressed model first; "file": + warm_start

    @property
    def label(self) -> str:
        return WARM_FILE if self.warm == "file" else self.sampler

    def key(self) -> str:
        return json.dumps(asdict(self), sort_keys=True)


# ---------------------------------------------------------------- the on-disk cache


def config_key(config: dict[str, Any], seed: int) -> str:
    """Stable key of one evaluation: the full validated configuration and the cycle seed."""
    text = json.dumps({"config": config, "seed": seed}, sort_keys=True, default=str)
    return hashlib.sha1(text.encode()).hexdigest()[:20]


def read_lines(path: Path) -> list[dict]:
    """The JSON lines of ``path`` (none if it does not exist; a torn last line is skipped)."""
    if not path.exists():
        return []
    rows = []
    for line in path.read_text().splitlines():
        try:
            rows.append(json.loads(line))
        except json.JSONDecodeError:
            continue
    return rows


def append_line(path: Path, row: dict) -> None:
    """Append one JSON line under an exclusive lock (several workers share the file)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("a") as f:
        fcntl.flock(f, fcntl.LOCK_EX)
        f.write(json.dumps(row, sort_keys=True, default=str) + "\n")
        f.flush()
        fcntl.flock(f, fcntl.LOCK_UN)


def evaluations_path(store: Path, space: str) -> Path:
    return store / f"{space}.evaluations.jsonl"


def studies_path(store: Path, space: str) -> Path:
    return store / f"{space}.studies.jsonl"


# ---------------------------------------------------------------- evaluation (in workers)

_LOADED: dict[str, Any] = {}


def _bundled(space_name: str, data_root: str | None, cache_dir: str | None):
    if space_name not in _LOADED:
        from bench.common import bundled

        _LOADED[space_name] = bundled(
            argparse.Namespace(data_root=data_root, cache_dir=cache_dir), space_name)
    return _LOADED[space_name]


class Evaluator:
    """Runs the compress-and-fine-tune cycle for a configuration once per store."""

    def __init__(self, space_name: str, store: Path, data_root: str | None,
                 cache_dir: str | None) -> None:
        from trainables.measure import MeasureSettings

        self.space, self.task, self.baseline = _bundled(space_name, data_root, cache_dir)
        self.path = evaluations_path(store, space_name)
        self.known = {row["key"]: row for row in read_lines(self.path)}
        self.work = Path(tempfile.mkdtemp(prefix="bench-quality-"))
        self.measure = MeasureSettings(warmup=1, min_repeats=3, max_repeats=5,
                                       energy_window_s=0, threads=1)

    def config(self, params: dict[str, Any]) -> dict[str, Any]:
        from trainables.params import validate_config

        return validate_config({**self.space.defaults(), **params})

    def __call__(self, config: dict[str, Any], seed: int = CYCLE_SEED) -> dict:
        from trainables.cycle import run_cycle

        key = config_key(config, seed)
        if key not in self.known:
            self.known.update({row["key"]: row for row in read_lines(self.path)})
        if key not in self.known:
            started = time.perf_counter()
            metrics = run_cycle(config, self.task, self.baseline, lambda r: None, self.work,
                                seed=seed, measure_settings=self.measure).metrics
            row = {"key": key, "config": config, "seed": seed,
                   "metrics": {k: float(v) for k, v in metrics.items()
                               if isinstance(v, (int, float)) and not isinstance(v, bool)},
                   "epochs": int(config.get("finetune.epochs", 0)),
                   "wall_s": round(time.perf_counter() - started, 3)}
            append_line(self.path, row)
            self.known[key] = row
        return self.known[key]


def objective_names(space, count: int) -> dict[str, str]:
    """The space's first ``count`` objectives (score, size[, latency])."""
    names = dict(space.objectives)
    if count > len(names):
        raise ValueError(f"space has {len(names)} objectives, asked for {count}")
    return dict(list(names.items())[:count])


def make_variant(name: str, seed: int, trials: int):
    """A registry sampler, or the default TPE with one of :data:`VARIANTS`' changes."""
    from spaces.samplers import make_sampler, tpe

    if name not in VARIANTS:
        return make_sampler(name, seed, trials)
    changes = dict(VARIANTS[name])
    changes.pop("stratified_start", None)
    if changes.get("gamma") == "quarter":
        changes["gamma"] = quarter_gamma
    if changes.get("n_startup_trials") == "half":
        changes["n_startup_trials"] = max(2, trials // 2)
    return tpe(seed, trials, **changes)


def stratified_points(space: dict[str, Any], seed: int, count: int) -> list[dict[str, str]]:
    """``count`` partial points that between them use every pruning method but ``none`` and
    every quantization method but ``fp32`` (shuffled by ``seed``, paired cyclically); the
    other parameters are left to the sampler's random start."""
    import random

    rng = random.Random(seed)
    prune = [m for m in space.get("prune.method", []) if m != "none"]
    quant = [m for m in space.get("quant.method", []) if m != "fp32"]
    rng.shuffle(prune)
    rng.shuffle(quant)
    if count <= 0 or not prune or not quant:
        return []
    return [{"prune.method": prune[i % len(prune)], "quant.method": quant[i % len(quant)]}
            for i in range(max(count, len(prune), len(quant)))]


def quarter_gamma(n: int) -> int:
    """TPE's "good" trials: the best quarter, at most 25 (Optuna's default: a tenth)."""
    return min(math.ceil(0.25 * n), 25)


def run_study(study: Study, store: str, data_root: str | None, cache_dir: str | None
              ) -> tuple[Study, list[str]]:
    """Run one search (in a worker); the evaluation keys in trial order."""
    import optuna
    import torch

    warnings.filterwarnings("ignore")
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    torch.set_num_threads(1)
    evaluate = Evaluator(study.space, Path(store), data_root, cache_dir)
    objectives = objective_names(evaluate.space, study.objectives)
    optuna_study = optuna.create_study(
        directions=["maximize" if d == "max" else "minimize" for d in objectives.values()],
        sampler=make_variant(study.sampler, study.seed, study.trials))
    points = evaluate.space.warm_start_points(baseline=True)
    points = points if study.warm == "file" else points[:1]
    if VARIANTS.get(study.sampler, {}).get("stratified_start"):
        startup = optuna_study.sampler._n_startup_trials
        points += stratified_points(evaluate.space.space, study.seed, startup - len(points))
    for point in points:
        optuna_study.enqueue_trial(point)
    keys = []
    for _ in range(study.trials):
        trial = optuna_study.ask()
        constants = evaluate.space.define_by_run(trial)
        row = evaluate(evaluate.config({**trial.params, **constants}))
        optuna_study.tell(trial, [row["metrics"][m] for m in objectives])
        keys.append(row["key"])
    return study, keys


def _run_study_args(args: tuple) -> tuple[Study, list[str]]:
    return run_study(*args)


def run_all(studies: list[Study], store: Path, args: argparse.Namespace) -> None:
    """Run the studies the store does not hold yet, ``args.workers`` at a time."""
    done = {row["study"] for space in {s.space for s in studies}
            for row in read_lines(studies_path(store, space))}
    todo = [s for s in studies if s.key() not in done]
    if not todo:
        return
    jobs = [(s, str(store), args.data_root, args.cache_dir) for s in todo]
    print(f"running {len(todo)} studies ({sum(s.trials for s in todo)} trials, cached "
          f"evaluations reused) on {args.workers} worker(s)", flush=True)
    started = time.perf_counter()
    if args.workers == 1:
        results: Iterable = map(_run_study_args, jobs)
    else:
        pool = multiprocessing.get_context("spawn").Pool(args.workers, maxtasksperchild=8)
        results = pool.imap_unordered(_run_study_args, jobs)
    for i, (study, keys) in enumerate(results, 1):
        append_line(studies_path(store, study.space), {"study": study.key(), "keys": keys})
        print(f"  [{i}/{len(todo)} {time.perf_counter() - started:.0f} s] {study.space} "
              f"{study.objectives} objectives {study.label} seed {study.seed}", flush=True)
    if args.workers != 1:
        pool.close()
        pool.join()


# ---------------------------------------------------------------- analysis (pure)


def reference_point(uncompressed: dict[str, float], objectives: dict[str, str]
                    ) -> dict[str, float]:
    """The fixed hypervolume reference: 80% of the uncompressed model's score, its size,
    twice its latency (other minimized objectives: its value)."""
    ref = {}
    for name, direction in objectives.items():
        value = uncompressed[name]
        if direction == "max":
            ref[name] = REFERENCE_SCORE * value
        else:
            ref[name] = REFERENCE_LATENCY * value if name.startswith("latency") else value
    return ref


def scaled(metrics: dict[str, float], objectives: dict[str, str]) -> dict[str, float]:
    """The hypervolume's axes: the score as it is, minimized objectives (size, latency) in
    log10, so halving the size counts the same at 100 KB as at 10 KB (in bytes, every model
    10x smaller than the dense one would hold 90% of the size axis)."""
    return {m: metrics[m] if d == "max" else math.log10(metrics[m])
            for m, d in objectives.items()}


def ratio_curve(rows: list[dict], objectives: dict[str, str], reference: dict[str, float],
                reference_hv: float) -> list[float]:
    """Hypervolume ratio of the first i+1 evaluations, for each i."""
    import pandas as pd

    from analysis.pareto import hypervolume, pareto_front

    frame = pd.DataFrame([r["metrics"] for r in rows])[list(objectives)]
    return [hypervolume(pareto_front(frame.iloc[: i + 1], objectives), objectives, reference)
            / reference_hv for i in range(len(frame))]


def summary(values: list[float]) -> str:
    return (f"{statistics.median(values):.3f} ({min(values):.3f}–{max(values):.3f})"
            if values else "–")


def analyze(space_name: str, count: int, evaluations: dict[str, dict], uncompressed: dict,
            curves_by: dict[str, dict[int, list[dict]]], budgets: list[int]) -> dict:
    """Reference front, ratio curves and compute curves of one space and objective set."""
    import pandas as pd

    from analysis.pareto import hypervolume, pareto_front
    from spaces import load_space

    objectives = objective_names(load_space(space_name), count)
    reference = reference_point(uncompressed["metrics"], objectives)
    scaled_reference = scaled(reference, objectives)
    everything = pd.DataFrame([r["metrics"] for r in evaluations.values()],
                              index=list(evaluations))[list(objectives)]
    front = pareto_front(everything, objectives)
    reference_hv = hypervolume(pd.DataFrame([scaled(m, objectives) for m in
                                             front.to_dict("records")]),
                               objectives, scaled_reference)
    out = {"objectives": objectives, "reference": reference, "reference_hv": reference_hv,
           "distinct": len(everything), "front": len(front), "samplers": {},
           "front_keys": list(front.index)}
    for label, seeded in curves_by.items():
        per_seed = {}
        for seed, rows in sorted(seeded.items()):
            per_seed[seed] = {
                "ratio": ratio_curve([{"metrics": scaled(r["metrics"], objectives)}
                                      for r in rows], objectives, scaled_reference,
                                     reference_hv),
                "epochs": _cumulative(r["epochs"] for r in rows),
                "wall_s": _cumulative(r["wall_s"] for r in rows),
            }
        out["samplers"][label] = per_seed
    out["budgets"] = budgets
    return out


def seed_check(evaluate: Evaluator, evaluations: dict[str, dict], result: dict,
               seeds: list[int]) -> str:
    """How much of the reference front is the luck of one seed: its configurations run again
    at other cycle seeds, the front's hypervolume with each point's mean score."""
    import pandas as pd

    from analysis.pareto import hypervolume

    objectives = result["objectives"]
    score = next(m for m, d in objectives.items() if d == "max")
    averaged, drops = [], []
    for key in result["front_keys"]:
        row = evaluations[key]
        scores = [row["metrics"][score]] + [evaluate(row["config"], seed)["metrics"][score]
                                            for seed in seeds]
        averaged.append({**row["metrics"], score: statistics.mean(scores)})
        drops.append(scores[0] - statistics.mean(scores))
    hv = hypervolume(pd.DataFrame([scaled(m, objectives) for m in averaged]), objectives,
                     scaled(result["reference"], objectives))
    return (f"Seed check: the {len(drops)} reference-front configurations run again at cycle "
            f"seeds {seeds}: their {score} is {statistics.mean(drops):+.4f} above their mean "
            f"over seeds {[CYCLE_SEED, *seeds]} (median {statistics.median(drops):+.4f}); with "
            f"the mean scores the front keeps {hv / result['reference_hv']:.3f} of its "
            "hypervolume (the rest is the luck of seed 0 among every configuration tried).")


def _cumulative(values: Iterable[float]) -> list[float]:
    total, out = 0.0, []
    for v in values:
        total += v
        out.append(total)
    return out


def at(curve: list[float], budget: int) -> float:
    return curve[budget - 1]


def wins(result: dict, label: str, against: str, budget: int) -> tuple[int, int]:
    """Seeds (paired) on which ``label``'s ratio at ``budget`` beats ``against``'s."""
    a, b = result["samplers"].get(label, {}), result["samplers"].get(against, {})
    seeds = sorted(set(a) & set(b))
    return sum(at(a[s]["ratio"], budget) > at(b[s]["ratio"], budget) for s in seeds), len(seeds)


def table(result: dict) -> list[str]:
    budgets = result["budgets"]
    head = ("| sampler | " + " | ".join(f"ratio at {b}" for b in budgets)
            + f" | epochs to {budgets[-1]} | wall s to {budgets[-1]} | beats random at "
            f"{WINS_AT} (seeds) |")
    rows = [head, "|" + "---|" * (len(budgets) + 4)]
    for label, per_seed in result["samplers"].items():
        cells = [summary([at(c["ratio"], b) for c in per_seed.values()]) for b in budgets]
        epochs = statistics.median(at(c["epochs"], budgets[-1]) for c in per_seed.values())
        wall = statistics.median(at(c["wall_s"], budgets[-1]) for c in per_seed.values())
        won, of = wins(result, label, "random", WINS_AT) if budgets[-1] >= WINS_AT else (0, 0)
        beat = "–" if label == "random" or not of else f"{won} of {of}"
        rows.append(f"| {label} | " + " | ".join(cells) + f" | {epochs:.0f} | {wall:.0f} | "
                    f"{beat} |")
    return rows


def plot(space_name: str, results: dict[int, dict], path: Path) -> None:
    """Hypervolume ratio against trials, fine-tuning epochs and wall time (the compute axes:
    median over seeds of the cumulative cost): median line, range band."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    axes_x = (("trials", None), ("fine-tuning epochs spent", "epochs"),
              ("wall time spent, s", "wall_s"))
    fig, axes = plt.subplots(len(results), len(axes_x), figsize=(15, 4 * len(results)),
                             dpi=90, squeeze=False)
    for row, (_, result) in zip(axes, sorted(results.items()), strict=True):
        for label, per_seed in result["samplers"].items():
            curves = list(per_seed.values())
            n = min(len(c["ratio"]) for c in curves)
            med = [statistics.median(c["ratio"][i] for c in curves) for i in range(n)]
            low = [min(c["ratio"][i] for c in curves) for i in range(n)]
            high = [max(c["ratio"][i] for c in curves) for i in range(n)]
            color = None
            for ax, (_, cost) in zip(row, axes_x, strict=True):
                xs = (list(range(1, n + 1)) if cost is None else
                      [statistics.median(c[cost][i] for c in curves) for i in range(n)])
                line, = ax.plot(xs, med, label=label, color=color)
                color = line.get_color()
                ax.fill_between(xs, low, high, color=color, alpha=0.12)
        names = ", ".join(result["objectives"])
        for ax, (xlabel, _) in zip(row, axes_x, strict=True):
            ax.set_xlabel(xlabel)
            ax.set_ylabel("hypervolume / reference front's")
            ax.set_title(f"{space_name}: {names}", fontsize=10)
            ax.set_ylim(0, 1.02)
            ax.grid(alpha=0.3)
        row[0].legend(fontsize=8)
    fig.tight_layout()
    path.parent.mkdir(exist_ok=True)
    fig.savefig(path)
    plt.close(fig)


# ---------------------------------------------------------------- the command


def _int_list(text: str) -> list[int]:
    try:
        values = [int(v) for v in text.split(",")]
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a comma-separated list of whole "
                                         "numbers") from None
    if not values or min(values) < 1:
        raise argparse.ArgumentTypeError(f"{text!r}: every value must be >= 1")
    return sorted(set(values))


def whole(minimum: int):
    """An argparse type: a whole number >= ``minimum``, else one line naming the value."""
    def parse(text: str) -> int:
        if not text.isdigit() or int(text) < minimum:
            raise argparse.ArgumentTypeError(f"{text!r} is not a whole number >= {minimum}")
        return int(text)
    return parse


def _samplers(text: str) -> list[str]:
    names = [n.strip() for n in text.split(",") if n.strip()]
    bad = [n for n in names if n not in SAMPLERS and n not in VARIANTS]
    if bad or not names:
        named = ", ".join(map(repr, bad)) or repr(text)
        raise argparse.ArgumentTypeError(f"unknown sampler(s) {named}; allowed: "
                                         f"{', '.join(SAMPLERS + tuple(VARIANTS))}")
    return names


def _objective_sets(text: str) -> list[int]:
    values = _int_list(text)
    if not set(values) <= {2, 3}:
        raise argparse.ArgumentTypeError(f"{text!r}: objective sets are 2 (score, size) and 3 "
                                         "(score, size, latency)")
    return values


def options(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--space", action="append", choices=SPACES,
                        help=f"bundled space (repeatable; default: {', '.join(SPACES)})")
    parser.add_argument("--objectives", type=_objective_sets, default=[2, 3],
                        help="objective sets: 2 = score, size; 3 = + latency (default 2,3)")
    parser.add_argument("--samplers", type=_samplers, default=list(SAMPLERS),
                        help=f"samplers to compare (default {','.join(SAMPLERS)})")
    parser.add_argument("--seeds", type=whole(1), default=5, help="seeds per sampler (default 5)")
    parser.add_argument("--budgets", type=_int_list, default=[8, 16, 32, 64],
                        help="trial budgets to report (default 8,16,32,64)")
    parser.add_argument("--reference-min", type=whole(0), default=400,
                        help="distinct configurations the reference front is taken from, at "
                             "least (topped up with random ones; default 400)")
    parser.add_argument("--no-warm-file", action="store_true",
                        help="skip the 'tpe + warm_start' runs")
    parser.add_argument("--workers", type=whole(1), default=max(1, min(2, os.cpu_count() or 1)),
                        help="parallel worker processes (default: 2 or the cores)")
    parser.add_argument("--seed-check", type=whole(0), default=2,
                        help="run the reference front's configurations again at this many "
                             "other cycle seeds (default 2; 0: do not)")
    parser.add_argument("--analyze-only", action="store_true",
                        help="report the studies the store holds; run nothing")
    parser.add_argument("--store", type=Path, default=None,
                        help=f"evaluation and study cache (default {STORE.name}/ beside this "
                             "script; --quick: a temporary one)")


def main() -> None:
    args = parse_args(__doc__, "cora_node, tpe and random, 1 seed, 8 trials, 2 objectives",
                      options)
    if args.quick:
        args.space, args.objectives, args.samplers = ["cora_node"], [2], ["tpe", "random"]
        args.seeds, args.budgets, args.reference_min, args.workers = 1, [4, 8], 0, 1
        args.no_warm_file, args.seed_check = True, 0
        args.store = args.store or Path(tempfile.mkdtemp(prefix="bench-quality-store-"))
    store = args.store or STORE
    spaces = args.space or list(SPACES)
    trials = max(args.budgets)
    started = time.perf_counter()

    studies = []
    for space_name in spaces:
        for count in args.objectives:
            for sampler in args.samplers:
                if sampler == "random" and count != min(args.objectives):
                    continue  # random ignores the objectives: its studies serve every set
                studies += [Study(space_name, count, sampler, seed, trials)
                            for seed in range(args.seeds)]
            if DEFAULT in args.samplers and not args.no_warm_file:
                studies += [Study(space_name, count, DEFAULT, seed, trials, warm="file")
                            for seed in range(args.seeds)]
    if not args.analyze_only:
        run_all(studies, store, args)
    for space_name in spaces:  # top the reference set up with random configurations
        seed = TOP_UP_SEED
        while (not args.analyze_only
               and len(searched_evaluations(store, space_name)) < args.reference_min):
            run_all([Study(space_name, min(args.objectives), "random", s, 64)
                     for s in (seed, seed + 1)], store, args)
            seed += 2

    sections, last = [], {}
    for space_name in spaces:
        evaluate = Evaluator(space_name, store, args.data_root, args.cache_dir)
        uncompressed = evaluate(evaluate.config({"prune.method": "none", "quant.method": "fp32"}))
        evaluations = searched_evaluations(store, space_name)
        runs = {row["study"]: row["keys"] for row in read_lines(studies_path(store, space_name))}
        results = {}
        for count in args.objectives:
            curves_by: dict[str, dict[int, list[dict]]] = {}
            for study in studies:
                if study.space != space_name or (study.objectives != count and not (
                        study.sampler == "random" and study.warm == "baseline")):
                    continue
                if study.key() not in runs:  # --analyze-only: not run yet
                    continue
                curves_by.setdefault(study.label, {})[study.seed] = [
                    evaluations[k] for k in runs[study.key()]]
            results[count] = analyze(space_name, count, evaluations, uncompressed, curves_by,
                                     args.budgets)
        plots = Path(tempfile.mkdtemp(prefix="bench-quality-plots-")) if args.no_write else PLOTS
        path = plots / f"search_quality_{space_name}.png"
        plot(space_name, results, path)
        sections.append(section(space_name, results, args, path))
        if args.seed_check and 2 in results:  # the score-size front
            sections.append(seed_check(evaluate, evaluations, results[2],
                                       list(range(1, args.seed_check + 1))))
        last[space_name] = results
    body = "\n\n".join(sections) + (
        f"\n\nSeeds {list(range(args.seeds))} for every sampler; budgets {args.budgets} "
        f"(each study sized for {trials} trials); evaluation cache `{store}`; wall time "
        f"{time.perf_counter() - started:.0f} s.")
    print(body)
    if not args.no_write:
        append_result("Search quality against a reference front (bench/search_quality.py)",
                      body)
    headline = []
    for space_name, results in last.items():
        result = results[min(results)]
        for label in (DEFAULT, "random"):
            if label in result["samplers"]:
                ratios = [at(c["ratio"], trials) for c in result["samplers"][label].values()]
                headline.append(f"{space_name}.{label}_ratio_at_{trials}="
                                f"{statistics.median(ratios):.3f}")
    print(" ".join(headline))


def read_lines_by_key(path: Path) -> dict[str, dict]:
    """Distinct evaluations of a store file, by key."""
    return {row["key"]: row for row in read_lines(path)}


def searched_evaluations(store: Path, space: str) -> dict[str, dict]:
    """The distinct configurations evaluated at the searches' cycle seed (not the seed
    check's reruns), by key."""
    return {k: row for k, row in read_lines_by_key(evaluations_path(store, space)).items()
            if row["seed"] == CYCLE_SEED}


def section(space_name: str, results: dict[int, dict], args: argparse.Namespace,
            plot_path: Path) -> str:
    """The RESULTS.md text for one space: per objective set, the table and the targets."""
    lines = []
    for count, result in sorted(results.items()):
        ref = ", ".join(f"{m}={v:.5g}" for m, v in result["reference"].items())
        lines += [f"**{space_name}, {count} objectives** ({', '.join(result['objectives'])}): "
                  f"reference front {result['front']} points of {result['distinct']} distinct "
                  f"configurations (target >= {args.reference_min}), hypervolume "
                  f"{result['reference_hv']:.5g} against {ref}.", "", *table(result), ""]
        default = result["samplers"].get(DEFAULT)
        if default:
            checks = []
            for budget, floor in sorted(TARGETS.items()):
                if budget <= max(args.budgets):
                    med = statistics.median(at(c["ratio"], budget) for c in default.values())
                    checks.append(f"ratio at {budget} = {med:.3f} (target >= {floor}): "
                                  f"{'met' if med >= floor else 'NOT met'}")
            if max(args.budgets) >= WINS_AT and "random" in result["samplers"]:
                won, of = wins(result, DEFAULT, "random", WINS_AT)
                checks.append(f"beats random at {WINS_AT} on {won} of {of} seeds (target >= "
                              f"{WINS_NEEDED} of 5): {'met' if won >= WINS_NEEDED else 'NOT met'}")
            best = best_sampler(result, [b for b in (16, 32) if b <= max(args.budgets)])
            lines += [f"Default ({DEFAULT}): " + "; ".join(checks) + f". Best at 16-32 trials "
                      f"(mean of the medians): {best}.", ""]
    shown = plot_path.relative_to(REPO) if plot_path.is_relative_to(REPO) else plot_path
    lines.append(f"Plot: `{shown}`.")
    return "\n".join(lines)


def best_sampler(result: dict, budgets: list[int]) -> str:
    """The sampler (without the file's warm start) with the best mean median ratio."""
    if not budgets:
        return "–"
    scores = {label: statistics.mean(statistics.median(at(c["ratio"], b)
                                                       for c in per_seed.values())
                                     for b in budgets)
              for label, per_seed in result["samplers"].items() if label != WARM_FILE}
    label = max(scores, key=scores.get)
    return f"{label} ({scores[label]:.3f})"


if __name__ == "__main__":
    main()
