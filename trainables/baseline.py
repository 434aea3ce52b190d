"""The FP32 baseline: trained once per (task, dataset, model, training settings, seed), cached.

Trials start from it and never retrain from scratch. The cache holds one dense FP32 model
file per key; its length is the reference for every trial's ``size_ratio``.
"""

from __future__ import annotations

import copy
import hashlib
import inspect
import json
import os
import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from torch import Tensor
from tqdm.auto import tqdm

from trainables.model_file import StorageError, load_state, save_model
from trainables.models import build_model, is_builtin, model_class
from trainables.tasks.common import CrossValidation, summarize_folds, train_step

CACHE_ENV = "GNN_SEARCH_CACHE"
CACHE_VERSION = 2  # bump when training code changes what a cached baseline would be


def resolve_cache_dir(cache_dir: str | os.PathLike | None = None) -> Path:
    """The cache folder: the argument, else ``$GNN_SEARCH_CACHE``, else ``~/.cache/gnn-search``."""
    chosen = cache_dir or os.environ.get(CACHE_ENV) or Path.home() / ".cache" / "gnn-search"
    return Path(chosen).expanduser().resolve()


@dataclass
class Baseline:
    """A trained FP32 model as the trials receive it."""

    model: dict[str, Any]  # {"name": ..., "kwargs": {...}} or {"class": "pkg.mod:Cls", ...}
    num_features: int
    num_classes: int
    state: dict[str, Tensor]
    metrics: dict[str, float]  # val_acc, test_acc, size_bytes (dense FP32 file)
    key: str
    settings: dict[str, Any] = field(default_factory=dict)
    folds: list[Baseline] | None = None  # k-fold tasks: one baseline per fold (build: fold 0)

    def build(self, device: str | torch.device = "cpu") -> torch.nn.Module:
        """A fresh model holding the baseline's weights, on ``device``."""
        model = build_model(self.model, self.num_features, self.num_classes)
        model.load_state_dict(self.state)
        return model.to(device)


def baseline_key(task: str, dataset: dict, model: dict, training: dict, seed: int) -> str:
    """Stable hash of everything that determines the baseline's weights: the model spec
    (name or import path, and kwargs) and, for a user's or a plugin's class, its module's
    source (editing the model trains a new baseline; built-ins follow CACHE_VERSION)."""
    settings = {"v": CACHE_VERSION, "task": task, "dataset": dataset, "model": model,
                "training": training, "seed": seed}
    code = model_code(model)
    if code is not None:
        settings["model_code"] = code
    blob = json.dumps(settings, sort_keys=True)
    return hashlib.sha256(blob.encode()).hexdigest()[:16]


def model_code(model: dict) -> str | None:
    """A hash of the source file of a user's or a plugin's model class (None for built-ins,
    or where the source cannot be read)."""
    if is_builtin(model):
        return None
    try:
        source = inspect.getsourcefile(model_class(model))
        return hashlib.sha256(Path(source).read_bytes()).hexdigest()[:16] if source else None
    except (OSError, TypeError):
        return None


def train_baseline(
    task, model_spec: dict, training: dict, seed: int, progress: bool = True
) -> tuple[dict[str, Tensor], dict[str, float]]:
    """Train from scratch; keep the weights of the best validation epoch (PyG's protocol)."""
    torch.manual_seed(seed)
    model = build_model(model_spec, task.num_features, task.num_classes)
    optimizer = torch.optim.Adam(
        model.parameters(), lr=training["lr"], weight_decay=training.get("weight_decay", 0.0)
    )
    best_val, best_state, best_metrics = -1.0, None, {}
    bar = tqdm(
        range(training["epochs"]), desc="FP32 baseline", leave=False, mininterval=0.5,
        disable=None if progress else True,  # None: off when stderr is not a terminal
    )
    for _ in bar:
        loss = train_step(task, model, optimizer)
        metrics = task.evaluate(model)
        if best_state is None or metrics[task.search_metric] > best_val:
            best_val, best_metrics = metrics[task.search_metric], metrics
            best_state = copy.deepcopy(model.state_dict())
        bar.set_postfix(loss=f"{loss:.3f}", best_val=f"{best_val:.3f}")
    if best_state is None:
        raise ValueError(f"baseline epochs must be >= 1, got {training['epochs']}")
    return best_state, best_metrics


def get_baseline(
    task,
    task_name: str,
    dataset: dict,
    model_spec: dict,
    training: dict,
    seed: int,
    cache_dir: str | os.PathLike | None = None,
    progress: bool = True,
) -> tuple[Baseline, bool]:
    """The cached baseline for these settings, training it first if needed.

    Returns the baseline and whether it came from the cache. A k-fold task gets one cached
    baseline per fold, combined into one whose metrics are means (and ``*_std``) over folds.
    """
    if isinstance(task, CrossValidation):
        return _fold_baselines(task, task_name, dataset, model_spec, training, seed,
                               cache_dir, progress)
    key = baseline_key(task_name, dataset, model_spec, training, seed)
    path = resolve_cache_dir(cache_dir) / "baselines" / f"{key}.gnnz"
    cached = path.exists()
    if cached:
        try:
            state, meta = load_state(path)
        except StorageError as err:
            raise StorageError(f"{err}; delete that file and the baseline is trained again, "
                               "or point --cache-dir elsewhere") from None
        metrics = meta["metrics"]
    else:
        state, metrics = train_baseline(task, model_spec, training, seed, progress)
        path.parent.mkdir(parents=True, exist_ok=True)
        meta = {"model": model_spec, "metrics": metrics, "training": training, "seed": seed,
                "task": task_name, "dataset": dataset}
        # Write to a temporary file and rename, so concurrent searches never read half a file.
        with tempfile.NamedTemporaryFile(dir=path.parent, suffix=".tmp", delete=False) as tmp:
            tmp_path = Path(tmp.name)
        save_model(tmp_path, state, meta=meta, layout="dense")
        os.replace(tmp_path, path)
    metrics = {**metrics, "size_bytes": path.stat().st_size}
    baseline = Baseline(
        model=model_spec,
        num_features=task.num_features,
        num_classes=task.num_classes,
        state=state,
        metrics=metrics,
        key=key,
        settings={"training": training, "seed": seed, "path": str(path), "task": task_name,
                  "dataset": dataset},
    )
    return baseline, cached


def _fold_baselines(task: CrossValidation, task_name, dataset, model_spec, training, seed,
                    cache_dir, progress) -> tuple[Baseline, bool]:
    folds, all_cached = [], True
    for k, fold_task in enumerate(task.folds):
        fold, cached = get_baseline(fold_task, task_name, {**dataset, "fold": k}, model_spec,
                                    training, seed, cache_dir, progress)
        folds.append(fold)
        all_cached &= cached
    metrics = summarize_folds([f.metrics for f in folds])
    key = hashlib.sha256("".join(f.key for f in folds).encode()).hexdigest()[:16]
    combined = Baseline(
        model=model_spec, num_features=folds[0].num_features, num_classes=folds[0].num_classes,
        state=folds[0].state, metrics=metrics, key=key,
        settings={**folds[0].settings, "folds": len(folds)}, folds=folds,
    )
    return combined, all_cached
