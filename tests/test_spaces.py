"""Space files: the bundled one loads, conditions hold, and every bad file says what is wrong."""

from __future__ import annotations

import textwrap

import optuna
import pytest

from spaces import SpaceError, bundled_spaces, load_space

VALID = """
task: node_classification
dataset: {loader: planetoid, name: Cora, split: random, num_val: 500, num_test: 500}
model: {name: spline}
objectives: {val_acc: max, size_bytes: min}
space:
  prune.method: [global, none]
  prune.sparsity: {low: 0.3, high: 0.9}
  quant.method: [qat, fp32]
  quant.bits: [4, 8]
  finetune.epochs: {low: 5, high: 50, log: true}
  finetune.lr: 0.01
"""


def _write(tmp_path, text: str):
    path = tmp_path / "space.yaml"
    path.write_text(textwrap.dedent(text))
    return path


def test_bundled_space_loads():
    assert "cora_node" in bundled_spaces()
    space = load_space("cora_node")
    assert space.task == "node_classification" and space.model.name == "spline"
    assert space.metrics == ["val_acc", "size_bytes"] and space.modes == ["max", "min"]


def test_define_by_run_respects_conditions(tmp_path):
    space = load_space(_write(tmp_path, VALID))
    study = optuna.create_study(directions=["maximize", "minimize"],
                                sampler=optuna.samplers.RandomSampler(seed=0))
    seen = set()
    for _ in range(60):
        trial = study.ask()
        constants = space.define_by_run(trial)
        params = trial.params
        assert constants == {"finetune.lr": 0.01}
        assert ("prune.sparsity" in params) == (params["prune.method"] != "none")
        assert ("quant.bits" in params) == (params["quant.method"] != "fp32")
        assert 5 <= params["finetune.epochs"] <= 50 and isinstance(params["finetune.epochs"], int)
        seen.add((params["prune.method"], params["quant.method"]))
        study.tell(trial, [0.5, 1.0])
    assert len(seen) == 4


def test_defaults_and_overrides(tmp_path):
    space = load_space(_write(tmp_path, VALID))
    defaults = space.defaults()
    assert defaults["prune.method"] == "global" and defaults["prune.sparsity"] == pytest.approx(0.6)
    assert defaults["finetune.epochs"] == round((5 * 50) ** 0.5)
    # --set values are checked against what the method allows, not the search range
    config = space.with_overrides({"prune.sparsity": "0.97", "quant.method": "fp32"})
    assert config["prune.sparsity"] == 0.97 and "quant.bits" not in config
    with pytest.raises(SpaceError, match=r"prune.sparsity='1.5'.*\[0.0, 1.0\)"):
        space.with_overrides({"prune.sparsity": "1.5"})
    with pytest.raises(SpaceError, match="quant.bits='3'.*one of 4, 8"):
        space.with_overrides({"quant.bits": "3"})
    with pytest.raises(SpaceError, match="unknown parameter 'prune.amount'"):
        space.with_overrides({"prune.amount": "0.5"})


BAD = [
    ("task: [unclosed", "malformed YAML"),
    ("- just\n- a list", "expected a mapping"),
    (VALID.replace("node_classification", "node_regression"),
     "task: unknown task 'node_regression'; allowed: node_classification"),
    (VALID.replace("name: spline", "name: transformer"),
     "model.name: unknown model 'transformer'; allowed: spline, gcn"),
    (VALID.replace("loader: planetoid", "loader: ogb"), "dataset.loader: unknown loader 'ogb'"),
    (VALID.replace("[global, none]", "[global, lottery]"),
     "prune.method='lottery' is not allowed; expected one of none, global, fine_grained"),
    (VALID.replace("high: 0.9}", "high: 1.2}"),
     r"prune.sparsity=1.2 is not allowed; expected a number in \[0.0, 1.0\)"),
    (VALID.replace("{low: 0.3, high: 0.9}", "{low: 0.9, high: 0.3}"),
     "low=0.9 must be below high=0.3"),
    (VALID.replace("[4, 8]", "[4, 16]"), "quant.bits=16 is not allowed; expected one of 4, 8"),
    (VALID.replace("val_acc: max", "test_acc: max"),
     "'test_acc' cannot be an objective.*never searched on"),
    (VALID.replace("size_bytes: min", "size_bytes: smallest"), "objectives.size_bytes"),
    (VALID + "  prune.amount: 0.5\n", "unknown parameter 'prune.amount'"),
    (VALID + "colour: blue\n", "colour: Extra inputs are not permitted"),
    (VALID.replace("model: {name: spline}", "model: {name: spline, kwargs: {hiden: 8}}"),
     "model.kwargs: unknown argument 'hiden' for model 'spline'; allowed: hidden"),
    (VALID.replace("{low: 5, high: 50, log: true}", "{low: 0, high: 50, log: true}"),
     "log range needs low > 0"),
    ("""
task: node_classification
dataset: {loader: planetoid, name: Cora}
model: {name: spline}
objectives: {val_acc: max}
space: {prune.method: global, finetune.lr: 0.01}
""", "nothing to search"),
]


@pytest.mark.parametrize(("text", "message"), BAD)
def test_bad_files_give_one_clear_error(tmp_path, text, message):
    with pytest.raises(SpaceError, match=message) as info:
        load_space(_write(tmp_path, text))
    assert "\n" not in str(info.value)
    assert str(tmp_path / "space.yaml") in str(info.value)


def test_missing_file():
    with pytest.raises(SpaceError, match="space file 'nope.yaml' not found; give a path or one "
                                         "of: bbbp, .*cora_node, .*proteins"):
        load_space("nope.yaml")


def test_regularization_parameters_only_with_regularization(tmp_path):
    text = VALID.replace("[global, none]", "[regularization, global]") + (
        "  prune.penalty: [l1, group_lasso]\n"
        "  prune.strength: {low: 1.0e-6, high: 1.0e-3, log: true}\n"
        "  prune.schedule: [one_shot, gradual]\n")
    space = load_space(_write(tmp_path, text))
    study = optuna.create_study(directions=["maximize", "minimize"],
                                sampler=optuna.samplers.RandomSampler(seed=1))
    for _ in range(30):
        trial = study.ask()
        space.define_by_run(trial)
        regularized = trial.params["prune.method"] == "regularization"
        assert ("prune.penalty" in trial.params) == regularized
        assert ("prune.strength" in trial.params) == regularized
        assert "prune.schedule" in trial.params
        study.tell(trial, [0.5, 1.0])


def test_warm_start_points(tmp_path):
    text = VALID + ("warm_start:\n"
                    "  - {prune.method: global, prune.sparsity: 0.8, finetune.lr: 0.01}\n")
    space = load_space(_write(tmp_path, text))
    points = space.warm_start_points()
    assert points[0] == {"prune.method": "none", "quant.method": "fp32"}
    assert points[1] == {"prune.method": "global", "prune.sparsity": 0.8}, "fixed keys dropped"
    assert space.warm_start_points(baseline=False) == points[1:]
    bad = VALID + "warm_start:\n  - {prune.method: global, prune.sparsity: 1.5}\n"
    with pytest.raises(SpaceError, match=r"warm_start.*prune.sparsity=1.5 is not allowed"):
        load_space(_write(tmp_path, bad))
    outside = VALID + "warm_start:\n  - {quant.method: a2q, quant.bits: 4}\n"
    with pytest.raises(SpaceError, match=r"warm_start: quant.method='a2q' is outside the "
                                         r"space; allowed: \['qat', 'fp32'\]"):
        load_space(_write(tmp_path, outside))


def test_overrides_that_switch_a_parameter_on_use_the_file_defaults(tmp_path):
    text = VALID.replace("[global, none]", "[none, global]").replace("[qat, fp32]",
                                                                      "[fp32, qat]")
    space = load_space(_write(tmp_path, text))
    assert "prune.sparsity" not in space.defaults() and "quant.bits" not in space.defaults()
    config = space.with_overrides({"prune.method": "global", "quant.method": "qat"})
    assert config["prune.sparsity"] == pytest.approx(0.6) and config["quant.bits"] == 4
    with pytest.raises(SpaceError, match="quant.bits=8 does not apply with quant.method=fp32"):
        space.with_overrides({"quant.bits": "8"})


def test_loader_must_fit_the_task(tmp_path):
    text = VALID.replace("{loader: planetoid, name: Cora,", "{loader: tu, name: PROTEINS,")
    with pytest.raises(SpaceError, match="dataset.loader 'tu' does not fit task "
                                         "'node_classification'; allowed: planetoid"):
        load_space(_write(tmp_path, text))


def test_sampler_names_agree():
    from spaces.samplers import SAMPLERS, make_sampler

    for name in SAMPLERS:
        make_sampler(name, seed=0, trials=8)
    with pytest.raises(ValueError, match="unknown sampler 'cmaes'; allowed: tpe, nsga2, random"):
        make_sampler("cmaes", seed=0, trials=8)
