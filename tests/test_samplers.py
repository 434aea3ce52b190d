"""One contract over the sampler registry: every sampler a space file may name searches the
bundled spaces' conditional, multi-objective define-by-run space, reproducibly, and survives
the pickling Tune's experiment-state save does."""

from __future__ import annotations

import pickle
import random

import optuna
import pytest

from spaces import load_space
from spaces.samplers import SAMPLERS, make_sampler
from trainables.params import validate_config

optuna.logging.set_verbosity(optuna.logging.WARNING)
TRIALS = 14


def _search(name: str, space_name: str, seed: int = 0, trials: int = TRIALS,
            warm: bool = True) -> list[dict]:
    """``trials`` configurations ``name`` suggests against fixed pseudo-random objectives."""
    space = load_space(space_name)
    objectives = space.objectives
    study = optuna.create_study(
        directions=["maximize" if d == "max" else "minimize" for d in objectives.values()],
        sampler=make_sampler(name, seed, trials))
    for point in space.warm_start_points(baseline=True) if warm else []:
        study.enqueue_trial(point)
    values = random.Random(seed)
    configs = []
    for _ in range(trials):
        trial = study.ask()
        constants = space.define_by_run(trial)
        configs.append(validate_config({**space.defaults(), **trial.params, **constants}))
        study.tell(trial, [values.random() for _ in objectives])
    return configs


@pytest.mark.parametrize("name", list(SAMPLERS))
@pytest.mark.parametrize("space_name", ["cora_node", "proteins"])
def test_every_sampler_searches_a_bundled_space(name, space_name):
    configs = _search(name, space_name)
    assert len(configs) == TRIALS
    space = load_space(space_name)
    assert configs[0]["prune.method"] == "none" and configs[0]["quant.method"] == "fp32"
    for config in configs:
        assert config["prune.method"] in space.space["prune.method"]
        assert config["quant.method"] in space.space["quant.method"]
        low, high = space.space["finetune.epochs"].low, space.space["finetune.epochs"].high
        assert low <= config["finetune.epochs"] <= high
    # past the warm start it explores: more than one pruning method and quantization method
    assert len({c["prune.method"] for c in configs}) > 1
    assert len({c["quant.method"] for c in configs}) > 1


@pytest.mark.parametrize("name", list(SAMPLERS))
def test_every_sampler_is_reproducible_and_seeded(name):
    first, again = _search(name, "cora_node", seed=3), _search(name, "cora_node", seed=3)
    assert first == again
    assert _search(name, "cora_node", seed=4, warm=False) != _search(
        name, "cora_node", seed=3, warm=False)


@pytest.mark.parametrize("name", list(SAMPLERS))
def test_every_sampler_pickles_with_its_history(name):
    """Tune pickles the searcher (and so the sampler) at every experiment-state save."""
    sampler = make_sampler(name, 0, TRIALS)
    study = optuna.create_study(directions=["maximize", "minimize"], sampler=sampler)
    space = load_space("cora_node")
    for i in range(6):
        trial = study.ask()
        space.define_by_run(trial)
        study.tell(trial, [i / 10, 1 - i / 10])
    restored = pickle.loads(pickle.dumps(sampler))
    assert type(restored) is type(sampler)
