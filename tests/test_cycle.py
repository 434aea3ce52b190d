"""The compress-and-fine-tune cycle on real Cora, with a list's append as the report."""

from __future__ import annotations

import dataclasses
import os
import re

import pytest
import torch

from tests.conftest import fast_measure
from trainables.cycle import load_compressed, run_cycle
from trainables.measure import MeasureSettings
from trainables.metrics import METRICS
from trainables.model_file import load_state
from trainables.models import compression_targets

CONFIGS = [
    {"prune.method": "none", "quant.method": "fp32", "finetune.epochs": 0},
    {"prune.method": "global", "prune.sparsity": 0.9, "quant.method": "fp32",
     "finetune.epochs": 8, "finetune.lr": 0.005, "finetune.schedule": "cosine"},
    {"prune.method": "fine_grained", "prune.sparsity": 0.5, "quant.method": "qat",
     "quant.bits": 8, "finetune.epochs": 5},
    {"prune.method": "global", "prune.sparsity": 0.8, "quant.method": "qat", "quant.bits": 4,
     "finetune.epochs": 5, "finetune.schedule": "step"},
]


@pytest.mark.parametrize("config", CONFIGS,
                         ids=lambda c: f"{c['prune.method']}-{c['quant.method']}")
def test_cycle_end_to_end(config, cora_task, cora_baseline, tmp_path):
    reports: list[dict] = []
    result = run_cycle(config, cora_task, cora_baseline, reports.append, tmp_path,
                       measure_settings=MeasureSettings(warmup=1, min_repeats=3,
                                                        energy_window_s=0.2))
    m = result.metrics
    # per-epoch reports, in order, with the search metric
    assert [r["epoch"] for r in reports] == list(range(1, config["finetune.epochs"] + 1))
    assert all("val_acc" in r and "train_loss" in r for r in reports)
    # the file is what was measured, and reloads to the weights that were evaluated
    assert m["size_bytes"] == result.model_path.stat().st_size
    model, meta = load_compressed(result.model_path)
    assert meta["config"]["prune.method"] == config["prune.method"]
    assert cora_task.evaluate(model) == {"val_acc": m["val_acc"], "test_acc": m["test_acc"]}
    # pruning reached its target over the compressible tensors (quantization may add zeros)
    sparsity = config.get("prune.sparsity", 0.0)
    assert sparsity - 1e-3 <= m["sparsity_actual"] <= (sparsity + 0.15 if sparsity else 0.01)
    if config["quant.method"] == "qat":
        bits = config["quant.bits"]
        assert m["avg_bits"] == bits
        for t in compression_targets(model).values():
            levels = torch.unique(t.tensor.movedim(t.axis, 0)[0])
            assert len(levels) <= 2**bits - 1
        assert "/int" in result.tags["storage_layouts"]
    else:
        assert m["avg_bits"] == 32
    # every figure the cycle records is a row of the metrics table (a new metric is one row)
    assert set(m) <= set(METRICS), sorted(set(m) - set(METRICS))
    # the baseline's dense FP32 file is the reference for size_ratio
    assert m["size_ratio"] == pytest.approx(m["size_bytes"] / cora_baseline.metrics["size_bytes"])
    if config["prune.method"] == "none" and config["quant.method"] == "fp32":
        assert m["val_acc"] == cora_baseline.metrics["val_acc"]
        assert m["size_ratio"] == pytest.approx(1.0, abs=0.01)
    else:
        assert m["size_ratio"] < 0.5
    assert m["latency_ms_p10"] <= m["latency_ms"] <= m["latency_ms_p90"]
    assert m["val_acc"] > 0.5 and m["peak_rss_mb"] > 50
    # the deployed model: one kernel per layer, and its scores are the trial's
    assert re.fullmatch(r"conv1:[a-z0-9_]+\+[a-z]+,conv2:[a-z0-9_]+\+[a-z]+",
                        result.tags["latency_kernel"])
    assert result.tags["deployed_scores"] == "same"
    assert 0 < m["infer_peak_mb"] < m["infer_peak_mb_reference"]
    assert m["energy_mj"] > 0 and m["trial_energy_j"] > m["energy_mj"] / 1000
    assert 0 < m["cpu_percent"] <= 100 * (os.cpu_count() or 1) + 5
    assert result.tags["energy_source"] in ("rapl", "nvml") or result.tags[
        "energy_source"].startswith("estimate:")
    assert result.tags["peak_rss_scope"] in ("trial", "process")


def test_compression_shrinks_the_file_in_order(cora_task, cora_baseline, tmp_path):
    sizes = {}
    for name, config in {
        "fp32": {},
        "int8": {"quant.method": "qat", "quant.bits": 8},
        "int4": {"quant.method": "qat", "quant.bits": 4},
        "int4_sparse": {"quant.method": "qat", "quant.bits": 4, "prune.method": "global",
                        "prune.sparsity": 0.9},
    }.items():
        result = run_cycle(config, cora_task, cora_baseline, lambda r: None, tmp_path / name,
                           measure_settings=fast_measure())
        sizes[name] = result.metrics["size_bytes"]
    assert sizes["fp32"] / sizes["int8"] > 3.8
    assert sizes["fp32"] / sizes["int4"] > 7.0
    # a bitmask costs 1 bit per weight: 90% sparse int4 is ~1.4 bits/weight against 4
    assert sizes["int4"] / sizes["int4_sparse"] > 1.8


def test_cycle_does_not_touch_the_baseline(cora_task, cora_baseline, tmp_path):
    before = {k: v.clone() for k, v in cora_baseline.state.items()}
    run_cycle({"prune.method": "global", "prune.sparsity": 0.9, "finetune.epochs": 2},
              cora_task, cora_baseline, lambda r: None, tmp_path, measure_settings=fast_measure())
    assert all(torch.equal(before[k], v) for k, v in cora_baseline.state.items())


def test_bad_config_is_rejected_before_work(cora_task, cora_baseline, tmp_path):
    with pytest.raises(ValueError, match="prune.sparsity=1.0 is not allowed"):
        run_cycle({"prune.method": "global", "prune.sparsity": 1.0}, cora_task, cora_baseline,
                  lambda r: None, tmp_path)
    with pytest.raises(ValueError, match="unknown parameter 'prune.sparse'"):
        run_cycle({"prune.sparse": 0.5}, cora_task, cora_baseline, lambda r: None, tmp_path)
    assert not (tmp_path / "model.gnnz").exists()


def test_diverging_fine_tune_fails_clearly(cora_task, cora_baseline, tmp_path):
    state = {k: v.clone() for k, v in cora_baseline.state.items()}
    state["conv2.bias"][0] = float("inf")  # the loss becomes NaN at the first step
    broken = dataclasses.replace(cora_baseline, state=state)
    with pytest.raises(FloatingPointError, match="fine-tuning diverged: loss is nan at epoch 1"):
        run_cycle({"finetune.epochs": 3}, cora_task, broken, lambda r: None, tmp_path)


def test_baseline_is_cached(cora_task, cora_baseline, cache_dir):
    from tests.conftest import CORA, SPLINE
    from trainables.baseline import get_baseline

    training = {"epochs": 60, "lr": 0.01, "weight_decay": 5e-3}
    again, cached = get_baseline(cora_task, "node_classification", CORA, SPLINE, training, 0,
                                 cache_dir, progress=False)
    assert cached and again.key == cora_baseline.key
    assert all(torch.equal(again.state[k], v) for k, v in cora_baseline.state.items())
    _, meta = load_state(cora_baseline.settings["path"])
    assert meta["metrics"]["val_acc"] == cora_baseline.metrics["val_acc"]
