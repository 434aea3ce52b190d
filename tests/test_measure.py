"""Measurement helpers against workloads of known cost (busy loops, no sleeps)."""

from __future__ import annotations

import itertools
import time

import pytest
import torch

from trainables import measure
from trainables.measure import MeasureSettings, measure_energy, measure_inference, measure_latency


def busy(ms: float) -> None:
    end = time.perf_counter() + ms / 1000
    while time.perf_counter() < end:
        pass


def test_warmup_is_excluded():
    calls = itertools.count()

    def fn():
        busy(30 if next(calls) < 3 else 2)

    stats = measure_latency(fn, warmup=3, repeats=10, max_repeats=10)
    assert next(calls) == 13, "warm-up calls + timed calls"
    assert 1.9 < stats.median_ms < 6 and stats.p90_ms < 15
    calls = itertools.count()
    cold = measure_latency(fn, warmup=0, repeats=10, max_repeats=10)
    assert cold.p90_ms > 25, "without warm-up the slow first calls show"


def test_percentiles_are_ordered_and_in_ms():
    sizes = itertools.cycle([1, 2, 3, 4, 5])
    stats = measure_latency(lambda: busy(next(sizes)), warmup=0, repeats=25, max_repeats=25)
    assert stats.p10_ms <= stats.median_ms <= stats.p90_ms
    assert 0.9 < stats.p10_ms < 2.5 and 2.9 < stats.median_ms < 4 and 4 < stats.p90_ms < 7


def test_adaptive_repeats_stop_when_stable_and_respect_the_cap():
    stable = measure_latency(lambda: busy(1), warmup=1, repeats=10, max_repeats=200)
    assert stable.stable and stable.repeats <= 40
    flip = itertools.cycle([1, 1, 8])
    capped = measure_latency(lambda: busy(next(flip)), warmup=0, repeats=5, max_repeats=20,
                             rel_tol=1e-9)
    assert capped.repeats == 20 and not capped.stable


def test_energy_per_call_cpu_and_source():
    stats = measure_energy(lambda: busy(2), window_s=0.3)
    assert stats.window_s >= 0.3 and 60 <= stats.calls <= 151
    assert stats.energy_mj > 0
    assert 50 < stats.cpu_percent < 120, "a busy loop keeps one core busy"
    assert stats.source in ("rapl", "nvml") or stats.source.startswith("estimate:")


def test_measure_inference_fields_and_threads():
    before = torch.get_num_threads()
    metrics, tags = measure_inference(lambda: busy(1), MeasureSettings(
        warmup=1, min_repeats=5, max_repeats=10, energy_window_s=0.1, threads=1))
    assert torch.get_num_threads() == before, "thread count restored"
    assert tags["latency_threads"] == "1"
    for key in ("latency_ms", "latency_ms_p10", "latency_ms_p90", "energy_mj", "cpu_percent",
                "measure_s"):
        assert metrics[key] > 0, key
    assert {"energy_source", "energy_calls", "energy_window_s", "latency_stable"} <= set(tags)
    metrics, tags = measure_inference(lambda: busy(1), MeasureSettings(
        warmup=0, min_repeats=2, max_repeats=2, energy_window_s=0))
    assert "energy_mj" not in metrics and "energy_source" not in tags


def test_peak_rss_sees_tensor_memory():
    import psutil

    def rss_mb() -> float:
        return psutil.Process().memory_info().rss / 2**20

    big = torch.ones(80 * 2**20)  # 320 MiB, touched: resident
    assert measure.peak_rss_mb() >= rss_mb() - 1, "the peak covers tensor memory"
    assert rss_mb() > 320
    del big
    if measure.reset_peak_rss():  # a new window starts at the current resident size
        assert measure.peak_rss_mb() <= rss_mb() + 5


@pytest.mark.parametrize(("kwargs", "message"), [
    ({"min_repeats": 0}, "repeats must be >= 1, got 0"),
    ({"warmup": -1}, "warmup must be >= 0, got -1"),
    ({"min_repeats": 10, "max_repeats": 5}, r"max_repeats \(5\) must be >= min_repeats \(10\)"),
    ({"energy_window_s": -1.0}, r"energy window \(--energy-window\) must be in \[0, 3600\]"),
    ({"energy_window_s": float("inf")}, "got inf"),
    ({"threads": 0}, r"latency threads \(--latency-threads\) must be >= 1, got 0"),
])
def test_bad_settings_are_clear(kwargs, message):
    with pytest.raises(ValueError, match=message):
        MeasureSettings(**kwargs)


def test_bad_arguments_are_clear():
    with pytest.raises(ValueError, match="repeats must be >= 1, got 0"):
        measure_latency(lambda: None, repeats=0)
    with pytest.raises(ValueError, match="energy window must be > 0 s, got 0"):
        measure_energy(lambda: None, window_s=0)
