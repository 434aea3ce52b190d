"""Process environment for Ray, Tune and MLflow: quiet, loopback-only, no telemetry.

Applied by the CLI before Ray is imported, and passed to Ray workers.
"""

from __future__ import annotations

import os

QUIET_ENV = {
    "RAY_USAGE_STATS_ENABLED": "0",  # no usage reporting
    "RAY_AIR_NEW_OUTPUT": "0",  # the compact classic progress table
    "RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER": "0",  # keep a local Ray on 127.0.0.1
    "RAY_DEDUP_LOGS": "1",
    "MLFLOW_DISABLE_TELEMETRY": "true",
    "MLFLOW_LOGGING_LEVEL": "WARNING",  # no "creating tables" chatter
    "CODECARBON_LOG_LEVEL": "error",
    # Per-epoch reports carry train_loss, val_acc, prune_sparsity; the objectives (size, latency)
    # exist only in each trial's final report, which is the one Optuna receives.
    "TUNE_DISABLE_STRICT_METRIC_CHECKING": "1",
    "PYTHONWARNINGS": "ignore::DeprecationWarning,ignore::FutureWarning",
}


def apply_quiet_env() -> dict[str, str]:
    """Set :data:`QUIET_ENV` where the user has not set a value; returns what is in force."""
    for key, value in QUIET_ENV.items():
        os.environ.setdefault(key, value)
    return {key: os.environ[key] for key in QUIET_ENV}
