"""What each numeric option allows: one table, read by the command line (a value outside
its range is refused while the command line is read, in one line) and by the checks of the
Python API (:func:`search.run.check_settings`, :func:`search.cluster.serve_mlflow`).

Light at import (argparse and the samplers' seed range only): ``gnn-search --help`` reads it.
"""

from __future__ import annotations

import argparse
import math
from dataclasses import dataclass

from spaces.samplers import SEED_MAX


def _plain(number: float) -> str:
    """``4294967295``, ``3600``, ``0.5``: never ``4.29497e+09``."""
    return str(int(number)) if number == int(number) else repr(number)


@dataclass(frozen=True)
class Bound:
    """A closed range of integers, or of finite numbers (``low_open``: ``low`` excluded);
    called with the text of the command line, it is an argparse ``type``."""

    option: str
    low: float
    high: float
    integer: bool = True
    low_open: bool = False
    unit: str = ""

    def allowed(self) -> str:
        low, high = _plain(self.low), _plain(self.high)
        if self.integer:
            return f"an integer in {low}..{high}"
        return f"a number{self.unit} in {'(' if self.low_open else '['}{low}, {high}]"

    def fits(self, value: float) -> bool:
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            return False
        if not math.isfinite(value) or (self.integer and value != int(value)):
            return False
        return (self.low < value if self.low_open else self.low <= value) and value <= self.high

    def __call__(self, text: str) -> int | float:
        try:
            value = int(text) if self.integer else float(text)
        except ValueError:
            value = math.nan
        if not self.fits(value):
            raise argparse.ArgumentTypeError(f"{text!r} is not allowed; expected "
                                             f"{self.allowed()}")
        return value

    def check(self, value: float) -> None:
        """For the Python API: a ValueError naming the option, the value and the range."""
        if not self.fits(value):
            raise ValueError(f"{self.option} {value!r} is not allowed; expected "
                             f"{self.allowed()}")


TRIALS = Bound("--trials", 1, 100_000)
CONCURRENCY = Bound("--concurrency", 1, 4096)  # and at most the CPUs (checked when known)
MAX_FAILURES = Bound("--max-failures", 0, 100)
TRIAL_TIMEOUT = Bound("--trial-timeout", 0, 30 * 86_400, integer=False, low_open=True,
                      unit=" of seconds")  # up to 30 days
GPUS_PER_TRIAL = Bound("--gpus-per-trial", 0, 64, integer=False,
                       unit=" of GPUs")  # fractions share a GPU, as Ray Tune allows; 0 = none
SEED = Bound("--seed", 0, SEED_MAX)  # numpy's and Optuna's samplers' range
LATENCY_THREADS = Bound("--latency-threads", 1, 1024)
INFER_THREADS = Bound("--threads", 1, 1024)  # infer
ENERGY_WINDOW = Bound("--energy-window", 0, 3600, integer=False, unit=" of seconds")
PORT = Bound("--port", 1, 65535)
WORKERS = Bound("--workers", 1, 64)
