"""Deployment runtime: latency and memory of every compressed form of four models, deployed
(``trainables.runtime``, kernels timed per layer) beside the eager FP32 baseline, at 1 and 2
torch threads, all measured in one process.

Rows per (dataset, model, threads): reference FP32 (the eager baseline model), deployed
FP32, INT8 and INT4 (QAT), 90% unstructured (global magnitude), structured 50% (where the
model supports it), 90% + INT8. Models are measured in rounds, interleaved (the order
rotates each round), so drift hits all alike; figures are medians over the rounds.

Targets (issue 14, ratios of medians in the same run): deployed FP32 / reference FP32:
Cora GCN <= 0.15, Cora SplineConv <= 0.25, PROTEINS GIN <= 0.7; INT8 / deployed FP32:
PROTEINS GIN <= 0.8, BBBP GCN <= 0.8; structured 50% / deployed FP32 on Cora <= 0.7; no
compressed configuration above 1.05x deployed FP32; infer_peak_mb of every deployed Cora
model <= 0.3x the reference FP32's. A missed target prints a torch.profiler breakdown of
that model (top ops by self CPU time; by self CPU memory for a memory target).

    python bench/inference.py [--quick] [--only SPACE ...] [--threads N ...] [--out FILE]
                              [--data-root DIR] [--cache-dir DIR] [--no-write]

Latency does not depend on accuracy: baselines train for at most ``baseline_epochs`` (fewer
than their space files ask) and compressed models fine-tune for a few epochs only. Energy is
not measured here (no energy window): see bench/measurement.py.
"""

from __future__ import annotations

import statistics
import sys
import tempfile
import time
import warnings
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from pathlib import Path

import torch
from torch import nn
from torch.profiler import ProfilerActivity, profile

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench.common import append_result, machine, parse_args
from spaces import load_space
from trainables.baseline import get_baseline
from trainables.compressed import load_compressed
from trainables.cycle import run_cycle
from trainables.deployment import inference_figures, load_deployed
from trainables.measure import MeasureSettings, Stopwatch, measure_inference, torch_threads
from trainables.structured import input_spec, structured_support, synthetic_inputs
from trainables.tasks import build_task

SPACES = {  # bundled space file -> label
    "cora_node": "Cora, SplineConv",
    "cora_node_gcn": "Cora, GCN",
    "proteins": "PROTEINS, GIN",
    "bbbp": "BBBP, GCN",
}
REFERENCE = "reference FP32"  # the eager baseline model
FP32 = "deployed FP32"
STRUCTURED = "structured 50%"
VARIANTS = {  # row -> the cycle's config (fine-tuning added)
    FP32: {},
    "INT8": {"quant.method": "qat", "quant.bits": 8},
    "INT4": {"quant.method": "qat", "quant.bits": 4},
    "90% unstructured": {"prune.method": "global", "prune.sparsity": 0.9},
    STRUCTURED: {"prune.method": "structured", "prune.sparsity": 0.5},
    "90% + INT8": {"prune.method": "global", "prune.sparsity": 0.9, "quant.method": "qat",
                   "quant.bits": 8},
}
RATIO_TARGETS = [  # (space, row, divided by, at most)
    ("cora_node_gcn", FP32, REFERENCE, 0.15),
    ("cora_node", FP32, REFERENCE, 0.25),
    ("proteins", FP32, REFERENCE, 0.7),
    ("proteins", "INT8", FP32, 0.8),
    ("bbbp", "INT8", FP32, 0.8),
    ("cora_node", STRUCTURED, FP32, 0.7),
    ("cora_node_gcn", STRUCTURED, FP32, 0.7),
]
CEILING = 1.05  # no compressed row slower than this x deployed FP32
PEAK_SPACES = ("cora_node", "cora_node_gcn")
PEAK_SHARE = 0.3  # deployed Cora rows: infer_peak_mb <= this x the reference FP32's
FINETUNE_LR = 0.001
PROFILE_CALLS = 5  # inferences per profile
PROFILE_TOP = 8


@dataclass(frozen=True)
class Mode:
    """How much work: training, fine-tuning and measurement."""

    name: str
    baseline_epochs: int  # cap on the space file's baseline epochs
    finetune_epochs: int
    rounds: int
    settings: MeasureSettings  # one round's measurement of one row


# full: ~5-6 min on 2 idle cores (estimated from the quick mode's stage times and CPU time)
FULL = Mode("full", 20, 2, 9, MeasureSettings(warmup=3, min_repeats=15, max_repeats=45,
                                              energy_window_s=0))
# quick: checks that every row runs; its figures are smoke, not the benchmark's
QUICK = Mode("quick", 2, 1, 2, MeasureSettings(warmup=1, min_repeats=3, max_repeats=3,
                                               energy_window_s=0))
ONCE = MeasureSettings(warmup=0, min_repeats=1, max_repeats=1, energy_window_s=0)  # not timed


@dataclass
class Row:
    """One model at one thread count: what is timed, its memory and kernels, its latencies."""

    name: str
    model: nn.Module
    kernel: str
    peak_mb: float
    latencies: list[float] = field(default_factory=list)

    @property
    def median(self) -> float:
        return statistics.median(self.latencies)


@dataclass
class Check:
    """One target at one thread count; ``row`` is the model profiled when it is missed."""

    label: str
    threads: int
    value: float
    goal: float
    row: Row
    memory: bool = False

    @property
    def ok(self) -> bool:
        return self.value <= self.goal


def prepare(name: str, args, mode: Mode):
    """The space file's task and its baseline, trained for at most ``mode.baseline_epochs``;
    also the epochs the space file asks for."""
    space = load_space(name)
    dataset = space.dataset.as_dict()
    task = build_task(space.task, dataset, args.data_root, space.baseline.seed)
    training = space.baseline.model_dump(exclude={"seed"})
    asked = training["epochs"]
    training["epochs"] = min(asked, mode.baseline_epochs)
    baseline, _ = get_baseline(task, space.task, dataset, space.model.model_dump(), training,
                               space.baseline.seed, args.cache_dir, progress=False)
    return task, baseline, asked


def compress(task, baseline, mode: Mode, work: Path, threads: int) -> dict[str, Path]:
    """Each variant's model file, from the service's own cycle (few fine-tuning epochs); its
    recorded kernel plan is timed at ``threads``."""
    files = {}
    for name, config in VARIANTS.items():
        if name == STRUCTURED and structured_support(
                baseline.build(), synthetic_inputs(input_spec(task.example_inputs()))):
            continue
        epochs = mode.finetune_epochs if config else 0
        full = {**config, "finetune.epochs": epochs, "finetune.lr": FINETUNE_LR}
        result = run_cycle(full, task, baseline, lambda r: None, work / name.replace(" ", "_"),
                           measure_settings=replace(ONCE, threads=threads))
        files[name] = result.model_path
    return files


def deploy_rows(task, baseline, files: dict[str, Path], threads: int, replan: bool
                ) -> list[Row]:
    """The reference and every deployed variant, kernels planned at ``threads`` (the file's
    plan unless ``replan``), with their infer_peak_mb and kernel tag."""
    rows = []
    reference_mb = None
    for name, path in files.items():
        deployed, _ = load_deployed(path, task, replan=replan,
                                    settings=MeasureSettings(threads=threads))  # full effort
        eager, _ = load_compressed(path)
        metrics, tags = inference_figures(task, deployed, eager, replace(ONCE, threads=threads))
        rows.append(Row(name, deployed, tags["latency_kernel"], metrics["infer_peak_mb"]))
        if name == FP32:
            reference_mb = metrics["infer_peak_mb_reference"]
    return [Row(REFERENCE, baseline.build().eval(), "eager", reference_mb), *rows]


def measure_rounds(task, rows: dict[int, list[Row]], mode: Mode) -> None:
    """Every row at every thread count once per round, the order rotated each round."""
    for r in range(mode.rounds):
        for threads, at in rows.items():
            settings = replace(mode.settings, threads=threads)
            for row in at[r % len(at):] + at[:r % len(at)]:
                metrics, _ = measure_inference(task.inference(row.model), settings)
                row.latencies.append(metrics["latency_ms"])


def table(rows: list[Row]) -> list[str]:
    by_name = {row.name: row for row in rows}
    fp32, ref = by_name[FP32].median, by_name[REFERENCE].median
    lines = ["| model | latency_ms | rounds min-max | vs deployed FP32 | vs reference FP32 | "
             "infer_peak_mb | top kernel |", "|---|---|---|---|---|---|---|"]
    for name in [REFERENCE, *VARIANTS]:
        row = by_name.get(name)
        if row is None:
            lines.append(f"| {name} | n/a | | | | | (not supported by this model) |")
            continue
        lines.append(f"| {name} | {row.median:.3f} | {min(row.latencies):.3f}-"
                     f"{max(row.latencies):.3f} | {row.median / fp32:.2f} | "
                     f"{row.median / ref:.2f} | {row.peak_mb:.2f} | `{row.kernel}` |")
    return lines


def checks(space: str, threads: int, rows: list[Row]) -> list[Check]:
    """The targets that apply to ``space`` at ``threads``."""
    by_name = {row.name: row for row in rows}
    label = SPACES[space]
    found = []
    for target_space, name, base, goal in RATIO_TARGETS:
        if target_space == space and name in by_name:
            value = by_name[name].median / by_name[base].median
            found.append(Check(f"{label}: {name} / {base}", threads, value, goal, by_name[name]))
    compressed = [r for r in rows if r.name not in (REFERENCE, FP32)]
    worst = max(compressed, key=lambda r: r.median)
    found.append(Check(f"{label}: slowest compressed ({worst.name}) / {FP32}", threads,
                       worst.median / by_name[FP32].median, CEILING, worst))
    if space in PEAK_SPACES:
        heaviest = max((r for r in rows if r.name != REFERENCE), key=lambda r: r.peak_mb)
        found.append(Check(f"{label}: largest deployed infer_peak_mb ({heaviest.name}) / "
                           f"{REFERENCE}'s", threads, heaviest.peak_mb
                           / by_name[REFERENCE].peak_mb, PEAK_SHARE, heaviest, memory=True))
    return found


def profile_ops(run: Callable[[], object], threads: int, memory: bool) -> list[str]:
    """Top ops of ``PROFILE_CALLS`` inferences by self CPU time (or self CPU memory), per
    inference, as a markdown table."""
    with torch_threads(threads):
        run()
        with profile(activities=[ProfilerActivity.CPU], profile_memory=memory) as prof:
            for _ in range(PROFILE_CALLS):
                run()
    events = list(prof.key_averages())
    if memory:
        events.sort(key=lambda e: e.self_cpu_memory_usage, reverse=True)
        lines = ["| op | self CPU MB per inference | calls per inference |", "|---|---|---|"]
        for e in events[:PROFILE_TOP]:
            lines.append(f"| `{e.key}` | {e.self_cpu_memory_usage / PROFILE_CALLS / 2**20:.3f}"
                         f" | {e.count / PROFILE_CALLS:g} |")
        return lines
    events.sort(key=lambda e: e.self_cpu_time_total, reverse=True)
    total = max(sum(e.self_cpu_time_total for e in events), 1)
    lines = ["| op | self CPU ms per inference | share | calls per inference |",
             "|---|---|---|---|"]
    for e in events[:PROFILE_TOP]:
        lines.append(f"| `{e.key}` | {e.self_cpu_time_total / PROFILE_CALLS / 1e3:.3f} | "
                     f"{e.self_cpu_time_total / total:.0%} | {e.count / PROFILE_CALLS:g} |")
    return lines


def miss_lines(task, found: list[Check]) -> list[str]:
    """Each missed check, with a profile of its model (once per model and thread count)."""
    lines = []
    profiled = set()
    for check in (c for c in found if not c.ok):
        kind = "self CPU memory" if check.memory else "self CPU time"
        key = (check.row.name, check.threads, check.memory)
        missed = (f"Missed {check.label} ({check.value:.2f} > {check.goal}) at "
                  f"{check.threads} thread(s)")
        if key in profiled:
            lines += [f"{missed}: the profile of `{check.row.name}` is above.", ""]
            continue
        profiled.add(key)
        lines += [f"{missed}; where the {kind} of `{check.row.name}` goes (top {PROFILE_TOP} "
                  f"ops, {PROFILE_CALLS} inferences):", "",
                  *profile_ops(task.inference(check.row.model), check.threads, check.memory),
                  ""]
    return lines


def run_space(space: str, args, mode: Mode, work: Path) -> tuple[list[str], list[Check]]:
    """One dataset and model: train, compress, deploy at each thread count, measure, check;
    returns its markdown and its checks (missed ones profiled)."""
    watch = Stopwatch()
    with watch.stage("train"):
        task, baseline, asked = prepare(space, args, mode)
    first = args.threads[0]  # the files' plans are timed at this thread count
    with watch.stage("compress"):
        files = compress(task, baseline, mode, work / space, first)
    with watch.stage("deploy"):
        rows = {t: deploy_rows(task, baseline, files, t, replan=t != first)
                for t in args.threads}
    with watch.stage("measure"):
        measure_rounds(task, rows, mode)
    found = [c for t, at in rows.items() for c in checks(space, t, at)]
    with watch.stage("profile"):
        missed = miss_lines(task, found)
    spent = ", ".join(f"{stage} {s:.0f} s" for stage, s in watch.seconds.items())
    lines = [f"### {SPACES[space]} (`{space}`, {task.latency_mode})", "",
             f"Baseline trained {min(asked, mode.baseline_epochs)} epochs (space file: "
             f"{asked}); compressed models fine-tuned {mode.finetune_epochs} epochs (lr "
             f"{FINETUNE_LR}). Latency: median of {mode.rounds} rounds. Time: {spent}.", ""]
    for threads, at in rows.items():
        lines += [f"{threads} torch thread{'s' if threads > 1 else ''}:", "", *table(at), ""]
    return lines + missed, found


def target_lines(found: list[Check]) -> list[str]:
    lines = ["| target | threads | measured | goal | result |", "|---|---|---|---|---|"]
    for c in found:
        lines.append(f"| {c.label} | {c.threads} | {c.value:.3f} | <= {c.goal} | "
                     f"{'PASS' if c.ok else '**MISS**'} |")
    return lines


def main() -> None:
    def extra(parser):
        parser.add_argument("--only", action="append", choices=list(SPACES), metavar="SPACE",
                            help=f"run only these space files (repeatable; {', '.join(SPACES)})")
        parser.add_argument("--threads", type=int, nargs="+", default=[1, 2],
                            help="torch thread counts to measure at (default: 1 2)")
        parser.add_argument("--out", type=Path, help="also write the markdown to this file")

    args = parse_args(__doc__, "2-epoch baselines, 2 rounds of 3 calls (smoke figures)", extra)
    if min(args.threads) < 1:
        sys.exit(f"--threads must be >= 1, got {args.threads}")
    args.threads = list(dict.fromkeys(args.threads))
    warnings.filterwarnings("ignore")
    mode = QUICK if args.quick else FULL
    started = time.perf_counter()
    lines, found = [], []
    with tempfile.TemporaryDirectory(prefix="bench-inference-") as work:
        for space in dict.fromkeys(args.only or SPACES):
            space_lines, space_checks = run_space(space, args, mode, Path(work))
            lines += space_lines
            found += space_checks
    wall = time.perf_counter() - started
    smoke = " (smoke figures: not the benchmark's)" if args.quick else ""
    body = "\n".join([*lines, "Targets (ratios of medians, same run):", "",
                      *target_lines(found), "",
                      f"Mode: {mode.name}{smoke}; torch {torch.__version__}; "
                      f"wall time {wall:.0f} s."])
    print(body)
    title = "Deployment runtime (bench/inference.py)"
    if args.out:
        stamp = time.strftime("%Y-%m-%d")
        args.out.write_text(f"## {title} ({stamp})\n\nMachine: {machine()}\n\n{body}\n")
    if not args.no_write:
        append_result(title, body)
    met = sum(c.ok for c in found)
    print(f"inference: {met} of {len(found)} targets met ({wall:.0f} s)")


if __name__ == "__main__":
    main()
