"""A compressed model as it ships, and what its inference costs.

``load_deployed`` builds the deployed form of a model file (:mod:`trainables.runtime`): its
recorded kernel plan, or a new one timed on the task's own inference call.
``inference_figures`` measures the deployed model (``latency_ms``, energy, ``infer_peak_mb``)
beside the eager reference it came from (``latency_ms_reference``,
``infer_peak_mb_reference``: the dequantized model the study measured).
"""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path
from typing import Any

from torch import Tensor, nn

from trainables import measure, runtime
from trainables.compressed import load_compressed
from trainables.model_file import load_quantized, update_meta

PLAN_KEEP = 3  # options per layer the file records (fastest first): the fallbacks


def fixed_inputs(task) -> tuple[Tensor, ...]:
    """The inputs a deployment stores: a transductive task's graph; none for new graphs."""
    return tuple(task.inference_inputs()) if task.transductive else ()


def deploy_model(model: nn.Module, task, quantized: dict | None = None,
                 plan: dict[str, list[str]] | None = None,
                 settings: measure.MeasureSettings | None = None) -> runtime.Deployed:
    """``model`` (changed in place) deployed for ``task``: with ``plan`` where given (falling
    back where this machine lacks a kernel), else with kernels timed now, at the threads and
    with the effort of ``settings`` (a quick measurement plans quickly too)."""
    settings = settings or measure.MeasureSettings()
    deployed = runtime.deploy(model, quantized, fixed_inputs(task))
    if plan is not None:
        runtime.apply_plan(deployed, plan)
    else:
        quick = settings.min_repeats < measure.MeasureSettings().min_repeats
        with measure.torch_threads(settings.threads):
            runtime.choose_kernels(deployed, task.inference(deployed),
                                   min_calls=3 if quick else 7, budget_s=0.0 if quick else 0.05)
    return deployed


def load_deployed(path: str | Path, task, replan: bool = False,
                  settings: measure.MeasureSettings | None = None
                  ) -> tuple[runtime.Deployed, dict[str, Any]]:
    """The deployed model of a file and the file's meta. The file's plan is used unless
    ``replan`` (or the file has none)."""
    model, meta = load_compressed(path)
    recorded = (meta.get("runtime_plan") or {}).get("layers")
    plan = None if replan or not isinstance(recorded, dict) else recorded
    return deploy_model(model, task, load_quantized(path), plan, settings), meta


def record_plan(path: str | Path, deployed: runtime.Deployed) -> int:
    """Write the deployed model's plan into the file's header; returns the file's length."""
    layers = {name: ranked[:PLAN_KEEP] for name, ranked in deployed.plan.items()}
    return update_meta(path, runtime_plan={"version": runtime.PLAN_VERSION, "layers": layers})


def _peak_mb(task, model: nn.Module, held: list) -> float:
    inputs = [] if task.transductive else list(task.inference_inputs())
    return runtime.infer_peak_mb(task.inference(model), [model, *held, *inputs])


def inference_figures(task, deployed: runtime.Deployed, reference: nn.Module,
                      settings: measure.MeasureSettings) -> tuple[dict[str, float],
                                                                  dict[str, str]]:
    """Latency, energy and memory of the deployed model (energy from the same window as its
    latency), and the reference's latency and memory."""
    metrics, tags = measure.measure_inference(task.inference(deployed), settings)
    ref, _ = measure.measure_inference(task.inference(reference),
                                       replace(settings, energy_window_s=0.0))
    reference_held = [] if not task.transductive else list(task.inference_inputs())
    with measure.torch_threads(settings.threads):
        metrics.update({
            "latency_ms_reference": ref["latency_ms"],
            "infer_peak_mb": _peak_mb(task, deployed, deployed.inputs.held()),
            "infer_peak_mb_reference": _peak_mb(task, reference, reference_held),
            "measure_s": metrics["measure_s"] + ref["measure_s"],
        })
    tags.update({"latency_kernel": deployed.kernel_tag(),
                 "infer_peak_scope": runtime.INFER_PEAK_SCOPE})
    if deployed.fallbacks:
        tags["runtime_fallback"] = ",".join(deployed.fallbacks)
    return metrics, tags


EAGER_GPU_KERNEL = "eager:cuda"  # latency_kernel of a trial measured on a GPU


def eager_figures(task, model: nn.Module, settings: measure.MeasureSettings,
                  device) -> tuple[dict[str, float], dict[str, str]]:
    """On a GPU: the eager (dequantized) model measured where it runs, timed to the end of
    its GPU work, energy from NVML. The runtime's kernels (CSR, int8 GEMM) are CPU kernels,
    so no deployed form is built: ``latency_ms`` is the eager model's (``latency_kernel``
    says so) and equals ``latency_ms_reference``; ``infer_peak_mb`` counts the same tensors
    as on the CPU (weights, graph inputs, peak intermediates), wherever they live."""
    metrics, tags = measure.measure_inference(task.inference(model), settings, device)
    held = [] if not task.transductive else list(task.inference_inputs())
    peak = _peak_mb(task, model, held)
    metrics.update({"latency_ms_reference": metrics["latency_ms"], "infer_peak_mb": peak,
                    "infer_peak_mb_reference": peak})
    tags.update({"latency_kernel": EAGER_GPU_KERNEL,
                 "infer_peak_scope": runtime.INFER_PEAK_SCOPE,
                 "deployed_scores": "not deployed (cuda: the eager model's scores)"})
    return metrics, tags


def baseline_figures(task, baseline, settings: measure.MeasureSettings) -> dict[str, float]:
    """The uncompressed baseline through the same runtime and the same measurements, so
    that trials and baseline compare like with like."""
    if hasattr(task, "folds"):  # k-fold: the first fold stands for the model
        task, baseline = task.folds[0], baseline.folds[0]
    reference = baseline.build().eval()
    deployed = deploy_model(baseline.build(), task, settings=settings)
    metrics, _ = inference_figures(task, deployed, reference, settings)
    keep = ("latency_ms", "latency_ms_reference", "infer_peak_mb", "infer_peak_mb_reference",
            "energy_mj")
    return {k: metrics[k] for k in keep if k in metrics}
