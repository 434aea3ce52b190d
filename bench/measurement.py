"""Measurement quality on Cora (SplineConv): stability, cost, and what compression does to
latency, all in one process.

Targets (measurement issue): measuring the same model 5 times gives a latency spread
(max/min of the medians) <= 1.10 on an idle machine; measurement adds <= 15% to a Cora
trial's wall time; a 90%-sparse and an INT8 model are compared with the dense FP32 model in
the same process, naming the kernel that ran.

    python bench/measurement.py [--quick] [--data-root DIR] [--no-write]
"""

from __future__ import annotations

import statistics
import sys
import tempfile
import warnings
from pathlib import Path

import torch
from torch.profiler import profile

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench.common import append_result, cora, parse_args
from trainables.cycle import load_compressed, run_cycle
from trainables.measure import MeasureSettings, measure_inference


def top_kernel(fn) -> str:
    """The op that took the most self CPU time in one call (what actually ran)."""
    with profile() as prof:
        fn()
    events = sorted(prof.key_averages(), key=lambda e: e.self_cpu_time_total, reverse=True)
    top = events[0]
    share = top.self_cpu_time_total / max(sum(e.self_cpu_time_total for e in events), 1)
    return f"{top.key} ({share:.0%} of CPU time)"


def main() -> None:
    args = parse_args(__doc__, "fewer rounds (< 3 min)")
    warnings.filterwarnings("ignore")
    torch.set_num_threads(1)  # as inside a Ray trial
    _, task, baseline = cora(args)
    settings = MeasureSettings()
    work = Path(tempfile.mkdtemp(prefix="bench-measure-"))

    # 1. stability: the dense model measured 5 times
    dense = baseline.build().eval()
    runs = [measure_inference(task.inference(dense), settings)[0] for _ in range(5)]
    medians = [r["latency_ms"] for r in runs]
    energies = [r["energy_mj"] for r in runs]
    spread = max(medians) / min(medians)
    energy_spread = max(energies) / min(energies)

    # 2. cost of measuring inside a typical trial (and a long one)
    cost_rows = []
    for epochs in ([50] if args.quick else [50, 200]):
        config = {"prune.method": "global", "prune.sparsity": 0.9, "quant.method": "qat",
                  "quant.bits": 8, "finetune.epochs": epochs, "finetune.lr": 0.005}
        m = run_cycle(config, task, baseline, lambda r: None, work / str(epochs),
                      measure_settings=settings).metrics
        cost_rows.append((epochs, m["cycle_s"], m["measure_s"],
                          m["measure_s"] / (m["cycle_s"] - m["measure_s"])))

    # 3. truth: dense vs 90% sparse vs INT8, alternating, same process
    models = {"dense FP32": dense}
    for name, config in {
        "90% sparse (global)": {"prune.method": "global", "prune.sparsity": 0.9},
        "INT8 (qat)": {"quant.method": "qat", "quant.bits": 8},
    }.items():
        result = run_cycle({**config, "finetune.epochs": 0}, task, baseline, lambda r: None,
                           work / name.split()[0], measure_settings=MeasureSettings(
                               warmup=0, min_repeats=1, max_repeats=1, energy_window_s=0))
        models[name], _ = load_compressed(result.model_path)
    rounds = 2 if args.quick else 4
    latency = {name: [] for name in models}
    energy = {name: [] for name in models}
    for _ in range(rounds):
        for name, model in models.items():
            metrics, tags = measure_inference(task.inference(model), settings)
            latency[name].append(metrics["latency_ms"])
            energy[name].append(metrics["energy_mj"])
    source = tags["energy_source"]
    base_lat = statistics.median(latency["dense FP32"])
    rows = []
    for name, model in models.items():
        lat = statistics.median(latency[name])
        kernel = top_kernel(task.inference(model))
        rows.append(f"| {name} | {lat:.2f} | {lat / base_lat:.2f}x | "
                    f"{statistics.median(energy[name]):.1f} | {kernel} |")

    body = "\n".join([
        "All figures single-threaded (as in a Ray trial), full-graph Cora inference.", "",
        f"Stability (dense model, 5 measurements): latency medians "
        f"{', '.join(f'{v:.2f}' for v in medians)} ms, spread **{spread:.3f}** (target <= 1.10); "
        f"energy spread {energy_spread:.3f}; energy source `{source}`.", "",
        "| trial | cycle_s | measure_s | measurement cost |", "|---|---|---|---|",
        *[f"| global 90% + qat INT8, {e} epochs | {c:.2f} | {s:.2f} | {f:.1%} |"
          for e, c, s, f in cost_rows],
        "", "Target: measurement <= 15% of a trial's wall time.", "",
        "| model | latency_ms (median of rounds) | vs dense | energy_mj per inference | "
        "top kernel |", "|---|---|---|---|---|", *rows, "",
        "Compression does not make this inference faster: pruned and INT8 weights are "
        "dequantized into dense float tensors, so the same dense kernels run. Activation "
        "fake-quantization (QAT) adds its own ops.",
        "",
        f"Energy here is `{source}`: the energy spread over 5 identical measurements "
        f"({energy_spread:.2f}x) bounds what energy differences mean on this machine.",
    ])
    print(body)
    if not args.no_write:
        append_result("Measurement on Cora (bench/measurement.py)", body)
    ratios = {n: statistics.median(latency[n]) / base_lat for n in models}
    print(f"latency_spread={spread:.3f} measure_cost={cost_rows[0][3]:.1%} "
          f"sparse90_vs_dense={ratios['90% sparse (global)']:.2f}x "
          f"int8_vs_dense={ratios['INT8 (qat)']:.2f}x")


if __name__ == "__main__":
    main()
