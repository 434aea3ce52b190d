"""Compare searches: hypervolume against one shared reference point, and Pareto coverage
C(A, B) = the fraction of B's front that A's front weakly dominates."""

from __future__ import annotations

import sys

import pandas as pd

from analysis.pareto import coverage, hypervolume, pareto_front, reference_point


def compare_fronts(trials: dict[str, pd.DataFrame], objectives: dict[str, str]
                   ) -> tuple[pd.DataFrame, dict[str, float]]:
    """One row per search: trials, front size, hypervolume, and coverage of every other
    search's front (``covers <name>``). Returns the table and the reference point."""
    fronts = {name: pareto_front(frame, objectives) for name, frame in trials.items()}
    reference = reference_point(list(trials.values()), objectives)
    rows = []
    for name, front in fronts.items():
        row = {"experiment": name, "trials": len(trials[name]), "pareto": len(front),
               "hypervolume": hypervolume(front, objectives, reference)}
        for other, other_front in fronts.items():
            if other != name:
                row[f"covers {other}"] = coverage(front, other_front, objectives)
        rows.append(row)
    return pd.DataFrame(rows), reference


if __name__ == "__main__":  # python -m analysis.compare ... == gnn-search compare ...
    from analysis.cli import main

    sys.exit(main(["compare", *sys.argv[1:]]))
