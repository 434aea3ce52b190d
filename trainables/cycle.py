"""The compress-and-fine-tune cycle of one trial, as named stages. Imports neither Ray nor
MLflow.

``setup`` (baseline weights, the pruner's masks, the quantizer) -> ``finetune`` (masks held
or ramped, ``report`` per epoch, the best validation epoch kept) -> ``convert`` (final masks
baked, pruned channels removed, integers, calibration) -> ``save_and_reload`` (the
compressed file, read back and compared) -> ``evaluate`` (the eager reloaded model) ->
``deploy`` (its deployed form, kernels timed and the plan written into the file; its scores
are the trial's) -> ``measure`` (deployed and reference). On a GPU (``device`` cuda) the
data and the model live there from ``setup`` to ``evaluate``; the file is written and reloaded
from CPU copies; ``deploy`` is skipped (the runtime's kernels are CPU kernels) and the eager
reloaded model is measured on the GPU (tag ``latency_kernel=eager:cuda``). The methods act
through their lifecycles (:class:`~trainables.pruning.Pruner`,
:class:`~trainables.quantization.Quantizer`): no stage has a branch for any method.
"""

from __future__ import annotations

import itertools
import math
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from torch import Tensor, nn

from trainables import deployment, measure
from trainables.baseline import Baseline
from trainables.compressed import load_compressed
from trainables.device import resolve_device, task_to
from trainables.model_file import StorageError, describe, save_model
from trainables.models import Target, compression_targets
from trainables.params import check_fit, complete_config
from trainables.pruning import Pruner, bake_parametrizations, make_pruner
from trainables.quantization import QuantizedTensor, Quantizer, get_quantizer
from trainables.schedules import SCHEDULES
from trainables.structured import input_spec, structured_support, synthetic_inputs
from trainables.tasks.common import CrossValidation, summarize_folds, train_step

__all__ = ["MODEL_FILE", "CycleResult", "bake_parametrizations", "load_compressed", "run_cycle"]

Report = Callable[[dict[str, Any]], None]

MODEL_FILE = "model.gnnz"
QUANTIZER_LR = 0.05  # learned quantizer state (A2Q bit-widths, steps) moves in whole bits


@dataclass
class CycleResult:
    """Final metrics (numbers, units in names), tags (how they were obtained), the model file."""

    metrics: dict[str, float]
    tags: dict[str, str]
    model_path: Path


@dataclass
class Compression:
    """The model under compression and the two methods acting on it. It is also the
    training step's hooks: the methods' loss terms and the pruner's per-step call."""

    model: nn.Module
    targets: dict[str, Target]
    pruner: Pruner
    quantizer: Quantizer
    bits: int | None
    weights_before: int  # compressible weights of the baseline
    header: dict[str, Any] = field(default_factory=dict)  # the pruner's record (removed channels)

    def extra_loss(self) -> Tensor | None:
        terms = [t for t in (self.quantizer.penalty(self.model), self.pruner.penalty())
                 if t is not None]
        return sum(terms) if terms else None

    def after_backward(self) -> None:
        self.pruner.after_backward()


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


def run_cycle(
    config: dict[str, Any],
    task,
    baseline: Baseline,
    report: Report,
    out_dir: str | Path,
    seed: int = 0,
    measure_settings: measure.MeasureSettings | None = None,
    device: str = "cpu",
) -> CycleResult:
    """Compress ``baseline`` as ``config`` says, fine-tune, save, reload, evaluate, measure,
    on ``device`` (``cpu``, ``cuda``, ``cuda:N``; one that is not here is refused first).

    For a :class:`~trainables.tasks.CrossValidation` task the cycle runs once per fold, from
    that fold's baseline; per-epoch reports carry ``fold`` and count epochs across folds, and
    the final metrics are means over folds, with ``<score>_std`` beside each val/test score.
    """
    resolve_device(device)
    if not isinstance(task, CrossValidation):
        return _run_one(config, task, baseline, report, out_dir, seed, measure_settings,
                        device)
    if baseline.folds is None or len(baseline.folds) != len(task.folds):
        raise ValueError(f"a {len(task.folds)}-fold task needs one baseline per fold")
    epochs = int(complete_config(config)["finetune.epochs"])
    results = []
    for k, (fold_task, fold_baseline) in enumerate(zip(task.folds, baseline.folds,
                                                       strict=True)):
        def fold_report(metrics: dict[str, Any], k: int = k) -> None:
            report({**metrics, "fold": k, "epoch": k * epochs + metrics["epoch"]})

        results.append(_run_one(config, fold_task, fold_baseline, fold_report,
                                Path(out_dir) / f"fold{k}", seed, measure_settings, device))
    metrics = summarize_folds([r.metrics for r in results])
    tags = {**results[0].tags, "folds": str(len(results)),
            "model_file": "fold0 (one file per fold)"}
    return CycleResult(metrics=metrics, tags=tags, model_path=results[0].model_path)


def setup(config: dict[str, Any], task, baseline: Baseline, seed: int,
          device: str | torch.device = "cpu") -> Compression:
    """The baseline's weights in a fresh model on ``device``, the pruner's first masks, then
    the quantizer (masks go on before fake quantization, so quantizers see the pruned
    weights)."""
    torch.manual_seed(seed)
    model = baseline.build(device)
    targets = compression_targets(model)
    pruner = make_pruner(config, seed)
    pruner.prepare(model, targets, config["finetune.epochs"], task.example_inputs())
    quantizer = get_quantizer(config["quant.method"])
    bits = config.get("quant.bits")
    quantizer.prepare(model, targets, bits, task.num_nodes if task.transductive else 0)
    model.to(device)  # what the quantizer added (observers, per-node state)
    weights_before = sum(t.tensor.numel() for t in targets.values())
    return Compression(model, targets, pruner, quantizer, bits, weights_before)


def make_optimizer(model: nn.Module, config: dict[str, Any]):
    """Adam over the weights, and over learned quantizer state at its own rate; the
    learning-rate schedule (or None)."""
    quant = [p for n, p in model.named_parameters() if n.startswith("act_quant.")]
    weights = [p for n, p in model.named_parameters() if not n.startswith("act_quant.")]
    optimizer = torch.optim.Adam(
        [{"params": weights}, {"params": quant, "lr": QUANTIZER_LR, "weight_decay": 0.0}],
        lr=config["finetune.lr"], weight_decay=config["finetune.weight_decay"],
    )
    return optimizer, SCHEDULES[config["finetune.schedule"]](optimizer, config["finetune.epochs"])


def finetune(task, c: Compression, config: dict[str, Any], report: Report) -> int:
    """Fine-tune with the masks the pruner holds each epoch; keep the weights of the best
    validation epoch among those at the final sparsity (the PyG benchmark protocol; epoch 0,
    pruned and not yet trained, is a candidate too). Returns that epoch (0 if none)."""
    optimizer, scheduler = make_optimizer(c.model, config)
    epochs, metric = config["finetune.epochs"], task.search_metric
    best_val, best_epoch, best_state = -math.inf, 0, None
    ranges_ready = all(bool(q.ready) for q in getattr(c.model, "act_quant", {}).values())
    if epochs and ranges_ready:  # else activation ranges are learned during epoch 1
        val = task.evaluate(c.model)[metric]
        if c.pruner.at_final_sparsity:
            best_val, best_state = val, _snapshot(c.model)
    for epoch in range(1, epochs + 1):
        c.pruner.at_epoch(epoch)
        loss = train_step(task, c.model, optimizer, c, config["finetune.grad_clip"])
        if not math.isfinite(loss):
            raise FloatingPointError(f"fine-tuning diverged: loss is {loss} at epoch {epoch}")
        if scheduler is not None:
            scheduler.step()
        val = task.evaluate(c.model)[metric]
        report({"epoch": epoch, "train_loss": loss, metric: val,
                "prune_sparsity": c.pruner.sparsity})
        if c.pruner.at_final_sparsity and (best_state is None or val > best_val):
            best_val, best_epoch, best_state = val, epoch, _snapshot(c.model)
    if best_state is not None:
        _restore(c.model, best_state)
    return best_epoch


def convert(task, baseline: Baseline, c: Compression
            ) -> tuple[dict[str, Any], dict[str, QuantizedTensor]]:
    """Final masks baked in (and pruned channels removed: the pruner's record goes into the
    file's header), integer weights, activation ranges; returns the model's spec and the
    integer tensors."""
    model_spec = {**baseline.model, "kwargs": dict(baseline.model.get("kwargs", {}))}
    c.header = c.pruner.finalize(c.model, task.example_inputs())
    c.targets = compression_targets(c.model)  # channels may have gone
    weights = {name: t.tensor.detach().clone() for name, t in c.targets.items()}
    quantized = c.quantizer.convert(weights, c.targets, c.bits)
    for name, qt in quantized.items():
        c.targets[name].tensor.data.copy_(qt.dequantize())
    c.model.eval()
    calibration_forward, calibration_rows = task.calibration(c.model)
    c.quantizer.calibrate(c.model, calibration_forward, calibration_rows)
    c.quantizer.finalize(c.model)
    return model_spec, quantized


def save_and_reload(path: Path, c: Compression, quantized: dict[str, QuantizedTensor],
                    meta: dict[str, Any], watch: measure.Stopwatch) -> tuple[int, nn.Module]:
    """Write the compressed file, read it back, and check it gives back exactly the weights
    that were evaluated (every trial verifies its own file)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    with watch.stage("save"):
        size_bytes = save_model(path, c.model.state_dict(), quantized, meta)
    with watch.stage("reload"):
        reloaded, _ = load_compressed(path)
        saved, loaded = c.model.state_dict(), reloaded.state_dict()
        for name, tensor in saved.items():
            if name not in loaded or not torch.equal(tensor.cpu(), loaded[name]):
                raise StorageError(f"{path}: tensor {name!r} did not reload to identical values")
    return size_bytes, reloaded


def compression_metrics(reloaded: nn.Module, c: Compression, size_bytes: int,
                        quantized: dict[str, QuantizedTensor], baseline: Baseline
                        ) -> dict[str, float]:
    """What the file and its weights say: size, sparsity, bits."""
    final = compression_targets(reloaded)
    nonzero = sum(int((t.tensor != 0).sum()) for t in final.values())
    return {
        "size_bytes": float(size_bytes),
        "size_ratio": size_bytes / baseline.metrics["size_bytes"],
        "sparsity_actual": 1.0 - nonzero / c.weights_before,
        "params_nonzero": float(sum(int((p != 0).sum()) for p in reloaded.parameters())),
        "avg_bits": float(c.bits) if quantized else 32.0,
        "act_avg_bits": c.quantizer.activation_bits(reloaded, c.bits),
        "weights_stored": float(sum(t.tensor.numel() for t in final.values())),
    }


def _same_scores(deployed: dict[str, float], reference: dict[str, float]) -> str:
    """``same``, or which scores of the deployed model differ from the eager model's."""
    differ = [f"{k} {v:.4f} (eager {reference[k]:.4f})" for k, v in deployed.items()
              if reference.get(k) != v]
    return "same" if not differ else "differ: " + ", ".join(differ)


def stage_times(watch: measure.Stopwatch) -> dict[str, float]:
    """Seconds per stage: ``finetune_s``, and ``time_<stage>_s`` for the others."""
    return {("finetune_s" if stage == "finetune" else f"time_{stage}_s"): seconds
            for stage, seconds in watch.seconds.items()}


def trial_tags(path: Path, c: Compression, model_spec: dict[str, Any], task,
               cost_tags: dict[str, str], rss_scope: str,
               device: str = "cpu") -> dict[str, str]:
    """How the figures were obtained."""
    tags = {
        **cost_tags,
        "device": torch.device(device).type,
        "latency_mode": task.latency_mode,
        "peak_rss_scope": rss_scope,
        "roundtrip": "exact",
        "storage_layouts": ",".join(
            f"{e['name']}:{e['layout']}{'/int' + str(e['bits']) if e['bits'] else ''}"
            for e in describe(path)
        ),
    }
    if "structured" in c.header:  # the pruner removed channels: kept/total per group
        tags["structured_channels"] = ",".join(
            f"{layer}={kept}/{total}" for layer, (kept, total)
            in c.header["structured"]["sizes"].items())
    return tags


def _data_source(baseline: Baseline) -> dict[str, Any]:
    """What the model file records of the data it was trained on, so that ``gnn-search
    infer`` rebuilds the same test set: task name, dataset settings (a fold's carry
    ``fold``) and the split seed; nothing for a baseline that does not say."""
    if "task" not in baseline.settings:
        return {}
    return {"task": baseline.settings["task"], "dataset": baseline.settings["dataset"],
            "data_seed": baseline.settings["seed"]}


def _run_one(
    config: dict[str, Any],
    task,
    baseline: Baseline,
    report: Report,
    out_dir: str | Path,
    seed: int = 0,
    measure_settings: measure.MeasureSettings | None = None,
    device: str = "cpu",
) -> CycleResult:
    """One cycle on one split: the stages in order, each timed."""
    started = time.perf_counter()
    config = complete_config(config)
    check_fit(config, task.transductive, lambda: structured_support(
        baseline.build(), synthetic_inputs(input_spec(task.example_inputs()))))
    settings = measure_settings or measure.MeasureSettings()
    where = resolve_device(device)
    watch = measure.Stopwatch()
    rss_scope = "trial" if measure.reset_peak_rss() else "process"
    on_gpu = measure.reset_peak_gpu(where)
    trial_tracker = measure.energy_tracker() if settings.energy_window_s > 0 else None
    with watch.stage("setup"):
        task = task_to(task, where)
        c = setup(config, task, baseline, seed, where)
    with watch.stage("finetune"):
        best_epoch = finetune(task, c, config, report)
    with watch.stage("convert"):
        model_spec, quantized = convert(task, baseline, c)
    path = Path(out_dir) / MODEL_FILE
    meta = {"model": model_spec, "num_features": baseline.num_features,
            "num_classes": baseline.num_classes, "config": config, "baseline_key": baseline.key,
            "activation_quant": c.quantizer.activation_spec, **_data_source(baseline),
            **c.header}
    size_bytes, reloaded = save_and_reload(path, c, quantized, meta, watch)
    reloaded.to(where)
    with watch.stage("evaluate"):
        reference_scores = task.evaluate(reloaded)
    if on_gpu:  # the runtime's kernels are CPU kernels: the eager model is what runs here
        scores = reference_scores
        cost, cost_tags = deployment.eager_figures(task, reloaded, settings, where)
    else:
        with watch.stage("deploy"):
            deployed, _ = deployment.load_deployed(path, task, replan=True, settings=settings)
            size_bytes = deployment.record_plan(path, deployed)
            scores = task.evaluate(deployed)
        cost, cost_tags = deployment.inference_figures(task, deployed, reloaded, settings)
        cost_tags["deployed_scores"] = _same_scores(scores, reference_scores)
    metrics = {**scores, **compression_metrics(reloaded, c, size_bytes, quantized, baseline),
               **cost, "peak_rss_mb": measure.peak_rss_mb(),
               "finetune_best_epoch": float(best_epoch), **stage_times(watch),
               "cycle_s": time.perf_counter() - started}
    if on_gpu:
        metrics["peak_gpu_mb"] = measure.peak_gpu_mb(where)
    if trial_tracker is not None:
        metrics["trial_energy_j"] = measure.stop_joules(trial_tracker)
    tags = trial_tags(path, c, model_spec, task, cost_tags, rss_scope, where)
    return CycleResult(metrics=metrics, tags=tags, model_path=path)
