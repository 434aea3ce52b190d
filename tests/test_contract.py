"""One contract over every pruning method x schedule x quantization method x bits x model.

The lists come from the registries and are filtered by the fit rules the space loader and
the cycle apply (``trainables.params.check_fit``), so a new method is covered by adding it
there, and a combination the service refuses is left out by the same rule.
"""

from __future__ import annotations

import pytest

from tests.conftest import CORA, fast_measure
from tests.test_runtime import assert_same_answers
from trainables.cycle import load_compressed, run_cycle
from trainables.params import check_fit
from trainables.pruning import PRUNERS, SCHEDULES
from trainables.quantization import QUANTIZERS, SUPPORTED_BITS
from trainables.structured import registered_support
from trainables.tasks import TASKS

TASK = TASKS["node_classification"]  # other tasks: tests/test_task_contract.py
PRUNE = [("none", None)] + [(m, s) for m in PRUNERS if m != "none" for s in SCHEDULES]
QUANT = [("fp32", None)] + [(q, b) for q in QUANTIZERS if q != "fp32" for b in SUPPORTED_BITS]
SPARSITY = 0.5
HIDDEN = 16


def _config(prune, schedule, quant, bits, epochs=4, sparsity=SPARSITY):
    """A trial's config; parameters that do not apply are dropped by the cycle's own rules."""
    config = {"prune.method": prune, "prune.sparsity": sparsity, "prune.schedule": schedule,
              "quant.method": quant, "quant.bits": bits, "finetune.epochs": epochs,
              "finetune.lr": 0.005}
    return {k: v for k, v in config.items() if v is not None}


def _fits(config, model) -> bool:
    """Whether the loader and the cycle accept ``config`` for ``model`` on this task."""
    try:
        check_fit(config, TASK.transductive,
                  lambda: registered_support(TASK.name,
                                             {"name": model, "kwargs": {"hidden": HIDDEN}}))
    except ValueError:
        return False
    return True


CASES = [(prune, schedule, quant, bits, model)
         for model in TASK.models for prune, schedule in PRUNE for quant, bits in QUANT
         if _fits(_config(prune, schedule, quant, bits), model)]
SPARSITY_CASES = [(prune, model) for model in TASK.models for prune in PRUNERS
                  if prune != "none" and _fits(_config(prune, "one_shot", "fp32", None), model)]
BITS_CASES = [(quant, model) for model in TASK.models for quant in QUANTIZERS
              if quant != "fp32" and _fits(_config("global", "one_shot", quant, 8), model)]


def _id(case) -> str:
    prune, schedule, quant, bits, model = case
    return f"{model}-{prune}{'-' + schedule if schedule else ''}-{quant}{bits or ''}"


@pytest.fixture(scope="session")
def baselines(cora_task, cache_dir):
    from trainables.baseline import get_baseline

    training = {"epochs": 40, "lr": 0.01, "weight_decay": 5e-3}
    out = {}
    for name in TASK.models:
        spec = {"name": name, "kwargs": {"hidden": HIDDEN}}
        out[name], _ = get_baseline(cora_task, "node_classification", CORA, spec, training, 0,
                                    cache_dir, progress=False)
    return out


def _config(prune, schedule, quant, bits, epochs=4, sparsity=SPARSITY):
    config = {"prune.method": prune, "quant.method": quant, "finetune.epochs": epochs,
              "finetune.lr": 0.005}
    if prune != "none":
        config.update({"prune.sparsity": sparsity, "prune.schedule": schedule})
    if bits:
        config["quant.bits"] = bits
    return config


@pytest.mark.slow
@pytest.mark.parametrize(("prune", "schedule", "quant", "bits", "model"), CASES,
                         ids=[_id(c) for c in CASES])
def test_contract(prune, schedule, quant, bits, model, cora_task, baselines, tmp_path):
    reports = []
    result = run_cycle(_config(prune, schedule, quant, bits), cora_task, baselines[model],
                       reports.append, tmp_path, measure_settings=fast_measure())
    m = result.metrics
    assert len(reports) == 4 and m["val_acc"] > 0.3
    # sparsity reached: within 1% of the target (quantization can only add zeros; structured
    # pruning removes whole channels, one channel = 1/HIDDEN of the weights)
    target = SPARSITY if prune != "none" else 0.0
    slack = 1.0 / HIDDEN if prune == "structured" else 0.01
    assert m["sparsity_actual"] >= target - slack
    if quant == "fp32":  # integer rounding adds zeros of its own (7% at INT8 on Cora)
        assert m["sparsity_actual"] <= target + slack
    if prune == "regularization" or schedule == "gradual":
        assert reports[-1]["prune_sparsity"] == pytest.approx(SPARSITY)
    # the file reloads to the weights that were evaluated (run_cycle also checks every tensor)
    _, meta = load_compressed(result.model_path)
    assert result.tags["roundtrip"] == "exact"
    # its deployed form is what was scored, and computes what the reloaded model computes
    scores = assert_same_answers(cora_task, result.model_path, quantized=bits is not None)
    assert scores == {"val_acc": m["val_acc"], "test_acc": m["test_acc"]}
    assert m["avg_bits"] == (bits or 32)
    if prune == "structured":
        assert meta["structured"]["sizes"] == {"conv1": [HIDDEN - round(SPARSITY * HIDDEN), HIDDEN]}
        assert meta["model"]["kwargs"] == {"hidden": HIDDEN}  # the original, replayed
        assert m["weights_stored"] < 0.6 * sum(
            t.numel() for n, t in baselines[model].state.items() if t.dim() >= 2)


@pytest.mark.slow
@pytest.mark.parametrize(("prune", "model"), SPARSITY_CASES)
def test_size_is_monotone_in_sparsity(prune, model, cora_task, baselines, tmp_path):
    sizes = [
        run_cycle(_config(prune, "one_shot", "fp32", None, epochs=0, sparsity=s), cora_task,
                  baselines[model], lambda r: None, tmp_path / str(s),
                  measure_settings=fast_measure()).metrics["size_bytes"]
        for s in (0.3, 0.6, 0.9)
    ]
    assert sizes[0] > sizes[1] > sizes[2], sizes


@pytest.mark.slow
@pytest.mark.parametrize(("quant", "model"), BITS_CASES)
def test_size_is_monotone_in_bits(quant, model, cora_task, baselines, tmp_path):
    sizes = {
        bits: run_cycle(_config("global", "one_shot", quant if bits else "fp32", bits, epochs=0),
                        cora_task, baselines[model], lambda r: None, tmp_path / str(bits),
                        measure_settings=fast_measure()).metrics["size_bytes"]
        for bits in (None, 8, 4)
    }
    assert sizes[None] > sizes[8] > sizes[4], sizes


@pytest.mark.parametrize(("key", "value", "message"), [
    ("prune.method", "lottery", "prune.method='lottery' is not allowed; expected one of none"),
    ("quant.method", "int3", "quant.method='int3' is not allowed; expected one of fp32"),
    ("quant.bits", 2, "quant.bits=2 is not allowed; expected one of 4, 8"),
    ("prune.schedule", "linear", "prune.schedule='linear' is not allowed"),
    ("prune.penalty", "l0", "prune.penalty='l0' is not allowed; expected one of l1"),
])
def test_bad_method_or_bits_is_clear(key, value, message, cora_task, baselines, tmp_path):
    config = {"prune.method": "regularization", "prune.sparsity": 0.5, "quant.method": "qat",
              key: value}
    with pytest.raises(ValueError, match=message):
        run_cycle(config, cora_task, baselines["gcn"], lambda r: None, tmp_path)


def test_every_registered_method_bit_width_and_model_is_in_the_contract():
    """What the fit rules leave out never removes a whole method, schedule, bit-width or model
    of this task from the contract."""
    prunes, schedules, quants, bits, models = (set(column) for column in zip(*CASES, strict=True))
    assert prunes == set(PRUNERS) and schedules - {None} == set(SCHEDULES)
    assert quants == set(QUANTIZERS) and bits - {None} == set(SUPPORTED_BITS)
    assert models == set(TASK.models)
    assert {p for p, _ in SPARSITY_CASES} == set(PRUNERS) - {"none"}
    assert {q for q, _ in BITS_CASES} == set(QUANTIZERS) - {"fp32"}


def test_every_parameter_has_a_default_that_it_allows():
    """What an absent parameter means (trainables/param_defaults.py) covers every parameter,
    with values the parameter's own check accepts."""
    from trainables.param_defaults import DEFAULTS, INACTIVE
    from trainables.params import PARAMS

    assert set(DEFAULTS) == set(PARAMS)
    assert set(INACTIVE) <= set(PARAMS) - {"prune.method", "quant.method"}
    for key, value in DEFAULTS.items():
        assert PARAMS[key].check(key, value) == value, key
