"""Measurement helpers on a fake clock (workloads of exact cost: the mechanism, warm-up,
repeats, what is inside the timed window) and once on the real clock and energy counter."""

from __future__ import annotations

import itertools
import time
from types import SimpleNamespace

import pytest
import torch

from trainables import measure
from trainables.measure import MeasureSettings, measure_energy, measure_inference, measure_latency


class FakeClock:
    """Stands in for the ``time`` module inside :mod:`trainables.measure`: time moves only
    when a workload runs (``work``) or something sleeps, so every figure is exact, and each
    event is logged to show what lies inside a timed window."""

    def __init__(self) -> None:
        self.now = 0.0
        self.cpu = 0.0  # process CPU seconds, charged by work
        self.log: list[str] = []

    def perf_counter(self) -> float:
        self.log.append("read")
        return self.now

    def sleep(self, seconds: float) -> None:  # a sleep in measure.py would show in figures
        self.log.append("sleep")
        self.now += seconds

    def work(self, seconds: float, cpu_share: float = 1.0) -> None:
        self.log.append("call")
        self.now += seconds
        self.cpu += cpu_share * seconds


@pytest.fixture
def clock(monkeypatch) -> FakeClock:
    fake = FakeClock()
    monkeypatch.setattr(measure, "time", fake)
    return fake


def workload(clock: FakeClock, costs_ms, cpu_share: float = 1.0):
    """A call costing the next of ``costs_ms`` on the fake clock; ``.calls`` counts calls."""
    costs = iter(costs_ms)

    def fn() -> None:
        fn.calls += 1
        clock.work(next(costs) / 1e3, cpu_share)

    fn.calls = 0
    return fn


def test_warmup_calls_are_run_but_not_counted(clock):
    fn = workload(clock, itertools.chain([30, 30, 30], itertools.repeat(2)))
    stats = measure_latency(fn, warmup=3, repeats=10, max_repeats=10)
    assert fn.calls == 13 and stats.repeats == 10 and stats.warmup == 3
    assert stats.median_ms == pytest.approx(2) and stats.p90_ms == pytest.approx(2)
    assert clock.log == ["read", "call", "read"] * 13, "each timed window holds one call"
    cold = measure_latency(workload(clock, itertools.chain([30, 30, 30], itertools.repeat(2))),
                           warmup=0, repeats=10, max_repeats=10)
    assert cold.median_ms == pytest.approx(2) and cold.p90_ms == pytest.approx(30), (
        "without warm-up the slow first calls show")


def test_percentiles_are_ordered_and_in_ms(clock):
    stats = measure_latency(workload(clock, itertools.cycle([1, 2, 3, 4, 5])), warmup=0,
                            repeats=25, max_repeats=25)
    # five calls of each cost: the inclusive 10th/90th percentiles fall on 1 and 5
    assert (stats.p10_ms, stats.median_ms, stats.p90_ms) == (
        pytest.approx(1), pytest.approx(3), pytest.approx(5))


def test_adaptive_repeats_stop_when_stable_and_respect_the_cap(clock):
    steady = workload(clock, itertools.repeat(1))
    stable = measure_latency(steady, warmup=1, repeats=10, max_repeats=200)
    assert stable.stable and stable.repeats == 20, "one more block confirms the median"
    assert steady.calls == 21
    growing = workload(clock, itertools.count(1))  # the median never settles
    capped = measure_latency(growing, warmup=0, repeats=5, max_repeats=22)
    assert not capped.stable and capped.repeats == 20 and growing.calls == 20, (
        "whole blocks only, never past max_repeats")


class FakeTracker:
    def __init__(self, clock: FakeClock) -> None:
        self.clock = clock
        clock.log.append("tracker start")


def _fake_energy(monkeypatch, clock: FakeClock, joules: float) -> None:
    """codecarbon and psutil replaced: ``joules`` over the window, CPU time from the clock."""
    monkeypatch.setattr(measure, "energy_tracker", lambda: FakeTracker(clock))

    def stop(tracker: FakeTracker, gpu_only: bool = False) -> float:
        tracker.clock.log.append("tracker stop" + " (gpu)" * gpu_only)
        return joules

    monkeypatch.setattr(measure, "stop_joules", stop)
    monkeypatch.setattr(measure, "energy_source", lambda tracker: "estimate:fake")

    class Process:
        def cpu_times(self):
            return SimpleNamespace(user=clock.cpu, system=0.0)

    monkeypatch.setattr(measure, "psutil", SimpleNamespace(Process=Process))


COST_S = 2.0**-9  # a call's cost, exact in binary: windows hold a whole number of calls


def test_energy_is_per_call_over_the_window(clock, monkeypatch):
    _fake_energy(monkeypatch, clock, joules=1.28)
    fn = workload(clock, itertools.repeat(COST_S * 1e3), cpu_share=0.5)
    times: list[float] = []
    stats = measure_energy(fn, window_s=128 * COST_S, times=times)
    assert stats.calls == fn.calls == 128 and stats.window_s == pytest.approx(0.25)
    assert stats.energy_mj == pytest.approx(1.28e3 / 128), "normalized per inference"
    assert stats.cpu_percent == pytest.approx(50), "CPU time / wall time of the same window"
    assert stats.source == "estimate:fake"
    assert times == [pytest.approx(COST_S * 1e3)] * 128, "every call of the window is timed"
    calls = [i for i, event in enumerate(clock.log) if event == "call"]
    assert clock.log.index("tracker start") < calls[0] < calls[-1] < clock.log.index(
        "tracker stop"), "the counter runs around every call"


def test_on_a_gpu_each_call_ends_with_a_sync_and_energy_is_nvml(clock, monkeypatch):
    """``device`` cuda (stood in for: no GPU here): every timed call waits for the device
    inside its window, and the energy is the GPU's own counter."""
    _fake_energy(monkeypatch, clock, joules=1.28)
    monkeypatch.setattr(measure, "_gpu_counted", lambda tracker: True)
    monkeypatch.setattr(measure, "synchronizer", lambda device: lambda: clock.log.append("sync"))
    fn = workload(clock, itertools.repeat(COST_S * 1e3))
    stats = measure_energy(fn, window_s=4 * COST_S, device="cuda")
    assert stats.source == "nvml" and "tracker stop (gpu)" in clock.log
    calls = [i for i, event in enumerate(clock.log) if event == "call"]
    assert all(clock.log[i + 1] == "sync" for i in calls), "a call's GPU work is in its window"


def test_measure_inference_reuses_the_energy_window_for_latency(clock, monkeypatch):
    _fake_energy(monkeypatch, clock, joules=2.0)
    fn = workload(clock, itertools.repeat(COST_S * 1e3))
    before = torch.get_num_threads()
    metrics, tags = measure_inference(fn, MeasureSettings(
        warmup=2, min_repeats=5, max_repeats=50, energy_window_s=20 * COST_S, threads=1))
    assert torch.get_num_threads() == before, "thread count restored"
    assert fn.calls == 22, "warm-up plus the energy window, nothing more once stable"
    assert "sleep" not in clock.log, "no sampling sleeps: they would land in the figures"
    assert tags == {"latency_threads": "1", "latency_repeats": "20", "latency_warmup": "2",
                    "latency_stable": "true", "energy_source": "estimate:fake",
                    "energy_calls": "20", "energy_window_s": f"{20 * COST_S:.2f}"}
    assert metrics["latency_ms"] == pytest.approx(COST_S * 1e3)
    assert metrics["energy_mj"] == pytest.approx(2.0e3 / 20)
    assert metrics["measure_s"] == pytest.approx(22 * COST_S)
    metrics, tags = measure_inference(workload(clock, itertools.repeat(1)), MeasureSettings(
        warmup=0, min_repeats=2, max_repeats=2, energy_window_s=0))
    assert "energy_mj" not in metrics and "energy_source" not in tags
    assert tags["latency_repeats"] == "2"


def busy(ms: float) -> None:
    end = time.perf_counter() + ms / 1000
    while time.perf_counter() < end:
        pass


def test_measure_inference_with_the_real_clock_and_counter():
    """The real codecarbon tracker and clock: every figure present and positive (values are
    not checked: this machine is shared)."""
    metrics, tags = measure_inference(lambda: busy(1), MeasureSettings(
        warmup=1, min_repeats=5, max_repeats=10, energy_window_s=0.1, threads=1))
    for key in ("latency_ms", "latency_ms_p10", "latency_ms_p90", "energy_mj", "cpu_percent",
                "measure_s"):
        assert metrics[key] > 0, key
    assert float(tags["energy_window_s"]) >= 0.1 and int(tags["energy_calls"]) >= 1
    source = tags["energy_source"]
    assert source in ("rapl", "nvml") or source.startswith("estimate:"), source


def test_stopwatch_sums_repeated_stages(clock):
    watch = measure.Stopwatch()
    for seconds in (0.5, 0.25):
        with watch.stage("save"):
            clock.work(seconds)
    with watch.stage("load"):
        clock.work(0.125)
    assert watch.seconds == {"save": 0.75, "load": 0.125}


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
