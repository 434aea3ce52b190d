"""Process environment for Ray, Tune and MLflow: quiet, loopback-only, no telemetry.

MLflow's settings and the loopback proxy bypass are analysis/env.py's (the analysis
commands need them without search/); this adds Ray's, Tune's and codecarbon's.

Applied by the CLI before Ray is imported, and passed to Ray workers.
"""

from __future__ import annotations

from analysis.env import MLFLOW_ENV, apply_env

QUIET_ENV = {
    "RAY_USAGE_STATS_ENABLED": "0",  # no usage reporting
    "RAY_AIR_NEW_OUTPUT": "0",  # the compact classic progress table
    "RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER": "0",  # keep a local Ray on 127.0.0.1
    "RAY_DEDUP_LOGS": "1",
    "CODECARBON_LOG_LEVEL": "error",
    # Per-epoch reports carry train_loss, val_acc, prune_sparsity; the objectives (size, latency)
    # exist only in each trial's final report, which is the one Optuna receives.
    "TUNE_DISABLE_STRICT_METRIC_CHECKING": "1",
    # Each finished trial forces a save of the experiment state (resume loses nothing); that
    # is on purpose, so Tune's warning about frequent saves is noise here.
    "TUNE_WARN_EXCESSIVE_EXPERIMENT_CHECKPOINT_SYNC_THRESHOLD_S": "0",
    # Tune's JSON and CSV result logs are added by the search; its TensorBoard logger only
    # warns about the per-epoch history lists.
    "TUNE_DISABLE_AUTO_CALLBACK_LOGGERS": "1",
    "PYTHONWARNINGS": "ignore::DeprecationWarning,ignore::FutureWarning",
    # MLflow's (analysis/env.py): quiet, and seconds, not minutes, of retries when a server
    # is away (the search then stops writing to it and `gnn-search sync` catches up).
    **MLFLOW_ENV,
}


def apply_quiet_env() -> dict[str, str]:
    """:data:`QUIET_ENV`, applied where the user has not set a value (and loopback kept off
    any proxy); returns what is in force."""
    return apply_env(QUIET_ENV)
