"""How trials end in the Optuna study behind a search (no Ray cluster needed)."""

from __future__ import annotations

import optuna
import pytest
from ray.tune.search.optuna import OptunaSearch

from search.searcher import ObjectiveSearch

State = optuna.trial.TrialState
LAST_EPOCH = {"epoch": 3, "val_acc": 0.7, "train_loss": 0.4}  # a per-epoch report
FINAL = {**LAST_EPOCH, "size_bytes": 1.0e5}


def _searcher(cls=ObjectiveSearch, metric=("val_acc", "size_bytes"), mode=("max", "min")):
    def define(trial):
        trial.suggest_float("finetune.lr", 1e-4, 1e-1, log=True)

    return cls(space=define, metric=list(metric), mode=list(mode),
               sampler=optuna.samplers.RandomSampler(seed=0))


@pytest.mark.parametrize("result, error, state", [
    (FINAL, False, State.COMPLETE),
    (LAST_EPOCH, False, State.PRUNED),  # early-stopped: never complete
    (None, False, State.PRUNED),
    (LAST_EPOCH, True, State.FAIL),  # raised after some epochs
    (None, True, State.FAIL),
])
def test_trial_end_states(result, error, state):
    searcher = _searcher()
    searcher.suggest("t")
    searcher.on_trial_complete("t", result=result, error=error)
    trial = searcher._ot_study.trials[0]
    assert trial.state == state
    assert trial.values == ([0.7, 1.0e5] if state == State.COMPLETE else None)


def test_single_objective_too():
    searcher = _searcher(metric=("val_acc",), mode=("max",))
    searcher.suggest("t")
    searcher.on_trial_complete("t", result={"epoch": 2, "train_loss": 0.5})
    assert searcher._ot_study.trials[0].state == State.PRUNED


def test_rays_own_searcher_leaves_stopped_trials_running():
    """The reason for the subclass (if Ray fixes it, this test says so)."""
    searcher = _searcher(cls=OptunaSearch)
    searcher.suggest("t")
    searcher.on_trial_complete("t", result=LAST_EPOCH)
    assert searcher._ot_study.trials[0].state == State.RUNNING
