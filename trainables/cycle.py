"""The compress-and-fine-tune cycle of one trial. Imports neither Ray nor MLflow.

baseline -> prune (masks) -> prepare quantization -> fine-tune (masks held or ramped,
``report`` per epoch) -> bake masks, remove pruned channels (structured) -> quantize
(calibrate for PTQ) -> save the compressed file -> reload it -> evaluate -> measure.
"""

from __future__ import annotations

import itertools
import math
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from torch import nn
from torch.nn.utils import parametrize

from trainables import measure
from trainables.baseline import Baseline
from trainables.model_file import StorageError, describe, load_state, save_model
from trainables.models import build_model, compression_targets
from trainables.params import check_fit, complete_config
from trainables.pruning import apply_masks, compute_masks, get_pruner, penalty, sparsity_at
from trainables.quantization import FakeQuant, attach_activation_quant, get_quantizer
from trainables.schedules import SCHEDULES
from trainables.structured import remove_zero_channels
from trainables.tasks import CrossValidation, summarize_folds, train_step

Report = Callable[[dict[str, Any]], None]

MODEL_FILE = "model.gnnz"
QUANTIZER_LR = 0.05  # learned quantizer state (A2Q bit-widths, steps) moves in whole bits


@dataclass
class CycleResult:
    """Final metrics (numbers, units in names), tags (how they were obtained), the model file."""

    metrics: dict[str, float]
    tags: dict[str, str]
    model_path: Path


def bake_parametrizations(model: nn.Module) -> None:
    """Replace every parametrized weight by its masked value, without fake quantization."""
    for module in list(model.modules()):
        if not parametrize.is_parametrized(module):
            continue
        for attr in list(module.parametrizations.keys()):
            chain = module.parametrizations[attr]
            value = chain.original
            for step in chain:
                if not isinstance(step, FakeQuant):
                    value = step(value)
            value = value.detach() + 0.0  # -0.0 -> +0.0
            parametrize.remove_parametrizations(module, attr, leave_parametrized=False)
            getattr(module, attr).data.copy_(value)


def _snapshot(model: nn.Module) -> dict[str, torch.Tensor]:
    """Copies of every parameter and buffer (state_dict would not do: PyG's Linear saves its
    parametrized weight under two names)."""
    tensors = itertools.chain(model.named_parameters(), model.named_buffers())
    return {name: t.detach().clone() for name, t in tensors}


def _restore(model: nn.Module, snapshot: dict[str, torch.Tensor]) -> None:
    tensors = dict(itertools.chain(model.named_parameters(), model.named_buffers()))
    with torch.no_grad():
        for name, value in snapshot.items():
            tensors[name].copy_(value)


def _check_round_trip(model: nn.Module, reloaded: nn.Module, path: Path) -> None:
    """Every trial verifies that its file gives back exactly the weights it evaluated."""
    saved, loaded = model.state_dict(), reloaded.state_dict()
    for name, tensor in saved.items():
        if name not in loaded or not torch.equal(tensor, loaded[name]):
            raise StorageError(f"{path}: tensor {name!r} did not reload to identical values")


def load_compressed(path: str | Path) -> tuple[nn.Module, dict[str, Any]]:
    """Rebuild a model from a compressed file written by :func:`run_cycle`."""
    state, meta = load_state(path)
    spec = meta["model"]
    model = build_model(spec["name"], meta["num_features"], meta["num_classes"],
                        **spec.get("kwargs", {}))
    if meta.get("activation_quant"):
        attach_activation_quant(model, meta["activation_quant"], frozen=True)
    model.load_state_dict(state)
    return model.eval(), meta


def run_cycle(
    config: dict[str, Any],
    task,
    baseline: Baseline,
    report: Report,
    out_dir: str | Path,
    seed: int = 0,
    measure_settings: measure.MeasureSettings | None = None,
) -> CycleResult:
    """Compress ``baseline`` as ``config`` says, fine-tune, save, reload, evaluate, measure.

    For a :class:`~trainables.tasks.CrossValidation` task the cycle runs once per fold, from
    that fold's baseline; per-epoch reports carry ``fold`` and count epochs across folds, and
    the final metrics are means over folds, with ``<score>_std`` beside each val/test score.
    """
    if not isinstance(task, CrossValidation):
        return _run_one(config, task, baseline, report, out_dir, seed, measure_settings)
    if baseline.folds is None or len(baseline.folds) != len(task.folds):
        raise ValueError(f"a {len(task.folds)}-fold task needs one baseline per fold")
    epochs = int(complete_config(config)["finetune.epochs"])
    results = []
    for k, (fold_task, fold_baseline) in enumerate(zip(task.folds, baseline.folds,
                                                       strict=True)):
        def fold_report(metrics: dict[str, Any], k: int = k) -> None:
            report({**metrics, "fold": k, "epoch": k * epochs + metrics["epoch"]})

        results.append(_run_one(config, fold_task, fold_baseline, fold_report,
                                Path(out_dir) / f"fold{k}", seed, measure_settings))
    metrics = summarize_folds([r.metrics for r in results])
    tags = {**results[0].tags, "folds": str(len(results)),
            "model_file": "fold0 (one file per fold)"}
    return CycleResult(metrics=metrics, tags=tags, model_path=results[0].model_path)


def _run_one(
    config: dict[str, Any],
    task,
    baseline: Baseline,
    report: Report,
    out_dir: str | Path,
    seed: int = 0,
    measure_settings: measure.MeasureSettings | None = None,
) -> CycleResult:
    """One cycle on one split."""
    started = time.perf_counter()
    config = complete_config(config)
    check_fit(config, task.transductive, baseline.model["name"])
    settings = measure_settings or measure.MeasureSettings()
    watch = measure.Stopwatch()
    rss_scope = "trial" if measure.reset_peak_rss() else "process"
    trial_tracker = measure.energy_tracker() if settings.energy_window_s > 0 else None
    with watch.stage("setup"):  # baseline weights into a model, masks, quantizers
        torch.manual_seed(seed)
        model = baseline.build()
        targets = compression_targets(model)
        weights_before = sum(t.tensor.numel() for t in targets.values())

        method = config["prune.method"]
        pruner = get_pruner(method)
        final = config.get("prune.sparsity", 0.0)
        schedule = config.get("prune.schedule", "one_shot")
        epochs = config["finetune.epochs"]
        # regularize first, then prune, keeping at least one epoch to fine-tune the mask
        start = min(math.ceil(epochs / 2), max(epochs - 1, 0)) if pruner.penalty else 0
        current = None

        def prune_to(sparsity: float) -> None:
            nonlocal current
            if method != "none" and sparsity != current:
                apply_masks(model, compute_masks(method, model, targets, sparsity, seed))
                current = sparsity

        # Masks go on before fake quantization, so quantizers see the pruned weights.
        prune_to(sparsity_at(1, start, epochs, final, schedule) if epochs else 0.0)
        quantizer = get_quantizer(config["quant.method"])
        bits = config.get("quant.bits")
        quantizer.prepare(model, targets, bits, task.num_nodes if task.transductive else 0)

        def extra_loss():
            terms = [quantizer.penalty(model)]
            if pruner.penalty and (current or 0.0) == 0.0:
                terms.append(config["prune.strength"] * penalty(targets, config["prune.penalty"]))
            terms = [t for t in terms if t is not None]
            return sum(terms) if terms else None

        quant_params = [p for n, p in model.named_parameters() if n.startswith("act_quant.")]
        model_params = [p for n, p in model.named_parameters() if not n.startswith("act_quant.")]
        optimizer = torch.optim.Adam(
            [{"params": model_params},
             {"params": quant_params, "lr": QUANTIZER_LR, "weight_decay": 0.0}],
            lr=config["finetune.lr"], weight_decay=config["finetune.weight_decay"],
        )
        scheduler = SCHEDULES[config["finetune.schedule"]](optimizer, epochs)
    # Keep the weights of the best validation epoch among those at the final sparsity (the
    # PyG benchmark protocol); epoch 0 (pruned, not yet trained) is a candidate too.
    best: tuple[float, int, dict] | None = None

    def consider(epoch: int, val: float) -> None:
        nonlocal best
        if (current or 0.0) == final and (best is None or val > best[0]):
            best = (val, epoch, _snapshot(model))

    with watch.stage("finetune"):
        ranges_ready = all(bool(q.ready) for q in getattr(model, "act_quant", {}).values())
        if epochs and ranges_ready:  # activation ranges are learned during the first epoch
            consider(0, task.evaluate(model)[task.search_metric])
        for epoch in range(1, epochs + 1):
            prune_to(sparsity_at(epoch, start, epochs, final, schedule))
            loss = train_step(task, model, optimizer, extra_loss, config["finetune.grad_clip"])
            if not math.isfinite(loss):
                raise FloatingPointError(f"fine-tuning diverged: loss is {loss} at epoch {epoch}")
            if scheduler is not None:
                scheduler.step()
            val = task.evaluate(model)[task.search_metric]
            report({"epoch": epoch, "train_loss": loss, task.search_metric: val,
                    "prune_sparsity": current or 0.0})
            consider(epoch, val)
        if best is not None:
            _restore(model, best[2])

    with watch.stage("convert"):  # final masks, channel removal, integers, calibration
        prune_to(final)  # schedules that had not reached the target (e.g. 0 epochs)
        bake_parametrizations(model)
        model_spec = {**baseline.model, "kwargs": dict(baseline.model.get("kwargs", {}))}
        if pruner.scope == "channel":
            model_spec["kwargs"].update(remove_zero_channels(model, task.example_inputs()))
            targets = compression_targets(model)
        weights = {name: t.tensor.detach().clone() for name, t in targets.items()}
        quantized = quantizer.convert(weights, targets, bits)
        for name, qt in quantized.items():
            targets[name].tensor.data.copy_(qt.dequantize())
        model.eval()
        calibration_forward, calibration_rows = task.calibration(model)
        quantizer.calibrate(model, calibration_forward, calibration_rows)
        quantizer.finalize(model)

    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    path = out_dir / MODEL_FILE
    meta = {
        "model": model_spec,
        "num_features": baseline.num_features,
        "num_classes": baseline.num_classes,
        "config": config,
        "baseline_key": baseline.key,
        "activation_quant": quantizer.activation_spec,
    }
    with watch.stage("save"):
        size_bytes = save_model(path, model.state_dict(), quantized, meta)
    with watch.stage("reload"):
        reloaded, _ = load_compressed(path)
        _check_round_trip(model, reloaded, path)
    with watch.stage("evaluate"):
        scores = task.evaluate(reloaded)
    final_targets = compression_targets(reloaded)
    cost, cost_tags = measure.measure_inference(task.inference(reloaded), settings)
    nonzero = sum(int((t.tensor != 0).sum()) for t in final_targets.values())
    stored = sum(t.tensor.numel() for t in final_targets.values())
    metrics = {
        **scores,
        "size_bytes": float(size_bytes),
        "size_ratio": size_bytes / baseline.metrics["size_bytes"],
        "sparsity_actual": 1.0 - nonzero / weights_before,
        "params_nonzero": float(sum(int((p != 0).sum()) for p in reloaded.parameters())),
        "avg_bits": float(bits) if quantized else 32.0,
        "act_avg_bits": quantizer.activation_bits(reloaded, bits),
        "weights_stored": float(stored),
        **cost,
        "peak_rss_mb": measure.peak_rss_mb(),
        "finetune_best_epoch": float(best[1]) if best is not None else 0.0,
        "finetune_s": watch.seconds["finetune"],
        **{f"time_{stage}_s": seconds for stage, seconds in watch.seconds.items()
           if stage != "finetune"},
        "cycle_s": time.perf_counter() - started,
    }
    if trial_tracker is not None:
        metrics["trial_energy_j"] = measure.stop_joules(trial_tracker)
    tags = {
        "latency_kernel": "float",  # weights are dequantized; no integer kernel runs
        **cost_tags,
        "latency_mode": task.latency_mode,
        "peak_rss_scope": rss_scope,
        "roundtrip": "exact",
        "storage_layouts": ",".join(
            f"{e['name']}:{e['layout']}{'/int' + str(e['bits']) if e['bits'] else ''}"
            for e in describe(path)
        ),
    }
    if pruner.scope == "channel":
        tags["structured_kwargs"] = ",".join(f"{k}={v}" for k, v in model_spec["kwargs"].items())
    return CycleResult(metrics=metrics, tags=tags, model_path=path)
