"""Pareto analysis: pure functions on DataFrames with explicit objective directions.

Rows with a missing (NaN) objective are never on the front. Equal rows do not dominate each
other, so ties are all kept.
"""

from __future__ import annotations

import math
import operator
import re
import sys
from collections.abc import Callable
from dataclasses import dataclass

import moocore
import numpy as np
import pandas as pd

DIRECTIONS = ("max", "min")
OPERATORS: dict[str, Callable[[float, float], bool]] = {
    ">=": operator.ge, "<=": operator.le, ">": operator.gt, "<": operator.lt, "==": operator.eq,
}
_CONSTRAINT = re.compile(r"^\s*([A-Za-z_][\w.]*)\s*(>=|<=|==|>|<)\s*([-+0-9.eE]+)\s*$")


def parse_objectives(text: str) -> dict[str, str]:
    """``"val_acc:max,size_bytes:min"`` -> ``{"val_acc": "max", "size_bytes": "min"}``."""
    objectives: dict[str, str] = {}
    for part in filter(None, (p.strip() for p in text.split(","))):
        metric, sep, direction = part.partition(":")
        if not sep or not metric or direction not in DIRECTIONS:
            raise ValueError(
                f"bad objective {part!r}; expected METRIC:max or METRIC:min, "
                "e.g. val_acc:max,size_bytes:min"
            )
        if metric in objectives:
            twice = (f"both {objectives[metric]} and {direction}" if objectives[metric] !=
                     direction else f"{direction} twice")
            raise ValueError(f"objective {metric!r} is given {twice}; give each metric once, "
                             "e.g. val_acc:max,size_bytes:min")
        objectives[metric] = direction
    if not objectives:
        raise ValueError("no objectives given; expected e.g. val_acc:max,size_bytes:min")
    return objectives


def _costs(df: pd.DataFrame, objectives: dict[str, str]) -> np.ndarray:
    """Objective matrix with every column turned into 'lower is better'."""
    missing = [m for m in objectives if m not in df.columns]
    if missing:
        raise KeyError(
            f"unknown metric {missing[0]!r}; available: {', '.join(sorted(map(str, df.columns)))}"
        )
    for metric, direction in objectives.items():
        if direction not in DIRECTIONS:
            raise ValueError(f"direction of {metric!r} must be max or min, got {direction!r}")
    cols = [df[m].astype(float).to_numpy() * (-1.0 if d == "max" else 1.0)
            for m, d in objectives.items()]
    return np.column_stack(cols) if cols else np.empty((len(df), 0))


def pareto_mask(df: pd.DataFrame, objectives: dict[str, str]) -> pd.Series:
    """True for rows no other complete row dominates (at least as good in every objective,
    strictly better in one)."""
    costs = _costs(df, objectives)  # every column minimised
    complete = ~np.isnan(costs).any(axis=1)
    mask = complete.copy()
    if complete.any() and costs.shape[1]:
        # keep_weakly: equal rows do not dominate each other, so every copy of a tie is kept
        mask[complete] = moocore.is_nondominated(costs[complete], keep_weakly=True)
    return pd.Series(mask, index=df.index, name="pareto")


def pareto_front(df: pd.DataFrame, objectives: dict[str, str]) -> pd.DataFrame:
    """The non-dominated rows, best first in the first objective."""
    front = df[pareto_mask(df, objectives)]
    first, direction = next(iter(objectives.items()))
    return front.sort_values(first, ascending=direction == "min", kind="stable")


@dataclass(frozen=True)
class Constraint:
    """``metric op value``, e.g. ``val_acc >= 0.8``."""

    metric: str
    op: str
    value: float

    def __str__(self) -> str:
        return f"{self.metric}{self.op}{self.value:g}"


def parse_constraint(text: str) -> Constraint:
    """``"val_acc>=0.80"`` -> Constraint; anything else is a clear error."""
    match = _CONSTRAINT.match(text)
    if not match:
        raise ValueError(
            f"malformed constraint {text!r}; expected METRIC OP NUMBER with OP one of "
            f"{', '.join(OPERATORS)}, e.g. \"val_acc>=0.80\""
        )
    try:
        value = float(match.group(3))
    except ValueError:
        value = math.nan
    if not math.isfinite(value):
        raise ValueError(f"malformed constraint {text!r}: {match.group(3)!r} is not a finite "
                         "number; expected e.g. \"val_acc>=0.80\"")
    return Constraint(match.group(1), match.group(2), value)


def apply_constraints(df: pd.DataFrame, constraints: list[Constraint]) -> pd.DataFrame:
    """Rows meeting every constraint (a NaN metric fails)."""
    keep = pd.Series(True, index=df.index)
    for c in constraints:
        if c.metric not in df.columns:
            raise KeyError(f"unknown metric {c.metric!r} in constraint {str(c)!r}; available: "
                           f"{', '.join(sorted(map(str, df.columns)))}")
        keep &= df[c.metric].astype(float).map(lambda v, c=c: OPERATORS[c.op](v, c.value))
    return df[keep]


def knee_point(front: pd.DataFrame, objectives: dict[str, str]):
    """Index of the front row closest to the ideal point after scaling every objective to
    [0, 1] over the front (the balanced compromise); None for an empty front."""
    if front.empty:
        return None
    costs = _costs(front, objectives)
    low, high = costs.min(axis=0), costs.max(axis=0)
    scaled = (costs - low) / np.where(high > low, high - low, 1.0)
    return front.index[int(np.argmin(np.linalg.norm(scaled, axis=1)))]


def reference_point(frames: list[pd.DataFrame], objectives: dict[str, str],
                    margin: float = 0.1) -> dict[str, float]:
    """The worst value of each objective over ``frames``, pushed ``margin`` of the range
    further (a hypervolume reference every point strictly dominates)."""
    costs = np.vstack([_costs(f, objectives) for f in frames])
    costs = costs[~np.isnan(costs).any(axis=1)]
    if costs.size == 0:
        raise ValueError("no complete rows to take a reference point from")
    worst, best = costs.max(axis=0), costs.min(axis=0)
    span = np.where(worst > best, worst - best, np.maximum(np.abs(worst), 1.0))
    ref_costs = worst + margin * span
    return {m: float(-c if d == "max" else c)
            for (m, d), c in zip(objectives.items(), ref_costs, strict=True)}


def hypervolume(df: pd.DataFrame, objectives: dict[str, str], reference: dict[str, float]
                ) -> float:
    """Hypervolume dominated by the complete rows of ``df`` up to ``reference`` (moocore)."""
    costs = _costs(df, objectives)
    costs = costs[~np.isnan(costs).any(axis=1)]
    ref = np.array([-reference[m] if d == "max" else reference[m]
                    for m, d in objectives.items()])
    costs = costs[(costs < ref).all(axis=1)]
    if costs.size == 0:
        return 0.0
    return float(moocore.hypervolume(costs, ref=ref))


def coverage(a: pd.DataFrame, b: pd.DataFrame, objectives: dict[str, str]) -> float:
    """C(A, B): fraction of B's complete rows that some row of A weakly dominates."""
    ca, cb = _costs(a, objectives), _costs(b, objectives)
    ca, cb = ca[~np.isnan(ca).any(axis=1)], cb[~np.isnan(cb).any(axis=1)]
    if len(cb) == 0:
        return float("nan")
    covered = [bool((ca <= row).all(axis=1).any()) for row in cb] if len(ca) else [False] * len(cb)
    return float(np.mean(covered))


@dataclass
class Analysis:
    """What the pareto and report commands show: the trials meeting the constraints, their
    front (best first in the first objective), its knee, and its hypervolume."""

    feasible: pd.DataFrame
    front: pd.DataFrame
    knee: object  # index label of the knee row in ``front``, or None
    reference: dict[str, float]
    hypervolume: float


def analyze(trials: pd.DataFrame, objectives: dict[str, str],
            constraints: list[Constraint] | tuple = ()) -> Analysis:
    """Constraints -> front -> knee -> hypervolume; the reference point comes from all
    finished trials, so constraints do not move it."""
    feasible = apply_constraints(trials, list(constraints))
    front = pareto_front(feasible, objectives)
    reference = reference_point([trials], objectives)
    return Analysis(feasible, front, knee_point(front, objectives), reference,
                    hypervolume(front, objectives, reference))


if __name__ == "__main__":  # python -m analysis.pareto ... == gnn-search pareto ...
    from analysis.cli import main

    sys.exit(main(["pareto", *sys.argv[1:]]))
