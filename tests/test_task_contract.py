"""The method contract for the link-prediction and graph-classification models: every
pruning method and every quantization method x bit-width that the model and task allow (the
fit rules of ``trainables.params.check_fit``, as the loader and the cycle apply them) runs a
cycle on the real data, reaches its target, and reloads to exactly what was evaluated; what
they do not allow is refused by the cycle. (Node classification: tests/test_contract.py.)"""

from __future__ import annotations

import pytest

from tests.conftest import fast_measure
from tests.test_runtime import assert_same_answers
from tests.test_tasks import CORA_LINK, PROTEINS, _task
from trainables.baseline import get_baseline
from trainables.cycle import run_cycle
from trainables.models import MODELS as REGISTERED_MODELS
from trainables.params import check_fit
from trainables.pruning import PRUNERS
from trainables.quantization import QUANTIZERS, SUPPORTED_BITS
from trainables.structured import registered_support
from trainables.tasks import TASKS

SMALL = {"ness": {"hidden": 32}, "gae": {"hidden": 16, "out": 8},
         "gin": {"hidden": 16, "layers": 2}, "graph_gcn": {"hidden": 64, "layers": 2},
         "hgpsl": {"hidden": 16}}
DATA = {"link_prediction": CORA_LINK, "graph_classification": PROTEINS}
MODELS = [(task, model) for task in DATA for model in TASKS[task].models]
SPARSITY = 0.5


def _configs():
    """Every pruning method and every quantization method x bit-width, one at a time."""
    for prune in PRUNERS:
        if prune != "none":
            yield {"prune.method": prune, "prune.sparsity": SPARSITY}
    for quant in QUANTIZERS:
        if quant != "fp32":
            for bits in SUPPORTED_BITS:
                yield {"quant.method": quant, "quant.bits": bits}


def _fits(task: str, model: str, config: dict) -> bool:
    """The loader's and the cycle's rule: what the task and model can run."""
    try:
        check_fit(config, TASKS[task].transductive,
                  lambda: registered_support(task, {"name": model, "kwargs": SMALL[model]}))
    except ValueError:
        return False
    return True


ALL = [(task, model, config) for task, model in MODELS for config in _configs()]
CASES = [case for case in ALL if _fits(*case)]
LEFT_OUT = [case for case in ALL if not _fits(*case)]


def _id(case) -> str:
    _, model, config = case
    return f"{model}-{'-'.join(str(v) for v in config.values())}"


_BASELINES: dict[str, object] = {}


def _baseline(task_name, model, task, cache_dir):
    if model not in _BASELINES:
        _BASELINES[model], _ = get_baseline(
            task, task_name, DATA[task_name], {"name": model, "kwargs": SMALL[model]},
            {"epochs": 2, "lr": 0.01, "weight_decay": 0.0}, 0, cache_dir, progress=False)
    return _BASELINES[model]


def test_every_model_and_method_is_covered():
    assert {m for _, m in MODELS} == set(SMALL), "SMALL: a small size for each model"
    # node classification: tests/test_contract.py; together every registered model
    assert set(REGISTERED_MODELS) == {m for spec in TASKS.values() for m in spec.models}
    methods = {c.get("prune.method", c.get("quant.method")) for _, _, c in CASES}
    assert methods == (set(PRUNERS) | set(QUANTIZERS)) - {"none", "fp32"}, (
        "each method fits some model of these tasks")


@pytest.mark.slow
@pytest.mark.parametrize(("task_name", "model", "config"), CASES, ids=[_id(c) for c in CASES])
def test_task_contract(task_name, model, config, data_root, cache_dir, tmp_path):
    task = _task(task_name, DATA[task_name], data_root)
    baseline = _baseline(task_name, model, task, cache_dir)
    reports: list[dict] = []
    result = run_cycle({**config, "finetune.epochs": 1, "finetune.lr": 0.001}, task, baseline,
                       reports.append, tmp_path, measure_settings=fast_measure())
    m = result.metrics
    assert len(reports) == 1 and task.search_metric in m
    if "prune.method" in config:
        slack = 0.5 if config["prune.method"] == "structured" else 0.01
        # structured: a layer between two pruned groups loses rows and columns (GIN's MLPs)
        most = 1 - (1 - SPARSITY) ** 2 if config["prune.method"] == "structured" else SPARSITY
        assert SPARSITY - slack <= m["sparsity_actual"] <= most + 0.01
        assert m["avg_bits"] == 32
    else:
        assert m["avg_bits"] == config["quant.bits"]
        assert "/int" in result.tags["storage_layouts"]
        # smaller than the FP32 file (these tiny test models are mostly biases and norms)
        assert m["size_bytes"] < baseline.metrics["size_bytes"]
    assert result.tags["roundtrip"] == "exact"
    # its deployed form is what was scored, and computes what the reloaded model computes
    scores = assert_same_answers(task, result.model_path, quantized="quant.method" in config,
                                 discrete=model == "hgpsl")
    assert {k: scores[k] for k in scores if k in m} == {k: m[k] for k in scores if k in m}


@pytest.mark.slow
@pytest.mark.parametrize(("task_name", "model", "config"), LEFT_OUT,
                         ids=[_id(c) for c in LEFT_OUT])
def test_the_cycle_refuses_what_the_contract_leaves_out(task_name, model, config, data_root,
                                                        cache_dir, tmp_path):
    """A combination left out above is one the service refuses, with a message naming what
    it allows, before any work (not one that would silently do something else)."""
    task = _task(task_name, DATA[task_name], data_root)
    baseline = _baseline(task_name, model, task, cache_dir)
    with pytest.raises(ValueError, match=r"(allowed|supports): \w"):
        run_cycle({**config, "finetune.epochs": 1, "finetune.lr": 0.001}, task, baseline,
                  lambda metrics: pytest.fail("the refused cycle trained"), tmp_path,
                  measure_settings=fast_measure())
    assert not any(tmp_path.iterdir()), "nothing written"
