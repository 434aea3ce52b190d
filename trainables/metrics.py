"""The metrics table: every figure a trial or a baseline records, one row each.

One table used by the space loader (which metrics a search may optimize), the cycle (how a
figure combines over cross-validation folds), the report (which columns it shows) and the
plots (which axes are log-scaled). A new metric is one row here plus its measurement.

Pure data: importing this module imports neither torch nor anything heavy, so the analysis
commands and the CLI can read it cheaply.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Metric:
    """A recorded figure.

    ``direction``: ``max`` or ``min`` (what "better" means), ``""`` for a record of how a
    trial ran. ``searchable``: a search may use it as an objective (validation and deployment
    figures, never test scores). ``reported``: a column of the Pareto table. ``over_folds``:
    how per-fold figures combine under k-fold cross-validation (``mean``, ``sum`` or
    ``max``); a val/test score also gets ``<name>_std`` beside its mean.
    """

    name: str
    unit: str
    direction: str = ""
    searchable: bool = False
    reported: bool = False
    log_scale: bool = False
    over_folds: str = "mean"
    help: str = ""


_ROWS = (
    # scores: validation ones are searched on, test ones reported beside them
    Metric("val_acc", "fraction", "max", searchable=True, reported=True,
           help="validation accuracy"),
    Metric("val_roc_auc", "fraction", "max", searchable=True, reported=True,
           help="validation ROC-AUC"),
    Metric("val_ap", "fraction", "max", searchable=True, help="validation average precision"),
    Metric("test_acc", "fraction", "max", reported=True, help="test accuracy"),
    Metric("test_acc_std", "fraction", reported=True,
           help="spread of test accuracy over folds"),
    Metric("test_roc_auc", "fraction", "max", reported=True, help="test ROC-AUC"),
    Metric("test_ap", "fraction", "max", reported=True, help="test average precision"),
    # the compressed file and its weights
    Metric("size_bytes", "bytes", "min", searchable=True, reported=True, log_scale=True,
           help="byte length of the model file written"),
    Metric("size_ratio", "ratio", "min", searchable=True, reported=True,
           help="size_bytes over the FP32 dense file's"),
    Metric("sparsity_actual", "fraction", "max", searchable=True, reported=True,
           help="fraction of compressible weights that are zero"),
    Metric("avg_bits", "bits", "min", searchable=True, help="bits per stored weight"),
    Metric("act_avg_bits", "bits", "min", help="bits per quantized activation"),
    Metric("params_nonzero", "count", "min", searchable=True, help="nonzero parameters"),
    Metric("weights_stored", "count", "min", help="compressible weights kept in the file"),
    # inference cost (trainables.measure)
    Metric("latency_ms", "ms", "min", searchable=True, reported=True, log_scale=True,
           help="median latency of one inference of the deployed model"),
    Metric("latency_ms_reference", "ms", "min", reported=True, log_scale=True,
           help="median latency of the dequantized eager model (what the study measured)"),
    Metric("latency_ms_p10", "ms", "min", log_scale=True, help="10th percentile latency"),
    Metric("latency_ms_p90", "ms", "min", log_scale=True, help="90th percentile latency"),
    Metric("energy_mj", "mJ", "min", log_scale=True, help="energy per inference"),
    Metric("cpu_percent", "percent", help="CPU use during the energy window"),
    Metric("measure_s", "s", help="time spent measuring inference"),
    Metric("peak_rss_mb", "MB", "min", searchable=True, over_folds="max",
           help="peak resident memory of the trial process"),
    Metric("peak_gpu_mb", "MB", "min", searchable=True, over_folds="max",
           help="peak GPU memory of the trial's tensors (torch.cuda.max_memory_allocated; "
                "GPU trials only)"),
    Metric("infer_peak_mb", "MB", "min", searchable=True, reported=True, over_folds="max",
           help="memory one inference of the deployed model needs (tag infer_peak_scope)"),
    Metric("infer_peak_mb_reference", "MB", "min", over_folds="max",
           help="the same for the dequantized eager model"),
    # how the trial ran
    Metric("finetune_best_epoch", "epoch", help="fine-tuning epoch whose weights were kept"),
    Metric("finetune_s", "s", over_folds="sum", help="fine-tuning time"),
    Metric("time_setup_s", "s", over_folds="sum", help="stage: baseline, masks, quantizers"),
    Metric("time_convert_s", "s", over_folds="sum", help="stage: bake, remove, quantize"),
    Metric("time_save_s", "s", over_folds="sum", help="stage: write the model file"),
    Metric("time_reload_s", "s", over_folds="sum", help="stage: read it back, compare"),
    Metric("time_evaluate_s", "s", over_folds="sum", help="stage: scores of the reloaded file"),
    Metric("time_deploy_s", "s", over_folds="sum",
           help="stage: deployed form, kernels timed, plan written, its scores"),
    Metric("cycle_s", "s", over_folds="sum", help="the whole cycle"),
    Metric("trial_energy_j", "J", over_folds="sum", help="energy of the whole cycle"),
)
METRICS: dict[str, Metric] = {m.name: m for m in _ROWS}

# Derived views, for the places that need one list.
OBJECTIVE_METRICS: tuple[str, ...] = tuple(m.name for m in _ROWS if m.searchable)
REPORTED_METRICS: tuple[str, ...] = tuple(m.name for m in _ROWS if m.reported)
LOG_SCALE_METRICS: tuple[str, ...] = tuple(m.name for m in _ROWS if m.log_scale)
FOLD_RULES = ("mean", "sum", "max")


def combine_over_folds(name: str) -> str:
    """How per-fold values of ``name`` combine: ``mean``, ``sum`` or ``max`` (a figure
    outside the table, such as a task's extra score, is averaged)."""
    metric = METRICS.get(name)
    return metric.over_folds if metric is not None else "mean"


def is_score(name: str) -> bool:
    """A validation or test score (gets ``<name>_std`` over folds)."""
    return name.startswith(("val_", "test_")) and not name.endswith("_std")
