"""Choose each deployed layer's kernel by timing its options once, on the inputs the
inference call gives it; or apply a recorded plan, falling back where this machine lacks
a kernel. The reference option (the eager layer's own computation) is always timed, so a
chosen kernel never loses to it."""

from __future__ import annotations

import statistics
import time
from collections.abc import Callable
from typing import Any

import torch
from torch import Tensor

from trainables.runtime.deploy import Deployed

PLAN_VERSION = 1
RTOL = 1e-4  # an option whose output differs more from the reference is not used


def _median_ms(fn: Callable[[], object], min_calls: int = 7, max_calls: int = 40,
               budget_s: float = 0.05) -> float:
    fn()
    fn()  # warm: caches of fixed inputs fill here
    times: list[float] = []
    start = time.perf_counter()
    while len(times) < max_calls and (len(times) < min_calls
                                      or time.perf_counter() - start < budget_s):
        call = time.perf_counter()
        fn()
        times.append((time.perf_counter() - call) * 1e3)
    return statistics.median(times)


def _close(out: Tensor, expected: Tensor) -> bool:
    if out.shape != expected.shape:
        return False
    scale = float(expected.abs().max()) if expected.numel() else 0.0
    return bool(torch.allclose(out, expected, rtol=RTOL, atol=RTOL * max(scale, 1e-6)))


def _record_inputs(deployed: Deployed, run: Callable[[], object]) -> dict[str, tuple]:
    """Each layer's arguments in one inference, every layer at its reference kernel."""
    recorded: dict[str, tuple] = {}
    handles = []
    for name, layer in deployed.layers.items():
        layer.use(layer.REFERENCE)

        def hook(module, args, name=name):
            recorded.setdefault(name, args)

        handles.append(layer.register_forward_pre_hook(hook))
    try:
        run()
    finally:
        for handle in handles:
            handle.remove()
    return recorded


def _time_options(layer, args: tuple, inputs, effort: dict[str, Any]) -> dict[str, float]:
    """Milliseconds per option that reproduces the reference output (derived forms of the
    call's inputs shared, as in a whole inference)."""
    with inputs.call(args):
        layer.use(layer.REFERENCE)
        expected = layer(*args)
        timings: dict[str, float] = {}
        for option in layer.candidates(*args):
            layer.use(option)
            if _close(layer(*args), expected):
                timings[option] = _median_ms(lambda: layer(*args), **effort)
    return timings


def _scatter_only(option: str) -> str:
    return option.replace("spmm", "scatter")


def _whole_model(deployed: Deployed, run: Callable[[], object], effort: dict[str, Any]
                 ) -> None:
    """Per-layer choices can lose as a whole (an adjacency built per call pays off only
    over several layers): time the chosen kernels, the same with scatter aggregation, and
    the reference; keep the fastest."""
    chosen = {name: layer.kernel for name, layer in deployed.layers.items()}
    variants = {
        "chosen": chosen,
        "scatter": {n: _scatter_only(k) for n, k in chosen.items()},
        "reference": {n: layer.REFERENCE for n, layer in deployed.layers.items()},
    }
    timings = {}
    for label, kernels in variants.items():
        for name, layer in deployed.layers.items():
            layer.use(kernels[name])
        timings[label] = _median_ms(run, **effort)
    best = variants[min(timings, key=timings.get)]
    for name, layer in deployed.layers.items():
        layer.use(best[name])
        ranked = deployed.plan.get(name, [])
        deployed.plan[name] = [best[name], *[o for o in ranked if o != best[name]]]
    deployed.plan_ms["model"] = {k: round(v, 4) for k, v in timings.items()}


def choose_kernels(deployed: Deployed, run: Callable[[], object], min_calls: int = 7,
                   budget_s: float = 0.05) -> dict[str, list[str]]:
    """Time every option of every layer on its recorded inputs and use the fastest, then
    check the choice as a whole model; returns the plan (options ranked, by layer). Each
    option gets ``min_calls`` timed calls, more while within ``budget_s``."""
    effort = {"min_calls": min_calls, "budget_s": budget_s}
    with torch.inference_mode():
        recorded = _record_inputs(deployed, run)
        for name, layer in deployed.layers.items():
            args = recorded.get(name)
            if args is None:  # not called by this inference
                continue
            timings = _time_options(layer, args, deployed.inputs, effort)
            ranked = sorted(timings, key=timings.get) or [layer.REFERENCE]
            layer.use(ranked[0])
            deployed.plan[name] = ranked
            deployed.plan_ms[name] = {o: round(timings[o], 4) for o in ranked if o in timings}
        _whole_model(deployed, run, effort)
    deployed.inputs.clear()  # keep only what the chosen kernels derive
    return deployed.plan


def apply_plan(deployed: Deployed, plan: dict[str, list[str]]) -> list[str]:
    """Use a recorded plan: per layer the first ranked option this machine runs. Returns the
    fallbacks (``layer:wanted->used``), also kept in ``deployed.fallbacks``."""
    fallbacks = []
    for name, layer in deployed.layers.items():
        ranked = list(plan.get(name) or [layer.REFERENCE])
        available = set(layer.available())
        usable = [o for o in ranked if o in available] or [layer.REFERENCE]
        layer.use(usable[0])
        if usable[0] != ranked[0]:
            fallbacks.append(f"{name}:{ranked[0]}->{usable[0]}")
        deployed.plan[name] = ranked
    deployed.fallbacks = fallbacks
    return fallbacks
