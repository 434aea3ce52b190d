"""``gnn-search infer``: run a model file as it ships, on its space's test data.

The file's deployed form (:func:`trainables.deployment.load_deployed`, with the kernel plan
its header records; a kernel this machine lacks falls back to the next candidate) is scored
on the task's test split and measured: latency, kernels, memory, beside the eager reference.
Bad input is a one-line ``ValueError`` naming the value and what is allowed.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

from trainables.model_file import StorageError, read_header

FIX_MODEL = "give a model file (model.gnnz) that gnn-search trial, run or export wrote"
REPORTED = ("latency_ms", "latency_ms_p10", "latency_ms_p90", "latency_ms_reference",
            "infer_peak_mb", "infer_peak_mb_reference")


@dataclass(frozen=True)
class DataSource:
    """Where the test data comes from: a task name, its dataset settings, the split seed,
    and the space named on the command line (None: the model file says)."""

    task: str
    dataset: dict[str, Any]
    seed: int
    space: str | None = None

    @property
    def label(self) -> str:
        """The data as messages name it."""
        if self.space is not None:
            return f"space {self.space}'s data"
        from trainables.sources import describe

        return f"dataset {describe(self.dataset)} (as the model file records)"


def read_model_meta(model: str) -> dict[str, Any]:
    """The header ``meta`` of ``--model``, refused in one line unless it is a readable
    trial model file (a cached baseline has no feature and class counts)."""
    from trainables.paths import check_length

    if not model:
        raise ValueError(f"--model is empty; {FIX_MODEL}")
    check_length(model, "--model")
    path = Path(model).expanduser()
    if not path.exists():
        raise ValueError(f"--model {model} does not exist; {FIX_MODEL}")
    if not path.is_file():
        raise ValueError(f"--model {model} is not a file; {FIX_MODEL}")
    try:
        data = path.read_bytes()
    except OSError as err:
        raise ValueError(f"--model {model} cannot be read ({err.strerror}); {FIX_MODEL}") from None
    try:
        meta = read_header(data, model)[0].get("meta")
    except StorageError as err:
        raise ValueError(f"--model {err}; {FIX_MODEL}") from None
    if not isinstance(meta, dict) or not all(k in meta for k in ("model", "num_features",
                                                                 "num_classes")):
        raise ValueError(f"--model {model} is a model file without the model it holds "
                         f"(no model, num_features, num_classes in its header; a cached "
                         f"baseline?); {FIX_MODEL}")
    return meta


def data_source(meta: dict[str, Any], space: str | None, model: str) -> DataSource:
    """``--space``'s task and dataset, else those the model file records."""
    if space is not None:
        from spaces import load_space

        loaded = load_space(space)
        return DataSource(loaded.task, loaded.dataset.as_dict(), loaded.baseline.seed,
                          Path(loaded.source).stem)
    if not isinstance(meta.get("task"), str) or not isinstance(meta.get("dataset"), dict):
        raise ValueError(f"--model {model} does not record the space it came from (a file "
                         "from before infer); pass --space NAME|FILE, the space its trial "
                         "ran on")
    return DataSource(meta["task"], meta["dataset"], int(meta.get("data_seed", 0)))


def build_test_task(source: DataSource, meta: dict[str, Any], data_root: str | None):
    """The task whose test split the model is scored on (a k-fold task: the model's fold,
    from its file, else fold 0)."""
    from trainables.tasks import CrossValidation, build_task

    dataset = {k: v for k, v in source.dataset.items() if k != "fold"}
    task = build_task(source.task, dataset, data_root, source.seed)
    if isinstance(task, CrossValidation):
        fold = int((meta.get("dataset") or {}).get("fold", 0))
        if not 0 <= fold < len(task.folds):
            raise ValueError(f"the model file's fold {fold} is not one of the folds of "
                             f"{source.label}; allowed: 0..{len(task.folds) - 1}")
        task = task.folds[fold]
    return task


def check_task(meta: dict[str, Any], source: DataSource, model: str) -> None:
    """A model trained for another task than the space's is refused before any data loads."""
    if isinstance(meta.get("task"), str) and meta["task"] != source.task:
        raise ValueError(f"--model {model} was trained for task {meta['task']!r}; "
                         f"space {source.space} is task {source.task!r}; pass a space of task "
                         f"{meta['task']!r}")


def check_sizes(meta: dict[str, Any], task, source: DataSource, model: str) -> None:
    """A model whose input and output sizes are not the data's is refused in one line."""
    wanted = (int(meta["num_features"]), int(meta["num_classes"]))
    if wanted != (task.num_features, task.num_classes):
        raise ValueError(f"--model {model}: model expects {wanted[0]} features and "
                         f"{wanted[1]} classes; {source.label} has {task.num_features} "
                         f"features and {task.num_classes} classes; pass the --space its "
                         "trial ran on")


def infer(model: str, space: str | None, data_root: str | None,
          threads: int | None) -> dict[str, Any]:
    """Load ``model`` deployed, score it on the test split, measure it; one flat dict
    (test scores, latency figures, ``latency_kernel``, memory, ``runtime_fallback`` when a
    planned kernel was missing)."""
    from trainables import deployment
    from trainables.compressed import load_compressed
    from trainables.data import resolve_data_root
    from trainables.measure import MeasureSettings
    from trainables.paths import check_folder
    from trainables.sources import describe

    meta = read_model_meta(model)
    source = data_source(meta, space, model)
    check_task(meta, source, model)
    check_folder(resolve_data_root(data_root), "--data-root", write=True)
    task = build_test_task(source, meta, data_root)
    check_sizes(meta, task, source, model)
    planned = isinstance((meta.get("runtime_plan") or {}).get("layers"), dict)
    settings = MeasureSettings(threads=threads, energy_window_s=0.0)  # no energy: quick
    deployed, _ = deployment.load_deployed(model, task, settings=settings)
    scores = task.evaluate(deployed)
    reference, _ = load_compressed(model)
    figures, tags = deployment.inference_figures(task, deployed, reference, settings)
    result: dict[str, Any] = {
        "model_file": str(model), "space": source.space, "task": source.task,
        "dataset": describe(source.dataset),
        **{k: v for k, v in scores.items() if k.startswith("test_")},
        **{k: figures[k] for k in REPORTED},
        "latency_threads": int(tags["latency_threads"]),
        "latency_kernel": tags["latency_kernel"],
        "kernel_plan": "recorded" if planned else "timed now (the file records none)",
    }
    if "runtime_fallback" in tags:
        result["runtime_fallback"] = tags["runtime_fallback"]
    return result
