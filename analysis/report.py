"""Turn trial frames into what people read: the Pareto table (text, CSV, JSON) and a
self-contained HTML report with its PNG figures."""

from __future__ import annotations

import base64
import html
import json
import sys
import time
import warnings
from pathlib import Path

import pandas as pd

from analysis.columns import CONFIG_COLUMNS, FORMATS
from trainables.metrics import REPORTED_METRICS


def pareto_table(front: pd.DataFrame, objectives: dict[str, str], knee=None) -> pd.DataFrame:
    """The front's rows with their objectives, reported metrics and configuration; a
    ``knee`` column marks the knee row when ``knee`` (its index label) is given."""
    columns = ["run_id", "search", *objectives]
    columns += [c for c in (*REPORTED_METRICS, *CONFIG_COLUMNS) if c not in columns]
    table = front[[c for c in columns if c in front.columns]]
    if knee is not None:
        table = table.assign(knee=[i == knee for i in front.index])
        table = table[["knee", *[c for c in table.columns if c != "knee"]]]
    return table.reset_index(drop=True)


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


def baseline_metrics(searches: pd.DataFrame) -> dict[str, float]:
    """The FP32 baseline's figures as the search's parent run recorded them."""
    if searches.empty:
        return {}
    row = searches.iloc[0]
    out = {k.removeprefix("baseline_"): float(v) for k, v in row.items()
           if str(k).startswith("baseline_") and isinstance(v, (int, float)) and pd.notna(v)}
    if "size_bytes" in out:
        out["size_ratio"] = 1.0
    return out


def param_importances(trials: pd.DataFrame, objectives: dict[str, str]
                      ) -> dict[str, dict[str, float]]:
    """fANOVA importance of each varied parameter for each objective (Optuna's evaluator on
    the finished trials; conditional parameters filled with what their absence means)."""
    import optuna
    from optuna.distributions import CategoricalDistribution, FloatDistribution

    from analysis.load import fill_inactive

    frame = fill_inactive(trials)
    columns = [c for c in frame.columns if c.startswith(("prune.", "quant.", "finetune."))]
    distributions = {}
    for column in columns:
        values = frame[column]
        if values.nunique(dropna=False) < 2 or values.isna().any():
            continue
        if pd.api.types.is_numeric_dtype(values):
            distributions[column] = FloatDistribution(float(values.min()), float(values.max()))
        else:
            distributions[column] = CategoricalDistribution(sorted(values.astype(str).unique()))
    complete = frame.dropna(subset=list(objectives))
    if len(complete) < 3 or not distributions:
        return {}
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    result = {}
    for metric, direction in objectives.items():
        study = optuna.create_study(direction="maximize" if direction == "max" else "minimize")
        for _, row in complete.iterrows():
            params = {c: (float(row[c]) if isinstance(d, FloatDistribution) else str(row[c]))
                      for c, d in distributions.items()}
            study.add_trial(optuna.trial.create_trial(
                params=params, distributions=distributions, value=float(row[metric])))
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            result[metric] = optuna.importance.get_param_importances(study, normalize=True)
    return result


def _img(path: Path) -> str:
    data = base64.b64encode(path.read_bytes()).decode()
    return f'<img alt="{html.escape(path.stem)}" src="data:image/png;base64,{data}">'


def _table(frame: pd.DataFrame) -> str:
    return frame.to_html(index=False, float_format=lambda v: f"{v:.4g}", na_rep="-",
                         border=0, classes="tbl")


def baseline_comparison(front: pd.DataFrame, objectives: dict[str, str],
                        baseline: dict[str, float]) -> pd.DataFrame:
    """Each Pareto configuration against the FP32 baseline: the searched score's change in
    points (``val_acc``, ``val_roc_auc``, ...), size as a fraction of the baseline file."""
    score = next((m for m in objectives if m.startswith("val_")), "val_acc")
    test = "test_" + score.removeprefix("val_")
    change = f"{score} change (points)"
    rows = [{"configuration": "FP32 baseline (dense file)",
             **{k: baseline.get(k) for k in (score, test, "size_bytes")},
             change: 0.0, "size_ratio": 1.0}]
    for _, r in front.iterrows():
        config = ", ".join(
            f"{c}={r[c]:.3g}" if isinstance(r[c], float) else f"{c}={r[c]}"
            for c in ("prune.method", "prune.sparsity", "quant.method", "quant.bits")
            if c in r and pd.notna(r[c]))
        rows.append({
            "configuration": config, score: r.get(score), test: r.get(test),
            "size_bytes": r.get("size_bytes"),
            change: (r.get(score) - baseline[score]) * 100
            if score in baseline and pd.notna(r.get(score)) else None,
            "size_ratio": r.get("size_ratio"),
        })
    return pd.DataFrame(rows)


_STYLE = """
body { font-family: sans-serif; margin: 2em auto; max-width: 1100px; color: #222; }
.tbl { border-collapse: collapse; font-size: 13px; margin: 0.5em 0; }
.tbl th, .tbl td { border-bottom: 1px solid #ddd; padding: 3px 8px; text-align: left; }
img { max-width: 49%; }
"""


MAX_SHOWN = 2000  # trials in an interactive figure or the importance estimate


def thinned(frame: pd.DataFrame, keep: pd.DataFrame, limit: int | None = None) -> pd.DataFrame:
    """``frame`` when it has at most ``limit`` rows; else the rows also in ``keep`` (the
    Pareto front) and a seeded random sample of the others, ``limit`` rows in all. A page
    of 10,000 hoverable points and lines loads in seconds and shows nothing more."""
    limit = MAX_SHOWN if limit is None else limit
    if len(frame) <= limit:
        return frame
    kept = frame.index.intersection(keep.index)
    others = frame.drop(index=kept)
    sample = others.sample(n=max(0, limit - len(kept)), random_state=0)
    return pd.concat([frame.loc[kept], sample]).sort_index()


def _figures(trials: pd.DataFrame, result, objectives: dict[str, str],
             baseline: dict[str, float], out_dir: Path) -> dict[str, str]:
    """Each figure as HTML: the PNGs (every trial; also written to ``out_dir``) inline, the
    plotly figures (at most :data:`MAX_SHOWN` trials, the front always among them) as divs
    that rely on the page's one copy of plotly.js."""
    from analysis import plots

    pngs = plots.pareto_pngs(result.feasible, result.front, objectives, baseline, result.knee,
                             out_dir)
    importance_png = plots.importance_png(
        param_importances(thinned(trials, trials.iloc[:0]), objectives), out_dir)
    interactive = plots.interactive_front(thinned(result.feasible, result.front), result.front,
                                          objectives, baseline)
    parcoords = plots.parallel_coordinates(thinned(trials, result.front), objectives)
    return {
        "interactive": interactive.to_html(full_html=False, include_plotlyjs=False,
                                           div_id="pareto-interactive"),
        "parcoords": parcoords.to_html(full_html=False, include_plotlyjs=False,
                                       div_id="parallel-coordinates"),
        "pairs": "".join(_img(p) for p in pngs),
        "importances": _img(importance_png) if importance_png else
        "<p>Too few trials to estimate.</p>",
    }


def _summary(trials: pd.DataFrame, excluded: dict[str, int], objectives: dict[str, str],
             constraints, result) -> dict[str, object]:
    """The report's opening table: what was read, what was kept, the front's hypervolume."""
    return {
        "finished trials": len(trials),
        "left out (not finished)": ", ".join(f"{n} {s}" for s, n in excluded.items()) or "none",
        "constraints": ", ".join(map(str, constraints)) or "none",
        "meeting constraints": len(result.feasible),
        **({"interactive figures and importances": f"the Pareto-optimal and a random sample, "
            f"{MAX_SHOWN} of {len(trials)} trials (the PNGs show every trial)"}
           if len(trials) > MAX_SHOWN else {}),
        "Pareto-optimal": len(result.front),
        "objectives": ", ".join(f"{m}:{d}" for m, d in objectives.items()),
        "hypervolume": f"{result.hypervolume:.6g}",
        "reference point": ", ".join(f"{m}={v:.6g}" for m, v in result.reference.items()),
        "generated": time.strftime("%Y-%m-%d %H:%M:%S"),
    }


def _sections(title: str, summary: dict[str, object], figures: dict[str, str], result,
              objectives: dict[str, str], baseline: dict[str, float]) -> list[str]:
    """The page body, in reading order."""
    table = pareto_table(result.front, objectives, result.knee)
    table["knee"] = table["knee"].map({True: "*", False: ""})
    return [
        f"<h1>{html.escape(title or 'GNN compression search')}</h1>",
        "<table class='tbl'>" + "".join(
            f"<tr><th>{html.escape(k)}</th><td>{html.escape(str(v))}</td></tr>"
            for k, v in summary.items()) + "</table>",
        "<h2>Pareto front (hover for the configuration)</h2>", figures["interactive"],
        "<h2>Pareto-optimal configurations</h2>", _table(table),
        "<h2>Against the FP32 baseline</h2>",
        _table(baseline_comparison(result.front, objectives, baseline)) if baseline else
        "<p>The search recorded no baseline.</p>",
        "<h2>Every pair of objectives</h2>", figures["pairs"],
        "<h2>All trials</h2>", figures["parcoords"],
        "<h2>Parameter importances</h2>", figures["importances"],
    ]


def _page(title: str, sections: list[str]) -> str:
    """A self-contained HTML page: the sections, the style, plotly.js embedded."""
    import plotly.offline

    return f"""<!DOCTYPE html>
<html lang="en"><head><meta charset="utf-8"><title>{html.escape(title or 'report')}</title>
<style>{_STYLE}</style>
<script type="text/javascript">{plotly.offline.get_plotlyjs()}</script>
</head><body>
{"".join(sections)}
</body></html>
"""


def build_report(trials: pd.DataFrame, excluded: dict[str, int], searches: pd.DataFrame,
                 objectives: dict[str, str], out_dir: Path, constraints=(),
                 title: str = "") -> Path:
    """Write ``index.html`` (self-contained: figures inline, plotly.js embedded) and the PNG
    figures into ``out_dir``; returns the HTML path."""
    from analysis.pareto import analyze

    out_dir.mkdir(parents=True, exist_ok=True)
    result = analyze(trials, objectives, constraints)
    baseline = baseline_metrics(searches)
    figures = _figures(trials, result, objectives, baseline, out_dir)
    summary = _summary(trials, excluded, objectives, constraints, result)
    path = out_dir / "index.html"
    path.write_text(_page(title, _sections(title, summary, figures, result, objectives,
                                           baseline)))
    return path


if __name__ == "__main__":  # python -m analysis.report ... == gnn-search report ...
    from analysis.cli import main

    sys.exit(main(["report", *sys.argv[1:]]))
