"""The bundled TPE sampler: Optuna's, with one good/bad split of the trials per suggestion.

With ``group=True`` TPE samples each group of parameters that occur together (4 in the
bundled spaces) and splits the same finished trials into good and bad for each. With
several objectives the split is a non-domination sort and a hypervolume subset selection,
O(n^2) in the trials: at 1000 trials it was 230 of the 320 ms one suggestion took on the
driver (``bench/scale.py``). The split is a pure function of the trials and ``n_below``, so
it is reused for the other groups of the same trial, and the samples are Optuna's, value for
value (``tests/test_searcher.py``). Where Optuna's private ``_split_trials`` is gone (another
Optuna version), this is plain TPE.

A module of its own (not inside :mod:`spaces.samplers`): the sampler is pickled with the
study in Tune's experiment state, so its class must be importable, and importing it imports
Optuna, which the CLI does not need to read the sampler names.
"""

from __future__ import annotations

from typing import Any

from optuna.samplers import TPESampler
from optuna.samplers._tpe import sampler as _tpe


class SplitOnceTPESampler(TPESampler):
    def sample_relative(self, study, trial, search_space):
        split = getattr(_tpe, "_split_trials", None)
        if split is None:
            return super().sample_relative(study, trial, search_space)
        memo: dict[tuple, Any] = {}

        def split_once(study, trials, n_below, *args):
            key = (tuple((t.number, t.state) for t in trials), n_below, *args)
            if key not in memo:
                memo[key] = split(study, trials, n_below, *args)
            return memo[key]

        _tpe._split_trials = split_once  # the driver's one thread samples: no race
        try:
            return super().sample_relative(study, trial, search_space)
        finally:
            _tpe._split_trials = split
