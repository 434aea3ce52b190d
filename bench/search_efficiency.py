"""Search efficiency on a bundled space (default: Cora, SplineConv): hypervolume against
trials for multi-objective TPE (the default, with warm start), TPE without warm start, NSGA-II,
random search and the study's grid (as ``--paper-grid`` runs it for the task), over seeds.

Targets (search issue): the default sampler reaches the grid's final hypervolume in at most
half the grid's trials, and beats random search at equal budget (median of seeds).

Trials run in this process through Optuna's ask/tell with the service's samplers and
define-by-run space (no Ray: this measures the samplers, bench/overhead.py the plumbing).
Identical configurations are evaluated once (cycles are seeded).

    python bench/search_efficiency.py [--quick] [--space NAME] [--seeds N] [--data-root DIR]
                                      [--no-write]

``--space proteins`` runs it on PROTEINS (GIN, the fast split search trials use).
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
import warnings
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt
import optuna
import pandas as pd

from analysis.pareto import hypervolume, pareto_front, reference_point
from bench.common import append_result, bundled, parse_args
from search.run import paper_grid
from spaces.samplers import make_sampler
from trainables.cycle import run_cycle
from trainables.measure import MeasureSettings
from trainables.params import validate_config

PLOTS = Path(__file__).with_name("plots")
QUICK_SPARSITIES = (0.3, 0.6, 0.9)
FAST = MeasureSettings(warmup=0, min_repeats=1, max_repeats=1, energy_window_s=0)


def main() -> None:
    def seed_count(text: str) -> int:
        if not text.isdigit() or int(text) < 1:
            raise argparse.ArgumentTypeError(f"{text!r} is not a whole number >= 1")
        return int(text)

    def options(parser):
        parser.add_argument("--space", default="cora_node",
                            help="bundled space file to search (default: cora_node)")
        parser.add_argument("--seeds", type=seed_count, default=3,
                            help="seeds per sampler, >= 1 (default 3; --quick: 1)")

    args = parse_args(__doc__, "1 seed, coarse grid (< 3 min)", options)
    warnings.filterwarnings("ignore")
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    started = time.perf_counter()
    space, task, baseline = bundled(args, args.space)
    plot = PLOTS / ("search_efficiency.png" if args.space == "cora_node"
                    else f"search_efficiency_{args.space}.png")
    objectives = space.objectives
    work = Path(tempfile.mkdtemp(prefix="bench-search-"))
    cache: dict[tuple, dict[str, float]] = {}

    def evaluate(config: dict) -> dict[str, float]:
        config = validate_config({**space.defaults(), **config})
        key = tuple(sorted(config.items()))
        if key not in cache:
            m = run_cycle(config, task, baseline, lambda r: None, work,
                          measure_settings=FAST).metrics
            cache[key] = {k: m[k] for k in objectives}
        return cache[key]

    grid = [p for p in paper_grid(space) if not args.quick or p["prune.method"] == "none"
            or p["prune.sparsity"] in QUICK_SPARSITIES]
    grid_points = [evaluate(p) for p in grid]
    budget = len(grid)
    seeds = list(range(1 if args.quick else args.seeds))
    runs: dict[str, list[list[dict]]] = {}
    for label, sampler, warm in (("tpe (default)", "tpe", True), ("tpe, no warm start", "tpe",
                                 False), ("nsga2", "nsga2", True), ("random", "random", False)):
        runs[label] = []
        for seed in seeds:
            study = optuna.create_study(
                directions=["maximize" if d == "max" else "minimize" for d in objectives.values()],
                sampler=make_sampler(sampler, seed, budget))
            for point in space.warm_start_points() if warm else []:
                study.enqueue_trial(point)
            points = []
            for _ in range(budget):
                trial = study.ask()
                constants = space.define_by_run(trial)
                m = evaluate({**trial.params, **constants})
                study.tell(trial, [m[k] for k in objectives])
                points.append(m)
            runs[label].append(points)

    everything = pd.DataFrame(grid_points + [p for r in runs.values() for s in r for p in s])
    reference = reference_point([everything], objectives)

    def curve(points: list[dict]) -> list[float]:
        return [hypervolume(pareto_front(pd.DataFrame(points[: i + 1]), objectives), objectives,
                            reference) for i in range(len(points))]

    grid_curve = curve(grid_points)
    grid_final = grid_curve[-1]
    curves = {label: [curve(points) for points in seeded] for label, seeded in runs.items()}
    rows, reach = [], {}
    for label, seeded in curves.items():
        finals = [c[-1] for c in seeded]
        firsts = [next((i + 1 for i, v in enumerate(c) if v >= grid_final), None) for c in seeded]
        reached = [f for f in firsts if f is not None]
        reach[label] = (statistics.median(reached) if len(reached) == len(seeded) else None)
        rows.append(f"| {label} | {statistics.median(finals):.5g} | "
                    f"{min(finals):.5g} – {max(finals):.5g} | "
                    f"{', '.join(str(f) if f else 'never' for f in firsts)} |")
    default = "tpe (default)"
    median_default = statistics.median(c[-1] for c in curves[default])
    median_random = statistics.median(c[-1] for c in curves["random"])
    reach_ok = reach[default] is not None and reach[default] <= budget / 2
    beats = median_default > median_random

    plot.parent.mkdir(exist_ok=True)
    fig, ax = plt.subplots(figsize=(7, 4.4), dpi=110)
    xs = range(1, budget + 1)
    for label, seeded in curves.items():
        ax.plot(xs, [statistics.median(c[i] for c in seeded) for i in range(budget)], label=label)
    ax.plot(xs, grid_curve, "k--", label="study's grid (in its order)")
    ax.axhline(grid_final, color="k", lw=0.6)
    ax.set_xlabel("trials")
    ax.set_ylabel("hypervolume (" + ", ".join(f"{m} {d}" for m, d in objectives.items()) + ")")
    ax.set_title(f"{args.space}: {space.dataset.name}, {space.model.label}, median of "
                 f"{len(seeds)} seed(s)")
    ax.legend(fontsize=8)
    ax.grid(alpha=0.3)
    fig.tight_layout()
    fig.savefig(plot)
    plt.close(fig)

    body = "\n".join([
        f"Bundled space `{args.space}` ({space.dataset.name}, {space.model.label}), objectives "
        + ", ".join(f"{m}:{d}" for m, d in objectives.items()) + f"; budget = the "
        f"grid's {budget} trials; seeds {seeds}; {len(cache)} distinct configurations "
        f"evaluated; reference point " + ", ".join(f"{m}={v:.5g}" for m, v in reference.items())
        + ".", "",
        f"Study's grid: final hypervolume {grid_final:.5g}.", "",
        "| sampler | final HV (median) | range over seeds | trials to reach the grid's final "
        "HV (per seed) |", "|---|---|---|---|", *rows, "",
        f"Default reaches the grid's final hypervolume in {reach[default]} trials (target <= "
        f"{budget / 2:g}): {'met' if reach_ok else 'NOT met'}. Default vs random at equal "
        f"budget: {median_default:.5g} vs {median_random:.5g}: "
        f"{'met' if beats else 'NOT met'}. Plot: `bench/plots/{plot.name}`. "
        f"Mode: {'quick' if args.quick else 'full'}; wall time "
        f"{time.perf_counter() - started:.0f} s.",
    ])
    print(body)
    if not args.no_write:
        append_result(f"Search efficiency, {args.space} (bench/search_efficiency.py)", body)
    print(f"default_reaches_grid_in={reach[default]} of {budget} "
          f"default_vs_random={median_default / median_random:.3f}")


if __name__ == "__main__":
    main()
