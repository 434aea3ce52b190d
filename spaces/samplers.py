"""The samplers a space file may name (``sampler:``), and how each is built.

The one list of samplers: the space loader validates against it, the CLI offers it, the
search builds from it. Optuna is imported when a sampler is built, not when the names are
read, so the CLI stays light.
"""

from __future__ import annotations

import warnings
from collections.abc import Callable
from typing import Any


def tpe(seed: int, trials: int, **changes: Any) -> Any:
    """The default sampler; ``changes`` override its TPESampler settings (the search-quality
    benchmark measures variants this way)."""
    from spaces.tpe import SplitOnceTPESampler

    settings = {
        "n_startup_trials": _startup(trials),  # small searches still use TPE
        "multivariate": True,
        "group": True,  # conditional parameters (bits only when quantizing)
        "constant_liar": True,  # concurrent trials do not all sample the same point
    }
    return SplitOnceTPESampler(seed=seed, **{**settings, **changes})


def _nsga2(seed: int, trials: int) -> Any:
    import optuna

    return optuna.samplers.NSGAIISampler(seed=seed, population_size=_population(trials))


def _gp(seed: int, trials: int) -> Any:
    import optuna

    # Optuna's GP models the parameters every trial has; conditional ones (sparsity only when
    # pruning, bits only when quantizing) are sampled at random, by design here.
    return optuna.samplers.GPSampler(seed=seed, n_startup_trials=_startup(trials),
                                     warn_independent_sampling=False)


def _nsga3(seed: int, trials: int) -> Any:
    import optuna

    return optuna.samplers.NSGAIIISampler(seed=seed, population_size=_population(trials))


def _qmc(seed: int, trials: int) -> Any:
    import optuna

    # scrambled Sobol points over the parameters of the first trial; the rest at random
    return optuna.samplers.QMCSampler(seed=seed, scramble=True, warn_independent_sampling=False)


def _random(seed: int, trials: int) -> Any:
    import optuna

    return optuna.samplers.RandomSampler(seed=seed)


def _startup(trials: int) -> int:
    """Random trials before a model-based sampler takes over: a quarter, 2 to 10."""
    return max(2, min(10, trials // 4))


def _population(trials: int) -> int:
    """A genetic sampler's generation: a quarter of the trials, 4 to 50."""
    return max(4, min(50, trials // 4))


SAMPLERS: dict[str, Callable[[int, int], Any]] = {
    "tpe": tpe,  # multi-objective TPE (the default)
    "gp": _gp,  # Gaussian-process Bayesian optimization (multi-objective since Optuna 4.4)
    "nsga2": _nsga2,
    "nsga3": _nsga3,  # NSGA-II with reference-point niching, meant for 3+ objectives
    "qmc": _qmc,  # quasi-random (Sobol), no model
    "random": _random,
}
DEFAULT_SAMPLER = "tpe"
SEED_MAX = 2**32 - 1  # seeds numpy (and so Optuna's samplers) accept: 0..SEED_MAX


def make_sampler(name: str, seed: int, trials: int) -> Any:
    """The Optuna sampler named ``name``, seeded, sized for a search of ``trials``."""
    if name not in SAMPLERS:
        raise ValueError(f"unknown sampler {name!r}; allowed: {', '.join(SAMPLERS)}")
    import optuna

    warnings.filterwarnings("ignore", category=optuna.exceptions.ExperimentalWarning)
    return SAMPLERS[name](seed, trials)
