"""Constraints, knee point, hypervolume and coverage on hand-made frames."""

from __future__ import annotations

import ast
from pathlib import Path

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


ANALYSIS = Path(__file__).resolve().parents[1] / "analysis"


def _is_script_block(node: ast.AST) -> bool:
    """``if __name__ == "__main__":``: runs only as ``python -m analysis.X``, where the module
    is ``__main__`` (not ``analysis.X``), so its imports are no edge of ``analysis.X``."""
    return (isinstance(node, ast.If) and isinstance(node.test, ast.Compare)
            and isinstance(node.test.left, ast.Name) and node.test.left.id == "__name__")


def _imports(path: Path) -> set[str]:
    """Every module ``path`` imports, at the top or inside functions (lazy imports count)."""
    found = set()
    body = [n for n in ast.parse(path.read_text()).body if not _is_script_block(n)]
    for node in (n for top in body for n in ast.walk(top)):
        if isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module:
            found.add(node.module)
            if node.module == "analysis":  # from analysis import plots
                found.update(f"analysis.{alias.name}" for alias in node.names)
    return found


def test_analysis_imports_no_search_and_has_no_cycles():
    graph = {f"analysis.{p.stem}": {m for m in _imports(p) if m.startswith("analysis.")}
             for p in ANALYSIS.glob("*.py") if p.stem != "__init__"}
    for module, path in ((m, ANALYSIS / f"{m.split('.')[1]}.py") for m in graph):
        assert not [m for m in _imports(path) if m.split(".")[0] in ("search", "ray")], module
    # The script blocks import only analysis.cli, and analysis.cli nothing of search.
    for path in ANALYSIS.glob("*.py"):
        for node in ast.parse(path.read_text()).body:
            if _is_script_block(node):
                assert "from analysis.cli import main" in ast.unparse(node), path.name

    def visit(module: str, trail: tuple[str, ...]) -> None:
        assert module not in trail, " -> ".join((*trail, module))
        for target in graph.get(module, ()):
            visit(target, (*trail, module))

    for module in graph:
        visit(module, ())
    assert "analysis.report" not in graph["analysis.plots"], "plots reads analysis.columns"


def test_functions_are_short():
    root = ANALYSIS.parent
    for path in [*ANALYSIS.glob("*.py"), root / "search" / "cli.py"]:
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
                lines = node.end_lineno - node.lineno + 1
                assert lines <= 60, f"{path.name}:{node.name} is {lines} lines"


def test_report_sections_and_figures(tmp_path):
    from analysis.report import build_report

    trials = pd.DataFrame({
        "run_id": [f"{i:012d}" for i in range(6)], "search": ["s"] * 6,
        "val_acc": [0.9, 0.8, 0.85, 0.7, 0.6, 0.88],
        "size_bytes": [300.0, 50.0, 100.0, 40.0, 45.0, 310.0],
        "prune.method": ["none", "global", "global", "global", "global", "none"],
        "prune.sparsity": [np.nan, 0.9, 0.5, 0.95, 0.93, np.nan],
    })
    searches = pd.DataFrame([{"run_id": "p", "baseline_val_acc": 0.91,
                              "baseline_size_bytes": 280.0}])
    path = build_report(trials, {"FAILED": 1}, searches, OBJ, tmp_path / "r",
                        [parse_constraint("val_acc>=0.65")], title="T <1>")
    page = path.read_text()
    headings = ["Pareto front (hover for the configuration)", "Pareto-optimal configurations",
                "Against the FP32 baseline", "Every pair of objectives", "All trials",
                "Parameter importances"]
    positions = [page.index(f"<h2>{h}</h2>") for h in headings]
    assert positions == sorted(positions)
    assert "<h1>T &lt;1&gt;</h1>" in page and "<title>T &lt;1&gt;</title>" in page
    assert "<tr><th>left out (not finished)</th><td>1 FAILED</td></tr>" in page
    assert "<tr><th>meeting constraints</th><td>5</td></tr>" in page
    assert 'id="pareto-interactive"' in page and 'id="parallel-coordinates"' in page
    assert (tmp_path / "r" / "pareto_val_acc_vs_size_bytes.png").is_file()
    assert page.count("data:image/png;base64,") >= 1


def test_a_report_of_many_trials_samples_its_interactive_figures(tmp_path, monkeypatch):
    import analysis.report as report

    rng = np.random.default_rng(0)
    trials = pd.DataFrame({"run_id": [f"{i:012d}" for i in range(60)], "search": ["s"] * 60,
                           "val_acc": rng.uniform(0.5, 0.9, 60),
                           "size_bytes": rng.uniform(10, 300, 60),
                           "prune.method": ["global"] * 60,
                           "prune.sparsity": rng.uniform(0.3, 0.9, 60)})
    front = pareto_front(trials, OBJ)
    shown = report.thinned(trials, front, limit=20)
    assert len(shown) == 20 and set(front.index) <= set(shown.index)
    assert shown.index.equals(report.thinned(trials, front, limit=20).index)  # seeded
    assert report.thinned(trials, front, limit=60) is trials
    monkeypatch.setattr(report, "MAX_SHOWN", 20)
    page = report.build_report(trials, {}, pd.DataFrame(), OBJ, tmp_path / "r").read_text()
    assert ("<tr><th>interactive figures and importances</th><td>the Pareto-optimal and a "
            "random sample, 20 of 60 trials (the PNGs show every trial)</td></tr>") in page
