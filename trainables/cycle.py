"""The compress-and-fine-tune cycle of one trial. Imports neither Ray nor MLflow.

baseline -> prune -> prepare quantization -> fine-tune (masks held, ``report`` per epoch)
-> convert -> save the compressed file -> reload it -> evaluate -> measure.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from torch import Tensor
from torch.nn.utils import parametrize

from trainables import measure
from trainables.baseline import Baseline
from trainables.models import build_model, compression_targets, zero_fraction
from trainables.params import validate_config
from trainables.pruning import attach_masks, compute_masks
from trainables.quantization import FakeQuant, get_quantizer
from trainables.schedules import SCHEDULES
from trainables.storage import describe, load_state, save_model

Report = Callable[[dict[str, Any]], None]

DEFAULTS: dict[str, Any] = {
    "prune.method": "none",
    "prune.sparsity": 0.0,
    "quant.method": "fp32",
    "quant.bits": 8,
    "finetune.epochs": 0,
    "finetune.lr": 0.01,
    "finetune.schedule": "constant",
    "finetune.weight_decay": 0.0,
}
MODEL_FILE = "model.gnnz"


@dataclass
class CycleResult:
    """Final metrics (numbers, units in names), tags (how they were obtained), the model file."""

    metrics: dict[str, float]
    tags: dict[str, str]
    model_path: Path


def _final_weights(targets) -> dict[str, Tensor]:
    """Each target's weight with masks applied but without fake quantization."""
    weights = {}
    for name, t in targets.items():
        if parametrize.is_parametrized(t.module, t.attr):
            chain = t.module.parametrizations[t.attr]
            w = chain.original
            for p in chain:
                if not isinstance(p, FakeQuant):
                    w = p(w)
        else:
            w = t.tensor
        weights[name] = w.detach() + 0.0  # -0.0 -> +0.0
    return weights


def _fine_tune(task, model, config: dict[str, Any], report: Report) -> None:
    epochs = config["finetune.epochs"]
    optimizer = torch.optim.Adam(
        model.parameters(), lr=config["finetune.lr"], weight_decay=config["finetune.weight_decay"]
    )
    scheduler = SCHEDULES[config["finetune.schedule"]](optimizer, epochs)
    for epoch in range(1, epochs + 1):
        loss = task.train_step(model, optimizer)
        if not math.isfinite(loss):
            raise FloatingPointError(f"fine-tuning diverged: loss is {loss} at epoch {epoch}")
        if scheduler is not None:
            scheduler.step()
        val = task.evaluate(model)[task.search_metric]
        report({"epoch": epoch, "train_loss": loss, task.search_metric: val})


def load_compressed(path: str | Path) -> tuple[torch.nn.Module, dict[str, Any]]:
    """Rebuild a model from a compressed file written by :func:`run_cycle`."""
    state, meta = load_state(path)
    spec = meta["model"]
    model = build_model(spec["name"], meta["num_features"], meta["num_classes"],
                        **spec.get("kwargs", {}))
    model.load_state_dict(state)
    return model, meta


def run_cycle(
    config: dict[str, Any],
    task,
    baseline: Baseline,
    report: Report,
    out_dir: str | Path,
    seed: int = 0,
    latency_warmup: int = 5,
    latency_repeats: int = 30,
) -> CycleResult:
    """Compress ``baseline`` as ``config`` says, fine-tune, save, reload, evaluate, measure."""
    started = time.perf_counter()
    config = validate_config({**DEFAULTS, **config})
    torch.manual_seed(seed)
    model = baseline.build()
    targets = compression_targets(model)

    method = config["prune.method"]
    masks = compute_masks(method, targets, config.get("prune.sparsity", 0.0), seed)
    attach_masks(targets, masks)
    quantizer = get_quantizer(config["quant.method"])
    bits = config.get("quant.bits")
    quantizer.prepare(targets, bits)

    tune_start = time.perf_counter()
    _fine_tune(task, model, config, report)
    finetune_s = time.perf_counter() - tune_start

    weights = _final_weights(targets)
    quantized = quantizer.convert(weights, targets, bits)
    for name, t in targets.items():
        if parametrize.is_parametrized(t.module, t.attr):
            parametrize.remove_parametrizations(t.module, t.attr, leave_parametrized=False)
        final = quantized[name].dequantize() if name in quantized else weights[name]
        t.tensor.data.copy_(final)

    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    path = out_dir / MODEL_FILE
    meta = {
        "model": baseline.model,
        "num_features": baseline.num_features,
        "num_classes": baseline.num_classes,
        "config": config,
        "baseline_key": baseline.key,
    }
    size_bytes = save_model(path, model.state_dict(), quantized, meta)

    reloaded, _ = load_compressed(path)
    scores = task.evaluate(reloaded)
    reloaded_targets = compression_targets(reloaded)
    latency = measure.measure_latency(task.inference(reloaded), latency_warmup, latency_repeats)
    compressible = sum(t.tensor.numel() for t in reloaded_targets.values())
    avg_bits = (
        sum((bits if name in quantized else 32) * t.tensor.numel()
            for name, t in reloaded_targets.items()) / compressible
    )
    metrics = {
        **scores,
        "size_bytes": float(size_bytes),
        "size_ratio": size_bytes / baseline.metrics["size_bytes"],
        "sparsity_actual": zero_fraction([t.tensor for t in reloaded_targets.values()]),
        "params_nonzero": float(sum(int((p != 0).sum()) for p in reloaded.parameters())),
        "avg_bits": avg_bits,
        "latency_ms": latency.median_ms,
        "latency_ms_p10": latency.p10_ms,
        "latency_ms_p90": latency.p90_ms,
        "peak_rss_mb": measure.peak_rss_mb(),
        "finetune_s": finetune_s,
        "cycle_s": time.perf_counter() - started,
    }
    layouts = describe(path)
    tags = {
        "latency_kernel": "float",  # weights are dequantized; no integer kernel runs
        "latency_threads": str(latency.threads),
        "latency_repeats": str(latency.repeats),
        "latency_warmup": str(latency.warmup),
        "latency_mode": "full_graph",
        "storage_layouts": ",".join(
            f"{e['name']}:{e['layout']}{'/int' + str(e['bits']) if e['bits'] else ''}"
            for e in layouts
        ),
    }
    return CycleResult(metrics=metrics, tags=tags, model_path=path)
