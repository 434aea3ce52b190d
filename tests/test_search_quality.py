"""bench/search_quality.py's pure parts: the cache, the fixed reference point, the ratio
curves and the paired comparison (the benchmark's quick run is in test_bench_smoke)."""

from __future__ import annotations

import json

import pytest

from bench import search_quality as sq

OBJECTIVES = {"val_acc": "max", "size_bytes": "min"}


def _row(key: str, acc: float, size: float, epochs: int = 10, wall: float = 1.0) -> dict:
    return {"key": key, "metrics": {"val_acc": acc, "size_bytes": size}, "epochs": epochs,
            "wall_s": wall}


def test_config_key_is_stable_and_tells_configurations_and_seeds_apart():
    a = {"prune.method": "global", "prune.sparsity": 0.5}
    assert sq.config_key(a, 0) == sq.config_key(dict(reversed(list(a.items()))), 0)
    assert sq.config_key(a, 0) != sq.config_key(a, 1)
    assert sq.config_key(a, 0) != sq.config_key({**a, "prune.sparsity": 0.51}, 0)


def test_store_lines_survive_a_torn_write(tmp_path):
    path = tmp_path / "s.jsonl"
    sq.append_line(path, {"key": "a"})
    sq.append_line(path, {"key": "b"})
    with path.open("a") as f:
        f.write('{"key": "c", "metr')  # a worker killed mid-line
    assert [r["key"] for r in sq.read_lines(path)] == ["a", "b"]
    assert sq.read_lines(tmp_path / "missing.jsonl") == []


def test_reference_point_is_fixed_by_the_uncompressed_model():
    ref = sq.reference_point({"val_acc": 0.8, "size_bytes": 1000.0, "latency_ms": 2.0},
                             {"val_acc": "max", "size_bytes": "min", "latency_ms": "min"})
    assert ref == pytest.approx({"val_acc": 0.64, "size_bytes": 1000.0, "latency_ms": 4.0})


def test_minimized_objectives_count_in_factors():
    objectives = {"val_acc": "max", "size_bytes": "min", "latency_ms": "min"}
    out = sq.scaled({"val_acc": 0.8, "size_bytes": 1000.0, "latency_ms": 0.1}, objectives)
    assert out == pytest.approx({"val_acc": 0.8, "size_bytes": 3.0, "latency_ms": -1.0})


def test_ratio_curve_rises_to_one_on_the_reference_set():
    rows = [_row("a", 0.70, 900), _row("b", 0.75, 500), _row("c", 0.60, 100),
            _row("d", 0.78, 800)]
    ref = {"val_acc": 0.6, "size_bytes": 1000.0}
    import pandas as pd

    from analysis.pareto import hypervolume, pareto_front

    frame = pd.DataFrame([r["metrics"] for r in rows])
    full = hypervolume(pareto_front(frame, OBJECTIVES), OBJECTIVES, ref)
    curve = sq.ratio_curve(rows, OBJECTIVES, ref, full)
    assert curve == sorted(curve) and curve[-1] == pytest.approx(1.0)
    # "c" sits on the reference point's score: it adds nothing
    assert curve[2] == pytest.approx(curve[1])
    assert curve[0] == pytest.approx((0.70 - 0.6) * 100 / full)


def test_wins_are_paired_by_seed_and_the_table_names_every_sampler():
    def curves(values):
        return {seed: {"ratio": [v] * 16, "epochs": [1.0] * 16, "wall_s": [2.0] * 16}
                for seed, v in enumerate(values)}

    result = {"budgets": [8, 16], "samplers": {"tpe": curves([0.9, 0.5, 0.8]),
                                               "random": curves([0.8, 0.6, 0.7])}}
    assert sq.wins(result, "tpe", "random", 16) == (2, 3)
    text = "\n".join(sq.table(result))
    assert "| tpe | 0.800 (0.500–0.900) | 0.800 (0.500–0.900) | 1 | 2 | 2 of 3 |" in text
    assert "| random |" in text
    assert sq.best_sampler(result, [16]).startswith("tpe")


def test_study_keys_tell_warm_starts_and_objective_sets_apart():
    a = sq.Study("cora_node", 2, "tpe", 0, 32)
    assert a.key() != sq.Study("cora_node", 3, "tpe", 0, 32).key()
    assert a.key() != sq.Study("cora_node", 2, "tpe", 0, 32, warm="file").key()
    assert sq.Study("cora_node", 2, "tpe", 0, 32, warm="file").label == sq.WARM_FILE
    assert json.loads(a.key())["sampler"] == "tpe"


@pytest.mark.parametrize("bad, message", [
    ("8,x", "'8,x' is not a comma-separated list of whole numbers"),
    ("0,8", "'0,8': every value must be >= 1"),
])
def test_bad_budgets_are_named(bad, message):
    import argparse

    with pytest.raises(argparse.ArgumentTypeError, match=message):
        sq._int_list(bad)


def test_bad_sampler_names_are_named():
    import argparse

    with pytest.raises(argparse.ArgumentTypeError,
                       match="unknown sampler\\(s\\) 'cmaes'; allowed: tpe, gp, nsga2"):
        sq._samplers("tpe,cmaes")


@pytest.mark.parametrize("name", list(sq.VARIANTS))
def test_every_tpe_variant_builds_and_searches(name):
    import optuna

    from spaces import load_space

    space = load_space("cora_node")
    study = optuna.create_study(directions=["maximize", "minimize"],
                                sampler=sq.make_variant(name, 0, 32))
    for i in range(6):
        trial = study.ask()
        space.define_by_run(trial)
        study.tell(trial, [i / 10, 1 - i / 10])
    assert len(study.trials) == 6
    assert sq.make_variant("tpe-startup-half", 0, 32)._n_startup_trials == 16
    assert sq.quarter_gamma(10) == 3 and sq.quarter_gamma(400) == 25


def test_stratified_start_covers_every_method():
    space = {"prune.method": ["global", "structured", "random", "none"],
             "quant.method": ["qat", "ptq", "fp32"]}
    points = sq.stratified_points(space, 0, 7)
    assert len(points) == 7
    assert {p["prune.method"] for p in points} == {"global", "structured", "random"}
    assert {p["quant.method"] for p in points} == {"qat", "ptq"}
    assert len(sq.stratified_points(space, 0, 2)) == 3  # every method at least once
    assert sq.stratified_points(space, 0, 0) == []


@pytest.mark.parametrize("minimum, bad", [(1, "0"), (1, "-3"), (0, "two"), (0, "1.5")])
def test_bad_counts_are_named(minimum, bad):
    import argparse

    with pytest.raises(argparse.ArgumentTypeError,
                       match=f"'{bad}' is not a whole number >= {minimum}"):
        sq.whole(minimum)(bad)
    assert sq.whole(minimum)("7") == 7
