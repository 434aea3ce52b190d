"""What a compressed model costs to run: latency, energy, CPU and memory, measured honestly.

Protocol (README, "How we measure"):

* latency: ``warmup`` untimed calls, then timed calls in blocks of ``min_repeats`` until the
  median moves by less than ``rel_tol`` from one block to the next (or ``max_repeats``);
  each timed window holds only the call. Median and 10th/90th percentiles are reported.
* energy: the call repeated back to back for at least ``energy_window_s`` under a codecarbon
  tracker (offline, writes no files), divided by the number of calls. ``energy_source`` says
  whether a hardware counter (RAPL) or codecarbon's load-based estimate produced it.
* CPU: process CPU time / wall time over the same window (100 = one core busy).
* memory: the process's peak resident set (``VmHWM``), reset at the start of each trial
  where the kernel allows it, so the figure includes tensor memory and belongs to the trial;
  on a GPU also the peak of the tensors torch allocated there (``peak_gpu_mb``).
* on a GPU (``device`` cuda): every timed call ends with ``torch.cuda.synchronize`` (the
  GPU's queued work is inside the window), and energy is the GPU's own counter (NVML,
  through codecarbon), ``energy_source=nvml``.
"""

from __future__ import annotations

import contextlib
import logging
import statistics
import sys
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, replace
from pathlib import Path

import psutil
import torch

Sync = Callable[[], None]

ENERGY_COUNTRY = "USA"  # needed by codecarbon offline; only its CO2 figures depend on it


@dataclass(frozen=True)
class MeasureSettings:
    """How hard to measure. Defaults suit a full-graph Cora forward of a few milliseconds."""

    warmup: int = 5
    min_repeats: int = 20
    max_repeats: int = 400
    rel_tol: float = 0.02
    energy_window_s: float = 1.0
    threads: int | None = None  # None: as the process runs (1 inside Ray trials)

    def __post_init__(self) -> None:
        if self.warmup < 0:
            raise ValueError(f"warmup must be >= 0, got {self.warmup}")
        if self.min_repeats < 1:
            raise ValueError(f"repeats must be >= 1, got {self.min_repeats}")
        if self.max_repeats < self.min_repeats:
            raise ValueError(f"max_repeats ({self.max_repeats}) must be >= min_repeats "
                             f"({self.min_repeats})")
        if not self.rel_tol > 0:
            raise ValueError(f"rel_tol must be > 0, got {self.rel_tol}")
        if not 0 <= self.energy_window_s <= 3600:
            raise ValueError(f"energy window (--energy-window) must be in [0, 3600] s "
                             f"(0 = no energy), got {self.energy_window_s}")
        if self.threads is not None and self.threads < 1:
            raise ValueError(f"latency threads (--latency-threads) must be >= 1, got "
                             f"{self.threads}")


@dataclass(frozen=True)
class LatencyStats:
    """Per-call wall time in milliseconds over ``repeats`` timed calls after ``warmup``."""

    median_ms: float
    p10_ms: float
    p90_ms: float
    repeats: int
    warmup: int
    threads: int
    stable: bool  # the median settled within rel_tol before max_repeats


@dataclass(frozen=True)
class EnergyStats:
    energy_mj: float  # per call
    calls: int
    window_s: float
    cpu_percent: float
    source: str


class Stopwatch:
    """Wall time per named stage (``with watch.stage("save"): ...``), summed over repeats."""

    def __init__(self) -> None:
        self.seconds: dict[str, float] = {}

    @contextlib.contextmanager
    def stage(self, name: str) -> Iterator[None]:
        start = time.perf_counter()
        try:
            yield
        finally:
            self.seconds[name] = self.seconds.get(name, 0.0) + time.perf_counter() - start


@contextlib.contextmanager
def torch_threads(threads: int | None) -> Iterator[int]:
    """Run with ``threads`` torch threads (None: unchanged); yields the count in force."""
    previous = torch.get_num_threads()
    if threads is not None:
        torch.set_num_threads(threads)
    try:
        yield torch.get_num_threads()
    finally:
        torch.set_num_threads(previous)


def _no_sync() -> None:
    pass


def synchronizer(device: str | torch.device = "cpu") -> Sync:
    """What a timed call waits for before its clock stops: the GPU's queued work on cuda
    (kernels run asynchronously), nothing on the CPU."""
    device = torch.device(device)
    if device.type == "cuda":
        return lambda: torch.cuda.synchronize(device)
    return _no_sync


def _time_calls(fn: Callable[[], object], count: int, sync: Sync = _no_sync) -> list[float]:
    times = []
    for _ in range(count):
        sync()  # earlier work is not this call's
        start = time.perf_counter()
        fn()
        sync()
        times.append((time.perf_counter() - start) * 1e3)
    return times


def measure_latency(
    fn: Callable[[], object],
    warmup: int = 5,
    repeats: int = 20,
    max_repeats: int | None = None,
    rel_tol: float = 0.02,
    device: str | torch.device = "cpu",
) -> LatencyStats:
    """Median latency of ``fn()`` in ms after ``warmup`` calls; adds blocks of ``repeats``
    timed calls until the median is stable within ``rel_tol`` (or ``max_repeats``). On
    ``device`` cuda each call is timed to the end of its GPU work."""
    settings = MeasureSettings(warmup=warmup, min_repeats=repeats,
                               max_repeats=max_repeats or repeats, rel_tol=rel_tol)
    sync = synchronizer(device)
    _time_calls(fn, settings.warmup, sync)
    return _settle(fn, [], settings, sync)


def _settle(fn: Callable[[], object], times: list[float], settings: MeasureSettings,
            sync: Sync = _no_sync) -> LatencyStats:
    """Extend ``times`` (already timed calls, after warm-up) to ``min_repeats``, then by
    blocks until the median is stable or ``max_repeats``; summarize."""
    if len(times) < settings.min_repeats:
        times += _time_calls(fn, settings.min_repeats - len(times), sync)
    median, stable = statistics.median(times), False
    if len(times) >= 2 * settings.min_repeats:  # the energy window already gave many calls:
        earlier = statistics.median(times[: len(times) // 2])  # compare its halves
        stable = abs(median - earlier) <= settings.rel_tol * median
    while len(times) + settings.min_repeats <= settings.max_repeats and not stable:
        times += _time_calls(fn, settings.min_repeats, sync)
        new = statistics.median(times)
        stable = abs(new - median) <= settings.rel_tol * median
        median = new
    if len(times) >= 2:
        deciles = statistics.quantiles(times, n=10, method="inclusive")
        p10, p90 = deciles[0], deciles[-1]
    else:
        p10 = p90 = times[0]
    return LatencyStats(median, p10, p90, len(times), settings.warmup, torch.get_num_threads(),
                        stable)


def energy_tracker():
    """A started codecarbon tracker: offline, quiet, no files, this process only."""
    logging.getLogger("codecarbon").setLevel(logging.ERROR)
    from codecarbon import OfflineEmissionsTracker

    tracker = OfflineEmissionsTracker(
        country_iso_code=ENERGY_COUNTRY, save_to_file=False, log_level="error",
        measure_power_secs=1, tracking_mode="process", allow_multiple_runs=True,
    )
    tracker.start()
    return tracker


def energy_source(tracker) -> str:
    """``rapl`` / ``nvml`` for hardware counters, else ``estimate:<codecarbon mode>``."""
    modes = []
    for device in getattr(tracker, "_hardware", []):
        name = type(device).__name__
        if name == "GPU":
            modes.append("nvml")
        elif name == "CPU":
            mode = str(getattr(device, "_mode", "unknown"))
            modes.append("rapl" if "rapl" in mode else f"estimate:{mode}")
    return "+".join(modes) or "estimate:unknown"


def stop_joules(tracker, gpu_only: bool = False) -> float:
    """Stop ``tracker``; the energy it saw in joules (CPU + RAM (+ GPU), as codecarbon
    counts; ``gpu_only``: the GPU's alone)."""
    tracker.stop()
    data = tracker.final_emissions_data
    kwh = data.gpu_energy if gpu_only else data.energy_consumed
    return float(kwh) * 3.6e6  # kWh -> J


def _gpu_counted(tracker) -> bool:
    return any(type(d).__name__ == "GPU" for d in getattr(tracker, "_hardware", []))


def measure_energy(
    fn: Callable[[], object], window_s: float = 1.0, times: list[float] | None = None,
    device: str | torch.device = "cpu",
) -> EnergyStats:
    """Energy per call of ``fn()`` over >= ``window_s`` seconds of back-to-back calls; each
    call's time in ms is appended to ``times`` when given. On ``device`` cuda: the GPU's
    energy from NVML (``source`` ``nvml``) where codecarbon sees the GPU; else the host's,
    with its source."""
    if not window_s > 0:
        raise ValueError(f"energy window must be > 0 s, got {window_s}")
    process = psutil.Process()
    sync = synchronizer(device)
    sync()
    tracker = energy_tracker()
    gpu = torch.device(device).type == "cuda" and _gpu_counted(tracker)
    try:
        cpu_start, wall_start, calls = process.cpu_times(), time.perf_counter(), 0
        while time.perf_counter() - wall_start < window_s:
            call_start = time.perf_counter()
            fn()
            sync()
            if times is not None:
                times.append((time.perf_counter() - call_start) * 1e3)
            calls += 1
        wall = time.perf_counter() - wall_start
        cpu_end = process.cpu_times()
    finally:
        joules = stop_joules(tracker, gpu_only=gpu)
    cpu = (cpu_end.user - cpu_start.user) + (cpu_end.system - cpu_start.system)
    return EnergyStats(
        energy_mj=joules * 1e3 / calls, calls=calls, window_s=wall,
        cpu_percent=100.0 * cpu / wall, source="nvml" if gpu else energy_source(tracker),
    )


_STATUS = Path("/proc/self/status")
_CLEAR_REFS = Path("/proc/self/clear_refs")


def reset_peak_rss() -> bool:
    """Start a new peak-RSS window (Linux: writing 5 to clear_refs); False where unsupported."""
    try:
        _CLEAR_REFS.write_text("5")
        return True
    except OSError:
        return False


def peak_rss_mb() -> float:
    """Peak resident memory of this process in MiB since the last reset (includes tensors)."""
    try:
        for line in _STATUS.read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024  # kB
    except OSError:
        pass
    info = psutil.Process().memory_info()
    peak = getattr(info, "peak_wset", None)  # Windows
    if peak is None:
        import resource

        peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
        peak *= 1 if sys.platform == "darwin" else 1024  # bytes on macOS, KiB on Linux
    return peak / 2**20


def reset_peak_gpu(device: str | torch.device) -> bool:
    """Start a new ``peak_gpu_mb`` window on a cuda ``device``; False elsewhere."""
    device = torch.device(device)
    if device.type != "cuda":
        return False
    torch.cuda.reset_peak_memory_stats(device)
    return True


def peak_gpu_mb(device: str | torch.device) -> float:
    """Peak of the tensors torch allocated on a cuda ``device`` since the last reset, MiB
    (``torch.cuda.max_memory_allocated``: tensors, not the caching allocator's reserve)."""
    return torch.cuda.max_memory_allocated(torch.device(device)) / 2**20


def measure_inference(fn: Callable[[], object], settings: MeasureSettings,
                      device: str | torch.device = "cpu") -> tuple[
        dict[str, float], dict[str, str]]:
    """Latency, energy and CPU of ``fn()`` as metrics (units in names) and tags; on
    ``device`` cuda timed to the end of the GPU's work, energy from NVML.

    One pass: after warm-up, every call of the energy window is also timed, and timing
    continues past the window only until the latency median is stable, so measuring costs
    about ``energy_window_s`` plus warm-up.
    """
    start = time.perf_counter()
    sync = synchronizer(device)
    with torch_threads(settings.threads) as threads:
        _time_calls(fn, settings.warmup, sync)
        times: list[float] = []
        energy = None
        if settings.energy_window_s > 0:
            energy = measure_energy(fn, settings.energy_window_s, times, device)
        latency = _settle(fn, times, replace(settings, warmup=0), sync)
        latency = replace(latency, warmup=settings.warmup)
    metrics = {
        "latency_ms": latency.median_ms,
        "latency_ms_p10": latency.p10_ms,
        "latency_ms_p90": latency.p90_ms,
    }
    tags = {
        "latency_threads": str(threads),
        "latency_repeats": str(latency.repeats),
        "latency_warmup": str(latency.warmup),
        "latency_stable": str(latency.stable).lower(),
    }
    if energy is not None:
        metrics.update({"energy_mj": energy.energy_mj, "cpu_percent": energy.cpu_percent})
        tags.update({"energy_source": energy.source, "energy_calls": str(energy.calls),
                     "energy_window_s": f"{energy.window_s:.2f}"})
    metrics["measure_s"] = time.perf_counter() - start
    return metrics, tags

