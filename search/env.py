"""Process environment for Ray, Tune and MLflow: quiet, loopback-only, no telemetry.

Applied by the CLI before Ray is imported, and passed to Ray workers.
"""

from __future__ import annotations

import os
from collections.abc import MutableMapping

PROXY_VARIABLES = ("http_proxy", "https_proxy", "all_proxy", "HTTP_PROXY", "HTTPS_PROXY",
                   "ALL_PROXY")
LOOPBACK_HOSTS = ("127.0.0.1", "localhost", "::1")

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
    # Each finished trial forces a save of the experiment state (resume loses nothing); that
    # is on purpose, so Tune's warning about frequent saves is noise here.
    "TUNE_WARN_EXCESSIVE_EXPERIMENT_CHECKPOINT_SYNC_THRESHOLD_S": "0",
    # Tune's JSON and CSV result logs are added by the search; its TensorBoard logger only
    # warns about the per-epoch history lists.
    "TUNE_DISABLE_AUTO_CALLBACK_LOGGERS": "1",
    # An MLflow server that is away costs seconds, not MLflow's default ~4 minutes of retries
    # per call; the search then stops writing to it and `gnn-search sync` catches up.
    "MLFLOW_HTTP_REQUEST_MAX_RETRIES": "2",
    "MLFLOW_HTTP_REQUEST_BACKOFF_FACTOR": "1",
    "MLFLOW_HTTP_REQUEST_TIMEOUT": "30",
    "MLFLOW_SUPPRESS_PRINTING_URL_TO_STDOUT": "true",  # no "View run ..." line per trial
    "MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR": "false",  # no progress bars on stderr
    "PYTHONWARNINGS": "ignore::DeprecationWarning,ignore::FutureWarning",
}


def apply_quiet_env() -> dict[str, str]:
    """Set :data:`QUIET_ENV` where the user has not set a value (and keep loopback off any
    proxy); returns what is in force."""
    for key, value in QUIET_ENV.items():
        os.environ.setdefault(key, value)
    bypass_proxy_for_loopback(os.environ)
    return {key: os.environ[key] for key in QUIET_ENV}


def bypass_proxy_for_loopback(environ: MutableMapping[str, str]) -> None:
    """Where an HTTP(S) proxy is set, add the loopback hosts to ``NO_PROXY``/``no_proxy``.

    A local MLflow server, Ray's dashboard and the health checks live on 127.0.0.1; a proxy
    elsewhere cannot reach them, so requests, urllib and gRPC must connect directly. Entries
    the user already has are kept; both spellings get the same list.
    """
    if not any(environ.get(key) for key in PROXY_VARIABLES):
        return
    listed = ",".join(environ.get(key, "") for key in ("no_proxy", "NO_PROXY")).split(",")
    hosts = list(dict.fromkeys(host.strip() for host in listed if host.strip()))
    if "*" not in hosts:
        hosts += [host for host in LOOPBACK_HOSTS if host not in hosts]
    environ["no_proxy"] = environ["NO_PROXY"] = ",".join(hosts)
