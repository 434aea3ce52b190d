"""The method contract for the link-prediction and graph-classification models: every
pruning method and every quantization method x bit-width that the model and task allow runs a
cycle on the real data, reaches its target, and reloads to exactly what was evaluated.
(Node-classification models: tests/test_contract.py, every combination.)"""

from __future__ import annotations

import pytest

from tests.conftest import fast_measure
from tests.test_tasks import CORA_LINK, PROTEINS, _task
from trainables.baseline import get_baseline
from trainables.cycle import load_compressed, run_cycle
from trainables.models import TASK_MODELS, supports_structured
from trainables.pruning import PRUNERS
from trainables.quantization import QUANTIZERS, SUPPORTED_BITS
from trainables.tasks import TRANSDUCTIVE_TASKS

SMALL = {"ness": {"hidden": 32}, "gae": {"hidden": 16, "out": 8},
         "gin": {"hidden": 16, "layers": 2}, "graph_gcn": {"hidden": 64, "layers": 2},
         "hgpsl": {"hidden": 16}}
DATA = {"link_prediction": CORA_LINK, "graph_classification": PROTEINS}
MODELS = [(task, model) for task in DATA for model in TASK_MODELS[task]]
SPARSITY = 0.5


def _cases():
    for task, model in MODELS:
        for prune in PRUNERS:
            if prune != "none" and (prune != "structured" or supports_structured(model)):
                yield task, model, {"prune.method": prune, "prune.sparsity": SPARSITY}
        for quant in QUANTIZERS:
            if quant != "fp32" and (quant != "a2q" or task in TRANSDUCTIVE_TASKS):
                for bits in SUPPORTED_BITS:
                    yield task, model, {"quant.method": quant, "quant.bits": bits}


CASES = list(_cases())
_BASELINES: dict[str, object] = {}


def _baseline(task_name, model, task, cache_dir):
    if model not in _BASELINES:
        _BASELINES[model], _ = get_baseline(
            task, task_name, DATA[task_name], {"name": model, "kwargs": SMALL[model]},
            {"epochs": 2, "lr": 0.01, "weight_decay": 0.0}, 0, cache_dir, progress=False)
    return _BASELINES[model]


def test_every_model_of_every_other_task_is_covered():
    assert {m for _, m in MODELS} == set(SMALL)
    assert len(CASES) == sum(
        sum(1 for p in PRUNERS if p != "none" and (p != "structured" or supports_structured(m)))
        + sum(len(SUPPORTED_BITS) for q in QUANTIZERS
              if q != "fp32" and (q != "a2q" or t in TRANSDUCTIVE_TASKS))
        for t, m in MODELS)


@pytest.mark.slow
@pytest.mark.parametrize(("task_name", "model", "config"), CASES,
                         ids=[f"{m}-{'-'.join(str(v) for v in c.values())}"
                              for _, m, c in CASES])
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
        assert SPARSITY - slack <= m["sparsity_actual"] <= SPARSITY + 0.01
        assert m["avg_bits"] == 32
    else:
        assert m["avg_bits"] == config["quant.bits"]
        assert "/int" in result.tags["storage_layouts"]
        # smaller than the FP32 file (these tiny test models are mostly biases and norms)
        assert m["size_bytes"] < baseline.metrics["size_bytes"]
    reloaded, _ = load_compressed(result.model_path)
    scores = task.evaluate(reloaded)
    assert {k: scores[k] for k in scores if k in m} == {k: m[k] for k in scores if k in m}
    assert result.tags["roundtrip"] == "exact"
