"""Read a search's trials from MLflow into a DataFrame (one row per trial run)."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import pandas as pd
from mlflow.tracking import MlflowClient

from trainables.param_defaults import INACTIVE  # what an absent parameter means

ROLE_TAG = "gnn_search.role"  # "search" (parent run) or "trial" (child run)
SEARCH_TAG = "gnn_search.search"  # the search's name, on parent and children


@dataclass
class Trials:
    """Finished trials, and how many runs were left out because they did not finish."""

    frame: pd.DataFrame
    excluded: dict[str, int]  # status -> count (RUNNING, FAILED, KILLED)


def default_tracking_uri(cwd: Path | None = None) -> str:
    """``sqlite:////abs/path/mlflow.db`` in the current directory (absolute: Ray trials run
    elsewhere); what the analysis commands read without ``--tracking-uri``."""
    return f"sqlite:///{((cwd or Path.cwd()) / 'mlflow.db').resolve()}"


def _client(tracking_uri: str) -> MlflowClient:
    if tracking_uri.startswith("sqlite:///"):
        db = Path(tracking_uri.removeprefix("sqlite:///"))
        if not db.is_file():
            raise ValueError(f"no MLflow database at {db}; pass the search's --tracking-uri")
    return MlflowClient(tracking_uri)


def experiment_ids(client: MlflowClient, experiments: list[str], tracking_uri: str
                   ) -> dict[str, str]:
    """Experiment id -> name; an unknown name is a clear error listing the known ones."""
    ids = {}
    for name in experiments:
        experiment = client.get_experiment_by_name(name)
        if experiment is None:
            known = [e.name for e in client.search_experiments()]
            raise ValueError(
                f"unknown experiment {name!r} in {tracking_uri}; "
                f"known: {', '.join(known) or 'none'}"
            )
        ids[experiment.experiment_id] = name
    return ids


def load_searches(experiments: list[str], tracking_uri: str) -> pd.DataFrame:
    """The parent run of every search in these experiments: ``run_id``, ``experiment``,
    ``search``, ``status``, its params (``objectives``, ...) and metrics (``baseline_*``)."""
    client = _client(tracking_uri)
    ids = experiment_ids(client, experiments, tracking_uri)
    runs = client.search_runs(list(ids), filter_string=f"tags.`{ROLE_TAG}` = 'search'",
                              order_by=["attributes.start_time DESC"], max_results=1000)
    return pd.DataFrame([{
        "run_id": r.info.run_id, "experiment": ids[r.info.experiment_id],
        "search": r.data.tags.get(SEARCH_TAG, ""), "status": r.info.status,
        **r.data.params, **r.data.metrics,
    } for r in runs])



def fill_inactive(frame: pd.DataFrame) -> pd.DataFrame:
    """Trials with conditional parameters filled in with what their absence means."""
    frame = frame.copy()
    for column, value in INACTIVE.items():
        if column in frame.columns:
            frame[column] = frame[column].fillna(value)
    return frame


def load_trials(experiments: list[str], tracking_uri: str) -> Trials:
    """Every trial run of the named experiments; only FINISHED runs go into ``frame``.

    Columns: ``run_id``, ``experiment``, ``search``, ``status``, then params (``prune.method``,
    ...) and final metrics (``val_acc``, ``size_bytes``, ...).
    """
    client = _client(tracking_uri)
    ids = experiment_ids(client, experiments, tracking_uri)
    rows, excluded, token = [], {}, None
    while True:
        page = client.search_runs(
            list(ids), filter_string=f"tags.`{ROLE_TAG}` = 'trial'", max_results=1000,
            page_token=token,
        )
        for run in page:
            status = run.info.status
            if status != "FINISHED":
                excluded[status] = excluded.get(status, 0) + 1
                continue
            rows.append({
                "run_id": run.info.run_id,
                "experiment": ids[run.info.experiment_id],
                "search": run.data.tags.get(SEARCH_TAG, ""),
                "status": status,
                **run.data.params,
                **run.data.metrics,
            })
        token = page.token
        if not token:
            break
    frame = pd.DataFrame(rows)
    for column in frame.columns:
        frame[column] = _maybe_numeric(frame[column])
    return Trials(frame=frame, excluded=excluded)


def _maybe_numeric(column: pd.Series) -> pd.Series:
    """MLflow params are strings: make numeric ones (``prune.sparsity``) numbers again."""
    if column.dtype != object and not pd.api.types.is_string_dtype(column):
        return column
    converted = pd.to_numeric(column, errors="coerce")
    return converted if converted.notna().sum() == column.notna().sum() else column
