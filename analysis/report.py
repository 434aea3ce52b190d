"""Turn trial frames into what people read: the Pareto table as text, CSV or JSON."""

from __future__ import annotations

import json

import pandas as pd

from analysis.pareto import pareto_front

CONFIG_COLUMNS = ("prune.method", "prune.sparsity", "quant.method", "quant.bits",
                  "finetune.epochs", "finetune.lr", "finetune.schedule")
REPORTED_METRICS = ("val_acc", "test_acc", "size_bytes", "size_ratio", "sparsity_actual",
                    "latency_ms")
FORMATS = ("table", "csv", "json")


def pareto_table(trials: pd.DataFrame, objectives: dict[str, str]) -> pd.DataFrame:
    """Pareto-optimal trials with their objectives, reported metrics and configuration."""
    front = pareto_front(trials, objectives)
    columns = ["run_id", "search", *objectives]
    columns += [c for c in (*REPORTED_METRICS, *CONFIG_COLUMNS) if c not in columns]
    return front[[c for c in columns if c in front.columns]].reset_index(drop=True)


def render(frame: pd.DataFrame, fmt: str) -> str:
    """``frame`` as an aligned table, CSV, or a JSON list of records."""
    if fmt == "table":
        shown = frame.copy()
        if "run_id" in shown:
            shown["run_id"] = shown["run_id"].str[:8]
        return shown.to_string(index=False, float_format=lambda v: f"{v:.4g}", na_rep="-")
    if fmt == "csv":
        return frame.to_csv(index=False)
    if fmt == "json":
        records = json.loads(frame.to_json(orient="records"))
        return json.dumps(records, indent=2)
    raise ValueError(f"unknown format {fmt!r}; allowed: {', '.join(FORMATS)}")
