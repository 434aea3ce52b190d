"""What an absent parameter means: the one place that says it.

Pure data (no torch), so the analysis commands read it without loading the model stack.
The parameters themselves (ranges, choices, conditions) are :data:`trainables.params.PARAMS`.
"""

from __future__ import annotations

from typing import Any

# The value a parameter takes when it applies and a config leaves it out (the cycle).
DEFAULTS: dict[str, Any] = {
    "prune.method": "none",
    "prune.sparsity": 0.0,
    "prune.schedule": "one_shot",
    "prune.penalty": "l1",
    "prune.strength": 1e-4,
    "quant.method": "fp32",
    "quant.bits": 8,
    "finetune.epochs": 0,
    "finetune.lr": 0.01,
    "finetune.schedule": "constant",
    "finetune.weight_decay": 0.0,
    "finetune.grad_clip": 0.0,
}
# What a parameter's absence means when it does not apply (the analysis fills these in):
# pruning nothing is sparsity 0, float weights are 32 bits, no regularization is strength 0.
INACTIVE: dict[str, Any] = {
    "prune.sparsity": 0.0,
    "prune.schedule": "one_shot",
    "prune.penalty": "none",
    "prune.strength": 0.0,
    "quant.bits": 32,
}
