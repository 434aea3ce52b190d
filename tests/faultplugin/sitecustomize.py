"""Test-only faults inside real trials, loaded in every process of a test search (the driver,
Ray's workers) through PYTHONPATH. When ``trainables.cycle`` is imported, its ``run_cycle``
is wrapped: a trial whose ``finetune.lr`` is one of the sentinels below meets a real fault
in the trial's own process; every other trial runs unchanged.

- ``NAN_LR``: the baseline's output bias becomes inf, so the loss is NaN at the first
  step and the product's divergence check raises.
- ``OOM_LR``: the trial asks torch for 64 TiB; the allocator refuses.
- ``BAD_CONFIG_LR``: the trial receives ``quant.bits=3``; the cycle's validation refuses it.
- ``SLOW_LR``: every fine-tuning epoch takes a second longer, so ``--trial-timeout`` fires.
"""

from __future__ import annotations

import dataclasses
import importlib.abc
import importlib.util
import sys
import time

NAN_LR, OOM_LR, BAD_CONFIG_LR, SLOW_LR = 0.00123, 0.00234, 0.00345, 0.00456


def _wrap(run_cycle):
    def faulty(config, task, baseline, *args, **kwargs):
        lr = config.get("finetune.lr")
        if lr == NAN_LR:
            state = {k: v.clone() for k, v in baseline.state.items()}
            bias = [k for k in state if k.endswith("bias")][-1]
            state[bias][0] = float("inf")
            baseline = dataclasses.replace(baseline, state=state)
        elif lr == OOM_LR:
            import torch

            torch.empty(1 << 44, dtype=torch.float32)
        elif lr == BAD_CONFIG_LR:
            config = {**config, "quant.method": "qat", "quant.bits": 3}
        elif lr == SLOW_LR:
            report = kwargs["report"]
            kwargs["report"] = lambda metrics: (time.sleep(1.0), report(metrics))
        return run_cycle(config, task, baseline, *args, **kwargs)

    return faulty


class _PatchCycle(importlib.abc.MetaPathFinder):
    def find_spec(self, name, path, target=None):
        if name != "trainables.cycle":
            return None
        sys.meta_path.remove(self)
        spec = importlib.util.find_spec(name)
        execute = spec.loader.exec_module

        def exec_module(module):
            execute(module)
            module.run_cycle = _wrap(module.run_cycle)

        spec.loader.exec_module = exec_module
        return spec


sys.meta_path.insert(0, _PatchCycle())
