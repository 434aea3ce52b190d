"""Test-only: every trial's compress-and-fine-tune cycle replaced by an instant stand-in, so
that a search measures the service (Ray Tune, Optuna, MLflow, Tune's storage), not the cycle.
Loaded in every process of a search (the driver, Ray's workers) through PYTHONPATH, as
``tests/faultplugin`` is; ``bench/scale.py`` uses it.

The stand-in reports ``finetune.epochs`` per-epoch rows as a real trial does, writes a small
model file, and returns figures that are a fixed function of the configuration (so Optuna's
sampler has something to model); every result carries the tag ``stand_in=instant``. Nothing
is trained or measured: its figures describe no model.

With ``GNN_SEARCH_SCALE_PROFILE=<file>`` the driver also times the parts of the service that
can grow with the number of trials (Tune's experiment-state saves, the Optuna searcher, the
MLflow callback) and writes each call as ``[part, start_s, seconds]`` to that file at exit.
"""

from __future__ import annotations

import atexit
import functools
import importlib.abc
import importlib.util
import json
import math
import os
import sys
import time
from pathlib import Path

STAND_IN_TAG = "stand_in"
MODEL_FILE = "model.gnnz"  # what a real trial saves (here: a stand-in's bytes)


def stand_in_metrics(config: dict) -> dict[str, float]:
    """Figures as a fixed function of the configuration: accuracy falls with sparsity and
    with 4 bits, size and latency fall with both."""
    sparsity = float(config.get("prune.sparsity") or 0.0) if (
        config.get("prune.method", "none") != "none") else 0.0
    bits = 32 if config.get("quant.method", "fp32") == "fp32" else int(config.get("quant.bits"))
    lr = float(config.get("finetune.lr", 0.005))
    val_acc = 0.82 - 0.25 * sparsity ** 4 - (0.03 if bits == 4 else 0.0) - 0.02 * abs(
        math.log10(lr / 0.005))
    size_ratio = max(0.02, (1.0 - sparsity) * bits / 32 + 0.01)
    return {"val_acc": val_acc, "test_acc": val_acc - 0.01, "size_bytes": 92_000 * size_ratio,
            "size_ratio": size_ratio, "latency_ms": 0.5 + 2.0 * size_ratio,
            "energy_mj": 0.1 + 0.4 * size_ratio, "cycle_s": 0.0}


def _instant_cycle(config, task, baseline, report, out_dir, seed=0, measure_settings=None,
                   device="cpu"):
    from trainables.cycle import CycleResult

    metrics = stand_in_metrics(config)
    for epoch in range(1, int(config.get("finetune.epochs", 10)) + 1):
        report({"epoch": epoch, "train_loss": 1.0 / epoch, "val_acc": metrics["val_acc"]})
    path = Path(out_dir) / MODEL_FILE
    path.write_bytes(json.dumps(config, sort_keys=True).encode())
    return CycleResult(metrics=metrics, tags={STAND_IN_TAG: "instant", "device": device},
                       model_path=path)


# ---- driver-side timers (GNN_SEARCH_SCALE_PROFILE) -------------------------------------------

_CALLS: list[tuple[str, float, float]] = []
_T0 = time.perf_counter()


def _timed(part: str, fn):
    @functools.wraps(fn)
    def wrapper(*args, **kwargs):
        started = time.perf_counter()
        try:
            return fn(*args, **kwargs)
        finally:
            _CALLS.append((part, started - _T0, time.perf_counter() - started))
    return wrapper


TIMED = {  # module -> (class, method, part)
    "ray.tune.execution.tune_controller": [("TuneController", "save_to_dir", "state_save")],
    "ray.tune.search.optuna.optuna_search": [("OptunaSearch", "suggest", "optuna_suggest"),
                                             ("OptunaSearch", "on_trial_complete",
                                              "optuna_tell")],
    "search.tracking": [("MlflowTrialCallback", "on_trial_start", "mlflow_start"),
                        ("MlflowTrialCallback", "on_trial_result", "mlflow_result"),
                        ("MlflowTrialCallback", "on_trial_complete", "mlflow_complete")],
}


def _write_profile(path: str) -> None:
    if _CALLS:  # the driver; not a helper process that imported the same modules
        Path(path).write_text(json.dumps(_CALLS))


def _patch(module) -> None:
    if module.__name__ == "trainables.cycle":
        module.run_cycle = _instant_cycle
        return
    for cls, method, part in TIMED.get(module.__name__, []):
        owner = getattr(module, cls)
        setattr(owner, method, _timed(part, getattr(owner, method)))


class _Patch(importlib.abc.MetaPathFinder):
    def __init__(self, names: set[str]) -> None:
        self.names = names

    def find_spec(self, name, path, target=None):
        if name not in self.names:
            return None
        self.names.discard(name)
        spec = importlib.util.find_spec(name)  # this finder skips it now: the real one
        execute = spec.loader.exec_module

        def exec_module(module):
            execute(module)
            _patch(module)

        spec.loader.exec_module = exec_module
        return spec


_NAMES = {"trainables.cycle"}
if os.environ.get("GNN_SEARCH_SCALE_PROFILE"):
    _NAMES |= set(TIMED)
    atexit.register(_write_profile, os.environ["GNN_SEARCH_SCALE_PROFILE"])
sys.meta_path.insert(0, _Patch(_NAMES))
