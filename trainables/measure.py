"""Measurement helpers with explicit warm-up and repeat counts.

The timed window holds only the call being measured: no sampling, no sleeps, no I/O.
"""

from __future__ import annotations

import statistics
import time
from collections.abc import Callable
from dataclasses import dataclass

import psutil
import torch


@dataclass(frozen=True)
class LatencyStats:
    """Per-call wall time in milliseconds over ``repeats`` timed calls after ``warmup``."""

    median_ms: float
    p10_ms: float
    p90_ms: float
    repeats: int
    warmup: int
    threads: int


def measure_latency(fn: Callable[[], object], warmup: int = 5, repeats: int = 30) -> LatencyStats:
    """Time ``fn()``: ``warmup`` untimed calls, then ``repeats`` timed ones."""
    if warmup < 0:
        raise ValueError(f"warmup must be >= 0, got {warmup}")
    if repeats < 1:
        raise ValueError(f"repeats must be >= 1, got {repeats}")
    for _ in range(warmup):
        fn()
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        times.append((time.perf_counter() - start) * 1e3)
    if len(times) >= 2:
        deciles = statistics.quantiles(times, n=10, method="inclusive")
        p10, p90 = deciles[0], deciles[-1]
    else:
        p10 = p90 = times[0]
    return LatencyStats(
        median_ms=statistics.median(times),
        p10_ms=p10,
        p90_ms=p90,
        repeats=repeats,
        warmup=warmup,
        threads=torch.get_num_threads(),
    )


def peak_rss_mb() -> float:
    """Peak resident memory of this process in MiB (includes tensor memory)."""
    info = psutil.Process().memory_info()
    peak = getattr(info, "peak_wset", None)  # Windows
    if peak is None:
        import resource

        peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024  # KiB on Linux
    return peak / 2**20
