"""Compression on Cora (SplineConv): file size and accuracy for every method, against the
FP32 dense baseline file, with and without fine-tuning.

Targets (compression issue): 90% sparsity <= 0.15x size; INT8 <= 0.27x; INT4 <= 0.14x;
90% sparsity + INT8 <= 0.07x. After fine-tuning: 50% sparsity within 0.5 accuracy points
of the baseline, 90% within 2 points, INT8 QAT within 1 point (test accuracy).

    python bench/compression.py [--quick] [--data-root DIR] [--no-write]
"""

from __future__ import annotations

import sys
import tempfile
import time
import warnings
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench.common import append_result, cora, parse_args
from trainables.cycle import run_cycle
from trainables.measure import MeasureSettings
from trainables.pruning import PRUNERS
from trainables.quantization import QUANTIZERS, SUPPORTED_BITS


def cycle(task, baseline, config, workdir):
    result = run_cycle(config, task, baseline, lambda r: None, workdir,
                       measure_settings=MeasureSettings(energy_window_s=0))
    return result.metrics


def main() -> None:
    args = parse_args(__doc__, "sparsity 0.5 and 0.9 only (< 3 min)")
    warnings.filterwarnings("ignore")
    started = time.perf_counter()
    _, task, baseline = cora(args)
    base_acc = baseline.metrics["test_acc"]
    epochs = 40 if args.quick else 100
    tune = {"finetune.epochs": epochs, "finetune.lr": 0.005, "finetune.schedule": "cosine",
            "finetune.weight_decay": 5e-4}
    sparsities = [0.5, 0.9] if args.quick else [round(0.1 * i, 1) for i in range(10)]
    work = Path(tempfile.mkdtemp(prefix="bench-compression-"))

    lines = [f"Baseline: SplineConv, Cora random split, test_acc {base_acc:.3f}, dense FP32 "
             f"file {baseline.metrics['size_bytes']:.0f} bytes. Fine-tuning: {epochs} epochs, "
             "Adam lr 0.005, cosine. Accuracy delta in points against the baseline.", "",
             "| pruning | sparsity | size_ratio | test_acc, no fine-tune | test_acc, fine-tuned "
             "| delta (fine-tuned) |", "|---|---|---|---|---|---|"]
    pruning = {}
    for method in [p for p in PRUNERS if p != "none"]:
        for s in sparsities:
            base_cfg = {"prune.method": method, "prune.sparsity": s}
            raw = cycle(task, baseline, {**base_cfg, "finetune.epochs": 0}, work / "x")
            tuned = cycle(task, baseline, {**base_cfg, **tune}, work / "x")
            pruning[method, s] = tuned
            lines.append(f"| {method} | {s:.1f} | {tuned['size_ratio']:.3f} | "
                         f"{raw['test_acc']:.3f} | {tuned['test_acc']:.3f} | "
                         f"{(tuned['test_acc'] - base_acc) * 100:+.1f} |")
    lines += ["", "| quantization | bits | sparsity | size_ratio | test_acc | delta | "
              "act_avg_bits | latency_ms |", "|---|---|---|---|---|---|---|---|"]
    quant = {}
    for method in [q for q in QUANTIZERS if q != "fp32"]:
        for bits in SUPPORTED_BITS:
            for s in (0.0, 0.9):
                cfg = {"quant.method": method, "quant.bits": bits, **tune}
                if s:
                    cfg.update({"prune.method": "global", "prune.sparsity": s})
                m = cycle(task, baseline, cfg, work / "x")
                quant[method, bits, s] = m
                lines.append(f"| {method} | {bits} | {s:.1f} | {m['size_ratio']:.3f} | "
                             f"{m['test_acc']:.3f} | {(m['test_acc'] - base_acc) * 100:+.1f} | "
                             f"{m['act_avg_bits']:.2f} | {m['latency_ms']:.2f} |")
    dense = cycle(task, baseline, {"finetune.epochs": 0}, work / "x")
    targets = [
        ("90% sparsity (global) size_ratio", pruning["global", 0.9]["size_ratio"], "<=", 0.15),
        ("INT8 (qat) size_ratio", quant["qat", 8, 0.0]["size_ratio"], "<=", 0.27),
        ("INT4 (qat) size_ratio", quant["qat", 4, 0.0]["size_ratio"], "<=", 0.14),
        ("90% + INT8 (global + qat) size_ratio", quant["qat", 8, 0.9]["size_ratio"], "<=", 0.07),
        ("50% (global) accuracy delta, points", (pruning["global", 0.5]["test_acc"] - base_acc)
         * 100, ">=", -0.5),
        ("90% (global) accuracy delta, points", (pruning["global", 0.9]["test_acc"] - base_acc)
         * 100, ">=", -2.0),
        ("INT8 QAT accuracy delta, points", (quant["qat", 8, 0.0]["test_acc"] - base_acc) * 100,
         ">=", -1.0),
    ]
    lines += ["", "| target | measured | goal | met |", "|---|---|---|---|"]
    for name, value, op, goal in targets:
        met = value <= goal if op == "<=" else value >= goal
        lines.append(f"| {name} | {value:.3f} | {op} {goal} | {'yes' if met else 'NO'} |")
    mode = "quick" if args.quick else "full"
    wall = time.perf_counter() - started
    lines += ["", f"Uncompressed re-save: size_ratio {dense['size_ratio']:.4f}. Mode: {mode}; "
              f"wall time {wall:.0f} s."]
    body = "\n".join(lines)
    print(body)
    if not args.no_write:
        append_result("Compression on Cora (bench/compression.py)", body)
    print("size_ratio 90%={:.3f} int8={:.3f} int4={:.3f} 90%+int8={:.3f}".format(
        pruning["global", 0.9]["size_ratio"], quant["qat", 8, 0.0]["size_ratio"],
        quant["qat", 4, 0.0]["size_ratio"], quant["qat", 8, 0.9]["size_ratio"]))


if __name__ == "__main__":
    main()
