"""Constraints, knee point, hypervolume and coverage on hand-made frames."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from analysis.compare import compare_fronts
from analysis.pareto import (
    apply_constraints,
    coverage,
    hypervolume,
    knee_point,
    pareto_front,
    parse_constraint,
    reference_point,
)

OBJ = {"val_acc": "max", "size_bytes": "min"}


def _frame(points):
    return pd.DataFrame(points, columns=["val_acc", "size_bytes"])


def test_constraints():
    c = parse_constraint(" val_acc >= 0.8 ")
    assert (c.metric, c.op, c.value) == ("val_acc", ">=", 0.8) and str(c) == "val_acc>=0.8"
    df = _frame([(0.9, 10.0), (0.7, 5.0), (np.nan, 1.0)])
    assert apply_constraints(df, [c]).index.tolist() == [0]
    assert apply_constraints(df, [parse_constraint("size_bytes<6")]).index.tolist() == [1, 2]
    for bad in ("val_acc=>0.8", "val_acc >= high", ">= 0.8", "val_acc"):
        with pytest.raises(ValueError, match="malformed constraint"):
            parse_constraint(bad)
    with pytest.raises(KeyError, match="unknown metric 'energy_mj' in constraint"):
        apply_constraints(df, [parse_constraint("energy_mj<1")])


def test_knee_is_the_balanced_compromise():
    front = _frame([(0.90, 100.0), (0.89, 20.0), (0.70, 10.0)])
    assert knee_point(front, OBJ) == 1
    assert knee_point(front.iloc[:0], OBJ) is None


def test_hypervolume_by_hand_and_properties():
    front = _frame([(0.9, 3.0), (0.8, 1.0)])
    ref = {"val_acc": 0.5, "size_bytes": 5.0}
    # costs (-acc, size): (-0.9, 3), (-0.8, 1), ref (-0.5, 5):
    # 0.4 * 2 + 0.3 * 2 = 1.4 (union of two rectangles)
    assert hypervolume(front, OBJ, ref) == pytest.approx(0.4 * 2 + 0.3 * 4 - 0.3 * 2)
    dominated = pd.concat([front, _frame([(0.7, 4.0)])])
    assert hypervolume(dominated, OBJ, ref) == pytest.approx(hypervolume(front, OBJ, ref))
    better = pd.concat([front, _frame([(0.95, 0.5)])])
    assert hypervolume(better, OBJ, ref) > hypervolume(front, OBJ, ref)
    assert hypervolume(_frame([(0.4, 6.0)]), OBJ, ref) == 0.0, "beyond the reference"


def test_reference_point_is_dominated_by_every_point():
    df = _frame([(0.9, 100.0), (0.6, 10.0)])
    ref = reference_point([df], OBJ)
    assert ref["val_acc"] < 0.6 and ref["size_bytes"] > 100.0
    assert hypervolume(df.iloc[[1]], OBJ, ref) > 0


def test_coverage_and_compare():
    a = _frame([(0.9, 10.0), (0.8, 5.0)])
    b = _frame([(0.85, 12.0), (0.95, 20.0)])
    assert coverage(a, b, OBJ) == 0.5  # (0.85, 12) is dominated by (0.9, 10)
    assert coverage(b, a, OBJ) == 0.0
    assert coverage(a, a, OBJ) == 1.0
    table, ref = compare_fronts({"a": a, "b": b}, OBJ)
    assert table.set_index("experiment").loc["a", "covers b"] == 0.5
    assert set(ref) == set(OBJ)
    assert (table["hypervolume"] > 0).all()
    assert pareto_front(a, OBJ).shape[0] == 2
