"""Optuna as Tune's search algorithm, told honestly how each trial ended."""

from __future__ import annotations

from ray.tune.search.optuna import OptunaSearch


class ObjectiveSearch(OptunaSearch):
    """``OptunaSearch`` where a trial that ends without every objective is PRUNED (stopped
    early) or FAIL (raised), never COMPLETE.

    Tune hands such a trial's last per-epoch result to :meth:`on_trial_complete`. With several
    objectives Ray's ``OptunaSearch`` then tells Optuna a list of ``None`` as COMPLETE, which
    Optuna refuses (a warning per trial), and the trial stays RUNNING in the study forever.
    """

    def on_trial_complete(self, trial_id: str, result: dict | None = None,
                          error: bool = False) -> None:
        objectives = self.metric if isinstance(self.metric, list) else [self.metric]
        if result is not None and any(result.get(name) is None for name in objectives):
            result = None  # OptunaSearch: no result -> FAIL on error, PRUNED otherwise
        super().on_trial_complete(trial_id, result, error)
