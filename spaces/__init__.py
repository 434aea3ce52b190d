"""Search-space files: load, validate, and expose them to Optuna as define-by-run functions."""

from spaces.loader import (
    OBJECTIVE_METRICS,
    SAMPLERS,
    SearchSpace,
    SpaceError,
    bundled_spaces,
    load_space,
    resolve_space_path,
)

__all__ = [
    "OBJECTIVE_METRICS",
    "SAMPLERS",
    "SearchSpace",
    "SpaceError",
    "bundled_spaces",
    "load_space",
    "resolve_space_path",
]
