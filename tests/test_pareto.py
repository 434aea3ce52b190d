"""Pareto extraction against hand examples (ties, NaNs) and brute force on random frames."""

from __future__ import annotations

import itertools

import numpy as np
import pandas as pd
import pytest

from analysis.pareto import pareto_front, pareto_mask, parse_objectives
from analysis.report import pareto_table, render

OBJ = {"val_acc": "max", "size_bytes": "min"}


def test_hand_example_with_ties_and_nans():
    df = pd.DataFrame({
        "val_acc":    [0.90, 0.90, 0.85, 0.80, 0.95, np.nan, 0.95, 0.70],
        "size_bytes": [100., 100., 50.0, 60.0, 300., 10.0,   300., 10.0],
    })
    mask = pareto_mask(df, OBJ)
    # 0/1 tie (both kept); 2 beats 3; 4/6 tie at the top; 5 has NaN; 7 is the smallest.
    assert mask.tolist() == [True, True, True, False, True, False, True, True]
    front = pareto_front(df, OBJ)
    assert front["val_acc"].tolist() == [0.95, 0.95, 0.90, 0.90, 0.85, 0.70]


def _brute_force(costs: np.ndarray) -> list[bool]:
    keep = []
    for i, row in enumerate(costs):
        if np.isnan(row).any():
            keep.append(False)
            continue
        dominated = any(
            not np.isnan(other).any() and np.all(other <= row) and np.any(other < row)
            for j, other in enumerate(costs) if j != i
        )
        keep.append(not dominated)
    return keep


@pytest.mark.parametrize(("seed", "n_obj"), itertools.product(range(5), [1, 2, 3]))
def test_matches_brute_force(seed, n_obj):
    rng = np.random.default_rng(seed)
    names = ["a", "b", "c"][:n_obj]
    directions = dict(zip(names, ["max", "min", "min"][:n_obj], strict=True))
    data = rng.integers(0, 6, size=(60, n_obj)).astype(float)  # small range: many ties
    data[rng.random((60, n_obj)) < 0.05] = np.nan
    df = pd.DataFrame(data, columns=names)
    costs = data * np.array([-1.0 if directions[n] == "max" else 1.0 for n in names])
    assert pareto_mask(df, directions).tolist() == _brute_force(costs)


def test_parse_objectives():
    assert parse_objectives("val_acc:max, size_bytes:min") == OBJ
    for bad in ("val_acc", "val_acc:up", ":max", ""):
        with pytest.raises(ValueError, match="objective"):
            parse_objectives(bad)
    with pytest.raises(ValueError, match="objective 'val_acc' is given both max and min"):
        parse_objectives("val_acc:max,val_acc:min")


def test_unknown_metric_is_named():
    with pytest.raises(KeyError, match="unknown metric 'energy_mj'; available: size_bytes"):
        pareto_mask(pd.DataFrame({"size_bytes": [1.0], "val_acc": [0.5]}),
                    {"energy_mj": "min"})


def test_table_and_formats():
    df = pd.DataFrame({
        "run_id": ["aaaaaaaaaaaa", "bbbbbbbbbbbb", "cccccccccccc"], "search": ["s"] * 3,
        "val_acc": [0.9, 0.8, 0.7], "size_bytes": [100.0, 50.0, 60.0],
        "prune.method": ["none", "global", "global"], "prune.sparsity": [np.nan, 0.9, 0.8],
    })
    table = pareto_table(pareto_front(df, OBJ), OBJ)
    assert table["run_id"].tolist() == ["aaaaaaaaaaaa", "bbbbbbbbbbbb"]
    assert list(table.columns[:4]) == ["run_id", "search", "val_acc", "size_bytes"]
    marked = pareto_table(pareto_front(df, OBJ), OBJ, knee=1)
    assert marked["knee"].tolist() == [False, True] and marked.columns[0] == "knee"
    assert "aaaaaaaa " in render(table, "table")
    assert render(table, "csv").splitlines()[0].startswith("run_id,search,val_acc,size_bytes")
    assert '"prune.sparsity": null' in render(table, "json")
    with pytest.raises(ValueError, match="unknown format 'xml'"):
        render(table, "xml")
