"""Figures of a search: static PNGs (matplotlib) and interactive HTML fragments (plotly)."""

from __future__ import annotations

import itertools
from pathlib import Path

import matplotlib

matplotlib.use("Agg")  # files only, no display
import matplotlib.pyplot as plt
import pandas as pd
import plotly.graph_objects as go

from analysis.columns import CONFIG_COLUMNS
from trainables.metrics import LOG_SCALE_METRICS


def _label(metric: str, direction: str) -> str:
    return f"{metric} ({'higher' if direction == 'max' else 'lower'} is better)"


def pareto_pngs(trials: pd.DataFrame, front: pd.DataFrame, objectives: dict[str, str],
                baseline: dict[str, float], knee, out_dir: Path) -> list[Path]:
    """One scatter per pair of objectives: all trials, the front, the knee, the baseline."""
    paths = []
    pairs = list(itertools.combinations(objectives, 2)) or [(next(iter(objectives)),) * 2]
    for x, y in pairs:
        fig, ax = plt.subplots(figsize=(6.4, 4.6), dpi=110)
        ax.scatter(trials[x], trials[y], s=18, c="#bbbbbb", label="trials")
        ordered = front.sort_values(x)
        ax.plot(ordered[x], ordered[y], "o-", c="#1f77b4", ms=6, label="Pareto-optimal")
        if knee is not None:
            ax.scatter([front.loc[knee, x]], [front.loc[knee, y]], marker="*", s=260,
                       c="#ff7f0e", zorder=5, label="knee")
        if x in baseline and y in baseline:
            ax.scatter([baseline[x]], [baseline[y]], marker="X", s=120, c="#d62728", zorder=5,
                       label="FP32 baseline")
        ax.set_xlabel(_label(x, objectives[x]))
        ax.set_ylabel(_label(y, objectives[y]))
        if x in LOG_SCALE_METRICS and trials[x].min() > 0:
            ax.set_xscale("log")
        ax.grid(alpha=0.3)
        ax.legend(fontsize=8)
        ax.set_title(f"{y} vs {x}")
        fig.tight_layout()
        path = out_dir / f"pareto_{x}_vs_{y}.png"
        fig.savefig(path)
        plt.close(fig)
        paths.append(path)
    return paths


def _hover(frame: pd.DataFrame) -> list[str]:
    columns = [c for c in CONFIG_COLUMNS if c in frame.columns]
    return ["<br>".join(f"{c}={row[c]}" for c in columns if pd.notna(row[c]))
            + f"<br>run={row['run_id'][:8]}" for _, row in frame.iterrows()]


def interactive_front(trials: pd.DataFrame, front: pd.DataFrame, objectives: dict[str, str],
                      baseline: dict[str, float]) -> go.Figure:
    """The first two objectives; hovering a point shows its configuration."""
    names = list(objectives)
    x, y = (names[0], names[1]) if len(names) > 1 else (names[0], names[0])
    fig = go.Figure()
    fig.add_trace(go.Scatter(x=trials[x], y=trials[y], mode="markers", name="trials",
                             marker={"color": "#bbbbbb", "size": 8}, text=_hover(trials),
                             hovertemplate="%{text}<extra></extra>"))
    ordered = front.sort_values(x)
    fig.add_trace(go.Scatter(x=ordered[x], y=ordered[y], mode="lines+markers",
                             name="Pareto-optimal", marker={"size": 10}, text=_hover(ordered),
                             hovertemplate="%{text}<extra></extra>"))
    if x in baseline and y in baseline:
        fig.add_trace(go.Scatter(x=[baseline[x]], y=[baseline[y]], mode="markers",
                                 name="FP32 baseline",
                                 marker={"symbol": "x", "size": 14, "color": "#d62728"}))
    fig.update_layout(xaxis_title=_label(x, objectives[x]), yaxis_title=_label(y, objectives[y]),
                      height=480, margin={"t": 30}, template="plotly_white")
    return fig


def parallel_coordinates(trials: pd.DataFrame, objectives: dict[str, str]) -> go.Figure:
    """Every trial across configuration and objectives (categories as labelled codes)."""
    from analysis.load import fill_inactive

    trials = fill_inactive(trials)
    dims = []
    for column in [c for c in CONFIG_COLUMNS if c in trials.columns] + list(objectives):
        values = trials[column]
        if values.dtype == object or pd.api.types.is_string_dtype(values):
            cats = sorted(values.fillna("-").astype(str).unique())
            codes = values.fillna("-").astype(str).map({c: i for i, c in enumerate(cats)})
            dims.append({"label": column, "values": codes, "tickvals": list(range(len(cats))),
                         "ticktext": cats})
        elif values.notna().any():
            dims.append({"label": column, "values": values.fillna(values.min())})
    first = next(iter(objectives))
    fig = go.Figure(go.Parcoords(line={"color": trials[first], "colorscale": "Viridis",
                                       "showscale": True}, dimensions=dims))
    fig.update_layout(height=460, margin={"l": 60, "r": 60, "t": 40})
    return fig


def importance_png(importances: dict[str, dict[str, float]], out_dir: Path) -> Path | None:
    """Horizontal bars of parameter importance, one panel per objective."""
    if not importances:
        return None
    fig, axes = plt.subplots(1, len(importances), figsize=(4.2 * len(importances), 3.6),
                             dpi=110, squeeze=False)
    for ax, (metric, values) in zip(axes[0], importances.items(), strict=True):
        items = sorted(values.items(), key=lambda kv: kv[1])
        ax.barh([k for k, _ in items], [v for _, v in items], color="#1f77b4")
        ax.set_title(metric)
        ax.set_xlabel("importance (fANOVA)")
    fig.tight_layout()
    path = out_dir / "importances.png"
    fig.savefig(path)
    plt.close(fig)
    return path
