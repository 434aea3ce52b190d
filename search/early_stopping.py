"""Early stopping that is sound for a multi-objective search.

A trial is compared only with comparable trials: those in the same compression bucket
(pruning method, sparsity to 0.1, quantization method and bits), at the same fine-tuning
epoch, on one validation metric (best so far). It stops when that value is below the median
of at least ``min_peers`` comparable trials. A stopped trial never reports its objectives, so
Optuna records it as PRUNED (not COMPLETE) and the MLflow run ends KILLED with the tag
``gnn_search.early_stopped=true``: it cannot enter a Pareto front.
"""

from __future__ import annotations

import statistics
from collections import defaultdict
from typing import Any

from ray.tune.schedulers import FIFOScheduler, TrialScheduler

EARLY_STOPPED_TAG = "gnn_search.early_stopped"


def bucket(config: dict[str, Any]) -> tuple:
    """Trials that may be compared: same methods, bits, and sparsity to one decimal."""
    method = config.get("prune.method", "none")
    sparsity = round(float(config.get("prune.sparsity", 0.0)), 1) if method != "none" else 0.0
    quant = config.get("quant.method", "fp32")
    return (method, sparsity, quant, config.get("quant.bits") if quant != "fp32" else None)


class BucketMedianStopping(FIFOScheduler):
    """Stop a trial whose best validation value so far is below the median of comparable
    trials at the same epoch."""

    def __init__(self, metric: str = "val_acc", mode: str = "max", grace_epochs: int = 5,
                 min_peers: int = 2) -> None:
        super().__init__()
        if mode not in ("max", "min"):
            raise ValueError(f"mode must be max or min, got {mode!r}")
        if grace_epochs < 1 or min_peers < 1:
            raise ValueError(f"grace_epochs and min_peers must be >= 1, got {grace_epochs}, "
                             f"{min_peers}")
        self.search_metric, self.search_mode = metric, mode
        self.grace_epochs, self.min_peers = grace_epochs, min_peers
        # bucket -> epoch -> trial_id -> best value so far
        self._history: dict[tuple, dict[int, dict[str, float]]] = defaultdict(
            lambda: defaultdict(dict))
        self._best: dict[str, float] = {}
        self.stopped: set[str] = set()

    def on_trial_result(self, tune_controller, trial, result: dict) -> str:
        if "epoch" not in result or self.search_metric not in result:
            return TrialScheduler.CONTINUE  # the final report, or not a training result
        epoch, value = int(result["epoch"]), float(result[self.search_metric])
        sign = 1.0 if self.search_mode == "max" else -1.0
        best = max(self._best.get(trial.trial_id, -float("inf")), sign * value)
        self._best[trial.trial_id] = best
        at_epoch = self._history[bucket(trial.config)][epoch]
        peers = [v for tid, v in at_epoch.items() if tid != trial.trial_id]
        at_epoch[trial.trial_id] = best
        if epoch >= self.grace_epochs and len(peers) >= self.min_peers and best < (
                statistics.median(peers)):
            self.stopped.add(trial.trial_id)
            return TrialScheduler.STOP
        return TrialScheduler.CONTINUE
