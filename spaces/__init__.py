"""Search-space files: load, validate, and expose them to Optuna as define-by-run functions.

Names are imported on first use, so ``spaces.samplers`` (the sampler list the CLI offers)
loads without the model stack.
"""

from importlib import import_module
from typing import Any

_EXPORTS = {
    "OBJECTIVE_METRICS": "trainables.metrics",
    "SAMPLERS": "spaces.samplers",
    "SearchSpace": "spaces.loader",
    "SpaceError": "spaces.loader",
    "bundled_spaces": "spaces.loader",
    "load_space": "spaces.loader",
    "resolve_space_path": "spaces.loader",
}
__all__ = list(_EXPORTS)


def __getattr__(name: str) -> Any:
    if name not in _EXPORTS:
        raise AttributeError(f"module 'spaces' has no attribute {name!r}")
    return getattr(import_module(_EXPORTS[name]), name)
