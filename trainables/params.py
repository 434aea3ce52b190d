"""The searchable parameters: names, what each allows, and when each applies.

One table used by the space loader (search ranges), by ``gnn-search trial --set`` (single
values) and by the cycle (final check). Conditions are fixed rules here, never strings.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from trainables.errors import shown
from trainables.param_defaults import DEFAULTS
from trainables.pruning import PENALTIES, PRUNERS
from trainables.pruning import SCHEDULES as PRUNE_SCHEDULES
from trainables.quantization import QUANTIZERS, SUPPORTED_BITS
from trainables.schedules import SCHEDULES


@dataclass(frozen=True)
class Param:
    """A parameter: ``kind`` is ``choice``, ``int`` or ``float``; bounds are inclusive unless
    ``high_open``. What an absent parameter means is :mod:`trainables.param_defaults`."""

    kind: str
    choices: tuple[Any, ...] = ()
    low: float | None = None
    high: float | None = None
    high_open: bool = False
    help: str = ""

    def allowed(self) -> str:
        if self.kind == "choice":
            return "one of " + ", ".join(map(str, self.choices))
        high = "inf" if self.high is None else self.high
        return f"a{'n integer' if self.kind == 'int' else ' number'} in [{self.low}, {high}" + (
            ")" if self.high_open or self.high is None else "]"
        )

    def check(self, key: str, value: Any) -> Any:
        """``value`` converted to this parameter's type, or a ValueError naming key and range."""
        bad = ValueError(f"{key}={shown(value)} is not allowed; expected {self.allowed()}")
        if self.kind == "choice":
            for choice in self.choices:
                if value == choice or str(value) == str(choice):
                    return choice
            raise bad
        if isinstance(value, bool):
            raise bad
        try:
            number = float(value)
        except (TypeError, ValueError):
            raise bad from None
        if not math.isfinite(number):
            raise bad
        if self.kind == "int":
            if number != int(number):
                raise bad
            number = int(number)
        if self.low is not None and number < self.low:
            raise bad
        if self.high is not None and (
            number >= self.high if self.high_open else number > self.high
        ):
            raise bad
        return number


PARAMS: dict[str, Param] = {
    "prune.method": Param("choice", tuple(PRUNERS), help="pruning method"),
    "prune.sparsity": Param("float", low=0.0, high=1.0, high_open=True,
                            help="fraction of compressible weights set to zero"),
    "prune.schedule": Param("choice", PRUNE_SCHEDULES,
                            help="one_shot, or gradual (cubic ramp, Zhu & Gupta 2017)"),
    "prune.penalty": Param("choice", PENALTIES,
                           help="regularization: l1 or group_lasso"),
    "prune.strength": Param("float", low=0.0, high=10.0,
                            help="regularization: weight of the penalty in the loss"),
    "quant.method": Param("choice", tuple(QUANTIZERS), help="quantization method"),
    "quant.bits": Param("choice", SUPPORTED_BITS,
                        help="integer bit-width of weights"),
    "finetune.epochs": Param("int", low=0, high=10_000,
                             help="fine-tuning epochs after pruning"),
    "finetune.lr": Param("float", low=1e-8, high=10.0,
                         help="fine-tuning learning rate (Adam)"),
    "finetune.schedule": Param("choice", tuple(SCHEDULES),
                               help="learning-rate schedule"),
    "finetune.weight_decay": Param("float", low=0.0, high=1.0, help="Adam weight decay"),
    "finetune.grad_clip": Param("float", low=0.0, high=1e6,
                                help="max gradient norm, 0 = no clipping"),
}


def is_active(key: str, config: dict[str, Any]) -> bool:
    """Whether ``key`` applies given the other choices in ``config``."""
    if key.startswith("prune.") and key != "prune.method":  # the method says what it uses
        pruner = PRUNERS.get(config.get("prune.method", "none"))
        return pruner is None or key in pruner.uses
    if key == "quant.bits":
        return config.get("quant.method", "fp32") != "fp32"
    return True


def validate_config(config: dict[str, Any]) -> dict[str, Any]:
    """Check every key and value of a flat config; drop keys that do not apply."""
    unknown = sorted(set(config) - set(PARAMS))
    if unknown:
        raise ValueError(f"unknown parameter {unknown[0]!r}; allowed: {', '.join(PARAMS)}")
    checked = {k: PARAMS[k].check(k, v) for k, v in config.items()}
    return {k: v for k, v in checked.items() if is_active(k, checked)}


def complete_config(config: dict[str, Any]) -> dict[str, Any]:
    """``config`` with every applicable parameter it leaves out at its default, checked."""
    return validate_config({**DEFAULTS, **config})


def check_fit(config: dict[str, Any], transductive: bool,
              structured: Callable[[], str | None]) -> None:
    """Methods that a task or model cannot run: a one-line error naming what is allowed.

    ``transductive``: the task trains and infers on one fixed graph (A2Q's per-node state
    needs that); ``structured``: why structured pruning cannot run on the model, None if it
    can (e.g. :func:`trainables.structured.registered_support`), asked only when ``config``
    chooses it.
    """
    if config.get("quant.method") == "a2q" and not transductive:
        others = [q for q in PARAMS["quant.method"].choices if q != "a2q"]
        raise ValueError("quant.method='a2q' learns per-node state of one fixed graph and this "
                         f"task is inductive (new graphs); allowed: {', '.join(others)}")
    if config.get("prune.method") == "structured":
        reason = structured()
        if reason:
            others = [m for m in PARAMS["prune.method"].choices if m != "structured"]
            raise ValueError(f"prune.method='structured' cannot run on this model: {reason}; "
                             f"allowed: {', '.join(others)}")
