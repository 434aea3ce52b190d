"""Service overhead: the same 8 trial configurations (a) in a plain Python loop, (b) through
the service (Ray Tune + Optuna's trial plumbing + MLflow) one at a time, (c) two at a time on
2 cores; plus where a Cora trial spends its time.

Targets (search issue): (b)/(a) <= 1.10; (c)/(a) <= 0.65 (the limit is 0.5).

    python bench/overhead.py [--quick] [--data-root DIR] [--no-write]
"""

from __future__ import annotations

import os
import statistics
import subprocess
import sys
import tempfile
import time
import warnings
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench.common import append_result, cora, parse_args
from search.env import apply_quiet_env
from trainables.measure import MeasureSettings

CONFIGS = [
    {"prune.method": "global", "prune.sparsity": 0.9, "quant.method": "qat", "quant.bits": 8},
    {"prune.method": "global", "prune.sparsity": 0.5, "quant.method": "fp32"},
    {"prune.method": "fine_grained", "prune.sparsity": 0.7, "quant.method": "qat",
     "quant.bits": 4},
    {"prune.method": "random", "prune.sparsity": 0.3, "quant.method": "fp32"},
    {"prune.method": "regularization", "prune.sparsity": 0.8, "quant.method": "ptq",
     "quant.bits": 8},
    {"prune.method": "structured", "prune.sparsity": 0.5, "quant.method": "fp32"},
    {"prune.method": "none", "quant.method": "degree_quant", "quant.bits": 8},
    {"prune.method": "global", "prune.sparsity": 0.6, "prune.schedule": "gradual",
     "quant.method": "a2q", "quant.bits": 4},
]
STAGES = ["time_setup_s", "finetune_s", "time_convert_s", "time_save_s", "time_reload_s",
          "time_evaluate_s", "measure_s", "tracking_s"]


def main() -> None:
    args = parse_args(__doc__, "30 instead of 100 epochs")
    warnings.filterwarnings("ignore")
    apply_quiet_env()
    from analysis.load import load_trials
    from search.run import SearchSettings, run_search
    from trainables.cycle import run_cycle

    epochs = 30 if args.quick else 100
    configs = [{**c, "finetune.epochs": epochs, "finetune.lr": 0.005} for c in CONFIGS]
    space, task, baseline = cora(args)
    measure = MeasureSettings()  # the service's defaults, energy included
    work = Path(tempfile.mkdtemp(prefix="bench-overhead-"))

    # (a) plain loop, this process, all cores
    start = time.perf_counter()
    loop_metrics = [run_cycle({**space.defaults(), **c}, task, baseline, lambda r: None,
                              work / f"loop{i}", measure_settings=measure).metrics
                    for i, c in enumerate(configs)]
    loop_s = time.perf_counter() - start
    # (a1) the same loop on one torch thread: one core's pace, and so the floor of (c)
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    start = time.perf_counter()
    for i, c in enumerate(configs):
        run_cycle({**space.defaults(), **c}, task, baseline, lambda r: None,
                  work / f"loop1t{i}", measure_settings=measure)
    one_thread_s = time.perf_counter() - start
    torch.set_num_threads(threads)

    service = {}
    for concurrency in (1, 2):
        settings = SearchSettings(
            name=f"overhead-{concurrency}", trials=len(configs), concurrency=concurrency,
            tracking_uri=f"sqlite:///{work / 'mlflow.db'}", storage=work / "ray",
            data_root=args.data_root, cache_dir=args.cache_dir, progress=False,
            measure=measure, points=configs)
        start = time.perf_counter()
        outcome = run_search(space, settings)
        service[concurrency] = time.perf_counter() - start
        assert outcome.completed == len(configs), outcome
    trials = load_trials(["overhead-1"], f"sqlite:///{work / 'mlflow.db'}").frame
    fixed = fixed_costs()

    ratio_b, ratio_c = service[1] / loop_s, service[2] / loop_s
    floor_c = one_thread_s / 2 / loop_s  # two 1-thread trials side by side, no overhead at all
    once = sum(fixed.values())
    per_trial = (service[1] - loop_s - once) / len(configs)
    stage_rows = []
    for stage in STAGES:
        source = trials if stage == "tracking_s" else None
        values = (source[stage].tolist() if source is not None and stage in source
                  else [m.get(stage, 0.0) for m in loop_metrics])
        stage_rows.append(f"| {stage} | {statistics.median(values):.3f} | "
                          f"{sum(values) / len(values):.3f} |")
    cycle = statistics.median(m["cycle_s"] for m in loop_metrics)
    body = "\n".join([
        f"8 configurations (every pruning and quantization method), {epochs} fine-tuning "
        "epochs, the service's measurement (1 s energy window). Wall times include Ray's "
        "start and stop and MLflow tracking for (b) and (c).", "",
        "| run | wall s | vs (a) | target |", "|---|---|---|---|",
        f"| (a) plain loop, {os.cpu_count()} torch threads | {loop_s:.1f} | 1.00 | |",
        f"| (b) service, 1 trial at a time (all CPUs to it) | {service[1]:.1f} | "
        f"{ratio_b:.2f} | <= 1.10 |",
        f"| (c) service, 2 trials at a time (1 CPU each) | {service[2]:.1f} | {ratio_c:.2f} | "
        "<= 0.65 |",
        f"| (a1) plain loop, 1 torch thread | {one_thread_s:.1f} | "
        f"{one_thread_s / loop_s:.2f} | |", "",
        f"Two threads make the loop x{one_thread_s / loop_s:.2f} faster, so two 1-thread "
        f"trials side by side cannot beat (a1)/2 = x{floor_c:.2f} of (a) even with no overhead "
        f"at all; (c) is x{service[2] / one_thread_s * 2:.2f} of that floor.", "",
        "Paid once per search, measured alone: "
        + ", ".join(f"{k} {v:.1f} s" for k, v in fixed.items())
        + f" ({once:.1f} s). (b) less these: {service[1] - once:.1f} s, "
        f"x{(service[1] - once) / loop_s:.2f} of (a); what remains is "
        f"{per_trial:.2f} s per trial of Tune, Optuna and MLflow plumbing.", "",
        f"Where a trial's time goes (plain loop; `tracking_s` is the driver's MLflow time per "
        f"trial in (b)); median cycle {cycle:.2f} s:", "",
        "| stage | median s | mean s |", "|---|---|---|", *stage_rows,
    ])
    print(body)
    if not args.no_write:
        append_result("Service overhead (bench/overhead.py)", body)
    print(f"overhead b/a={ratio_b:.2f} c/a={ratio_c:.2f} c_floor={floor_c:.2f} "
          f"per_trial_s={per_trial:.2f}")


def fixed_costs() -> dict[str, float]:
    """What a search pays once, not per trial: starting and stopping the local Ray, and a
    fresh worker importing the trial's module (Ray Tune, torch, PyG, the cycle)."""
    import ray

    from search import cluster
    from search.run import OBJECT_STORE_BYTES

    start = time.perf_counter()
    cluster.connect(None, OBJECT_STORE_BYTES)
    ray.shutdown()
    ray_s = time.perf_counter() - start
    start = time.perf_counter()
    subprocess.run([sys.executable, "-c", "import search.trial"],  # what a worker imports
                   check=True, cwd=Path(__file__).resolve().parents[1])
    return {"Ray start and stop": ray_s, "worker imports": time.perf_counter() - start}


if __name__ == "__main__":
    main()
