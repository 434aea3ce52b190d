"""The process environment of the analysis commands: MLflow quiet, loopback off any proxy.

``python -m analysis.<command>`` applies it before MLflow is imported. ``search/env.py``
adds Ray's and Tune's settings to these.
"""

from __future__ import annotations

import os
from collections.abc import MutableMapping

PROXY_VARIABLES = ("http_proxy", "https_proxy", "all_proxy", "HTTP_PROXY", "HTTPS_PROXY",
                   "ALL_PROXY")
LOOPBACK_HOSTS = ("127.0.0.1", "localhost", "::1")

MLFLOW_ENV = {
    "MLFLOW_DISABLE_TELEMETRY": "true",
    "MLFLOW_LOGGING_LEVEL": "WARNING",  # no "creating tables" chatter
    # An MLflow server that is away costs seconds, not MLflow's default ~4 minutes of retries.
    "MLFLOW_HTTP_REQUEST_MAX_RETRIES": "2",
    "MLFLOW_HTTP_REQUEST_BACKOFF_FACTOR": "1",
    "MLFLOW_HTTP_REQUEST_TIMEOUT": "30",
    "MLFLOW_SUPPRESS_PRINTING_URL_TO_STDOUT": "true",
    "MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR": "false",  # no progress bars on stderr (export)
}


def apply_env(settings: dict[str, str]) -> dict[str, str]:
    """Set ``settings`` where the user has not set a value (and keep loopback off any
    proxy); returns what is in force."""
    for key, value in settings.items():
        os.environ.setdefault(key, value)
    bypass_proxy_for_loopback(os.environ)
    return {key: os.environ[key] for key in settings}


def apply_mlflow_env() -> dict[str, str]:
    """:data:`MLFLOW_ENV`, applied (see :func:`apply_env`)."""
    return apply_env(MLFLOW_ENV)


def bypass_proxy_for_loopback(environ: MutableMapping[str, str]) -> None:
    """Where an HTTP(S) proxy is set, add the loopback hosts to ``NO_PROXY``/``no_proxy``
    (a local MLflow server lives on 127.0.0.1, which a proxy elsewhere cannot reach). Entries
    the user already has are kept; both spellings get the same list."""
    if not any(environ.get(key) for key in PROXY_VARIABLES):
        return
    listed = ",".join(environ.get(key, "") for key in ("no_proxy", "NO_PROXY")).split(",")
    hosts = list(dict.fromkeys(host.strip() for host in listed if host.strip()))
    if "*" not in hosts:
        hosts += [host for host in LOOPBACK_HOSTS if host not in hosts]
    environ["no_proxy"] = environ["NO_PROXY"] = ",".join(hosts)
