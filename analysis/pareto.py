"""Pareto analysis: pure functions on DataFrames with explicit objective directions.

Rows with a missing (NaN) objective are never on the front. Equal rows do not dominate each
other, so ties are all kept.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

DIRECTIONS = ("max", "min")


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
    costs = _costs(df, objectives)
    complete = ~np.isnan(costs).any(axis=1)
    mask = complete.copy()
    valid = costs[complete]
    for i in np.flatnonzero(complete):
        better_eq = (valid <= costs[i]).all(axis=1)
        strictly = (valid < costs[i]).any(axis=1)
        if (better_eq & strictly).any():
            mask[i] = False
    return pd.Series(mask, index=df.index, name="pareto")


def pareto_front(df: pd.DataFrame, objectives: dict[str, str]) -> pd.DataFrame:
    """The non-dominated rows, best first in the first objective."""
    front = df[pareto_mask(df, objectives)]
    first, direction = next(iter(objectives.items()))
    return front.sort_values(first, ascending=direction == "min", kind="stable")
