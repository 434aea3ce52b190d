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
    assert space.metrics == ["val_acc", "size_bytes", "latency_ms"]
    assert space.modes == ["max", "min", "min"]


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
    (VALID + "colour: blue\n", "unknown key 'colour'; allowed: task, dataset, model, baseline"),
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
    # a key written twice: YAML would keep the last silently
    (VALID + "objectives: {val_acc: max}\n",
     r"key 'objectives' is written twice \(lines 5 and 13\); write it once"),
    (VALID + "  prune.method: [none]\n",
     r"key 'prune.method' is written twice \(lines 7 and 13\)"),
    # keys that are not names
    (VALID + "1: x\n", r"key '1' on line 13 is not a name \(YAML reads it as int\); keys "
     "must be names"),
    (VALID + "  2: [a]\n", r"key '2' on line 13 is not a name"),
    (VALID + "on: x\n", r"key 'on' on line 13 is not a name \(YAML reads it as bool\)"),
    # misspelt keys name their nearest
    (VALID.replace("objectives:", "objective:"),
     r"unknown key 'objective'; did you mean 'objectives'\?"),
    (VALID.replace("name: Cora", "nmae: Cora"), r"dataset: unknown key 'nmae'; did you mean "
     r"'name'\?"),
    (VALID.replace("{name: spline}", "{name: spline, kwarg: {}}"),
     r"model: unknown key 'kwarg'; did you mean 'kwargs'\?"),
    (VALID + "baseline: {epoch: 3}\n", r"baseline: unknown key 'epoch'; did you mean "
     r"'epochs'\?"),
    (VALID.replace("high: 0.9}", "hihg: 0.9}"),
     r"space.prune.sparsity: unknown key 'hihg'; did you mean 'high'\?"),
    (VALID + "source: x.yaml\n", "unknown key 'source'; allowed: task, dataset"),
    # what is expected at a key, in this project's words
    (VALID.replace("[global, none]", ""), r"space.prune.method: expected a list of choices, "
     r"a \{low, high\} range or a single value, got null"),
    (VALID.replace("space:\n", "space: [prune.method]\nx:\n"), "unknown key 'x'"),
    (VALID.replace("space:\n", "space: [prune.method]\nwarm_start:\n"),
     r"space: expected a mapping such as \{prune.method: \[global, none\]"),
    (VALID.replace("{loader: planetoid, name: Cora, split: random, num_val: 500, num_test: "
                   "500}", "Cora"),
     r"dataset: expected a mapping such as \{loader: planetoid, name: Cora\} \(got 'Cora'\)"),
    (VALID.replace("{val_acc: max, size_bytes: min}", "[val_acc]"),
     r"objectives: expected a mapping such as \{val_acc: max, size_bytes: min\}"),
    (VALID.replace("low: 0.3", "low: abc"),
     r"space.prune.sparsity.low: expected a number \(got 'abc'\)"),
    (VALID.replace(", high: 0.9", ""), r"space.prune.sparsity: missing key 'high'"),
    (VALID.replace("task: node_classification\n", ""), "missing key 'task'; a space file "
     "needs task, dataset, model, objectives and space"),
    (VALID.replace("name: Cora, ", ""), "dataset: missing key 'name'"),
    (VALID + "warm_start: {prune.method: global}\n", r"warm_start: expected a list such as "
     r"\[\{prune.method: global"),
    (VALID + "warm_start: [global]\n", r"warm_start\[0\]: expected a mapping such as "
     r"\{prune.method: global\} \(got 'global'\)"),
    (VALID + "baseline: {epochs: many}\n", r"baseline.epochs: expected a whole number "
     r"\(got 'many'\)"),
    (VALID + "baseline: {seed: -1}\n", r"baseline.seed: expected a number >= 0 \(got -1\)"),
    (VALID + "baseline: {seed: 4294967296}\n", r"baseline.seed: expected a number <= "
     r"4294967295"),
    # dataset settings the task or split does not read
    (VALID.replace("num_test: 500", "num_test: 500, val_ratio: 0.1"),
     "dataset.val_ratio does not apply to task 'node_classification'; allowed: loader, name, "
     "split, num_val, num_test"),
    (VALID.replace("split: random", "split: public"), "dataset.num_val applies only to split: "
     "random \\(this split: public\\); remove it or use split: random"),
    # a model argument torch refuses (RuntimeError), named
    (VALID.replace("{name: spline}", "{name: spline, kwargs: {hidden: -5, kernel_size: 2}}"),
     r"model.kwargs: model 'spline' cannot be built with hidden=-5 \(Trying to create tensor "
     r"with negative dimension"),
]
PYDANTIC_WORDING = ("Input should", "Field required", "Extra inputs", "valid dictionary",
                    "Value error")


@pytest.mark.parametrize(("text", "message"), BAD)
def test_bad_files_give_one_clear_error(tmp_path, text, message):
    with pytest.raises(SpaceError, match=message) as info:
        load_space(_write(tmp_path, text))
    assert "\n" not in str(info.value)
    assert str(tmp_path / "space.yaml") in str(info.value)
    assert not any(words in str(info.value) for words in PYDANTIC_WORDING), str(info.value)


@pytest.mark.parametrize(("data", "found"), [
    (VALID.encode("utf-16"), "UTF-16 byte-order mark"),
    (VALID.encode("utf-32"), "UTF-32 byte-order mark"),
    (VALID.replace("Cora", "\u00c7ora").encode("latin-1"), "byte 0xc7 at offset 62"),
    (b"\x89PNG\r\n\x1a\n\x00\x00\x00\rIHDR", "byte 0x89 at offset 0"),
    (b"task: node_classification\x00\x00", "byte 0x00 at offset 25"),
])
def test_a_file_that_is_not_utf8_text_is_one_line(tmp_path, data, found):
    path = tmp_path / "space.yaml"
    path.write_bytes(data)
    with pytest.raises(SpaceError) as info:
        load_space(path)
    assert str(info.value) == (f"{path}: not a UTF-8 text file ({found}); expected a YAML "
                               "space file (README, 'Space files')")


def test_a_utf8_byte_order_mark_is_text(tmp_path):
    path = tmp_path / "space.yaml"
    path.write_bytes(b"\xef\xbb\xbf" + textwrap.dedent(VALID).encode())
    assert load_space(path).task == "node_classification"


def test_yaml_merge_keys_may_be_overridden(tmp_path):
    """``<<: *anchor`` and then one of the anchor's keys is an override, not a duplicate."""
    text = VALID.replace("model: {name: spline}", "model: {<<: {name: gcn}, name: spline}")
    assert load_space(_write(tmp_path, text)).model.name == "spline"


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
    with pytest.raises(ValueError, match="unknown sampler 'cmaes'; allowed: tpe, gp, nsga2, "
                                         "nsga3, qmc, random"):
        make_sampler("cmaes", seed=0, trials=8)


def test_a_dumped_space_builds_the_same_space_again(tmp_path):
    """What the benchmarks do (``type(space)(**space.model_dump())``), also with the keys
    a file writes under another name in Python (``class``)."""
    path = tmp_path / "pyg.yaml"
    path.write_text(textwrap.dedent("""\
        task: node_classification
        dataset: {loader: pyg, class: Planetoid, name: Cora, split: public}
        model: {class: "tests.usermodels.models:SAGE", kwargs: {hidden: 8}}
        objectives: {val_acc: max, size_bytes: min}
        space: {prune.method: [global, none]}
        """))
    for space in (load_space("cora_node"), load_space(path)):
        again = type(space)(**space.model_dump())
        assert again.dataset.as_dict() == space.dataset.as_dict()
        assert again.model.as_dict() == space.model.as_dict()
