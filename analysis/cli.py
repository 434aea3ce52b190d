"""The analysis commands: ``pareto``, ``report``, ``export`` and ``compare``.

``gnn-search`` offers them: ``search/cli.py`` adds their parsers (``add_*`` here) and
dispatches through :data:`COMMANDS`. ``python -m analysis.<command>`` runs them through
:func:`main` here, without the rest of gnn-search. Light at import (argparse only): the
work is imported when a command runs. Nothing here imports search/.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from analysis.columns import FORMATS
from analysis.safetensors_export import EXPORT_FORMATS, PYG_MODELS, WEIGHTS
from trainables.errors import first_line
from trainables.paths import check_length, probe_writable

DEFAULT_OBJECTIVES = "val_acc:max,size_bytes:min"
# What a command reports as one line "gnn-search COMMAND: error: ..." and exit code 2
# (StorageError, a damaged model file, is a ValueError).
ERRORS = (ValueError, KeyError, FileNotFoundError, ConnectionError, ArithmeticError)


class UsageError(ValueError):
    """A command line that argparse refuses, already worded as the one line to print."""


class Parser(argparse.ArgumentParser):
    """argparse, except that a refused command line is one line, ``PROG: error: MESSAGE``,
    without the usage block (``PROG --help`` shows it), and an empty value is refused (it
    would otherwise stand for the default, or for the current folder); subcommands' parsers
    are of this class too."""

    def error(self, message: str):
        raise UsageError(f"{self.prog}: error: {message}; see {self.prog} --help")

    def parse_known_args(self, args=None, namespace=None):
        namespace, extras = super().parse_known_args(args, namespace)
        for action in self._actions:
            given = getattr(namespace, action.dest, None)
            if "" in (given if isinstance(given, list) else [given]):
                name = action.option_strings[-1] if action.option_strings else action.metavar
                self.error(f"argument {name}: '' is empty; give a value" + (
                    f", or leave out {name}" if action.option_strings and not action.required
                    else ""))
        return namespace, extras


def check_out_file(out: str, overwrite: bool = True, example: str = "front.csv") -> Path:
    """``--out`` as a file to write, checked before any run is read: a name a filesystem
    takes, not a folder, not an existing file unless ``overwrite``, in a folder that exists
    and can be written in (it is never created: a mistyped folder is refused)."""
    check_length(out, "--out")
    path = Path(out).expanduser().resolve()
    if path.is_dir():
        raise ValueError(f"--out {out} is a folder; give a file name, e.g. {path / example}")
    if path.exists() and not overwrite:
        raise ValueError(f"--out {out} already exists; choose another path or remove it")
    _check_parent(path, out)
    return path


def check_out_folder(out: str) -> Path:
    """``--out`` as a folder to write into, checked before any run is read: a name a
    filesystem takes, not a file, and either an existing folder or one the command creates
    in a folder that exists (its parent is never created: a mistyped one is refused); the
    folder it writes in can be written in."""
    check_length(out, "--out")
    path = Path(out).expanduser().resolve()
    if path.exists() and not path.is_dir():
        raise ValueError(f"--out {out} is a file; give a folder (it is created if missing, "
                         "in a folder that exists)")
    if path.is_dir():
        probe_writable(path, "--out", out)
    else:
        _check_parent(path, out)
    return path


def _check_parent(path: Path, out: str) -> None:
    """The folder ``path`` goes in exists, is a folder, and a file can be created in it."""
    blocking = next((p for p in path.parents if p.exists() and not p.is_dir()), None)
    if blocking is not None:
        raise ValueError(f"--out {out}: {blocking} is a file, not a folder; choose another "
                         "path")
    if not path.parent.exists():
        raise ValueError(f"--out {out}: folder {path.parent} does not exist; create it or "
                         "choose another path")
    probe_writable(path.parent, "--out", out)


def add_tracking_uri(p: argparse.ArgumentParser) -> None:
    p.add_argument("--tracking-uri", help="MLflow tracking URI (default: "
                   "sqlite:///<cwd>/mlflow.db)")


def _add_selection(p: argparse.ArgumentParser) -> None:
    """Which finished trials an analysis command reads, and how it judges them."""
    p.add_argument("--experiment", action="append", required=True, metavar="NAME",
                   help="experiment (search) name; repeat to merge several")
    add_tracking_uri(p)
    p.add_argument("--objectives", help="METRIC:max|min,... (default: the search's own "
                   "objectives)")
    p.add_argument("--constraint", action="append", default=[], metavar="EXPR",
                   help='keep only trials meeting EXPR, e.g. "val_acc>=0.80" (repeatable)')


def add_pareto(sub) -> None:
    pareto = sub.add_parser("pareto", help="Pareto-optimal trials of finished searches",
                            description="Non-dominated finished trials of one or more "
                                        "experiments, read from MLflow.")
    _add_selection(pareto)
    pareto.add_argument("--format", choices=FORMATS, default="table",
                        help="output format (default: table)")
    pareto.add_argument("--out", help="also write the front as CSV to this file")


def add_report(sub) -> None:
    report = sub.add_parser("report", help="self-contained HTML report (+ PNG figures)",
                            description="Pareto plots with the baseline, an interactive "
                                        "front, parallel coordinates, parameter importances "
                                        "and tables; also logged to the search's parent run.")
    _add_selection(report)
    report.add_argument("--out", required=True, help="folder for index.html and the PNGs")
    report.add_argument("--no-log", action="store_true",
                        help="do not log the report to the search's parent MLflow run")


def add_export(sub) -> None:
    export = sub.add_parser("export", help="write a trial's compressed model and its config",
                            description="Copy a trial's model file out of MLflow, with a JSON "
                                        "sidecar (config, metrics). Load it with "
                                        "trainables.load_compressed.")
    export.add_argument("--run-id", required=True, help="the trial's MLflow run id, or a "
                        "prefix of it that names one run (e.g. the 8 characters pareto shows)")
    export.add_argument("--out", required=True, help="model file to write (e.g. model.gnnz); "
                        "it and its .json sidecar must not exist yet")
    add_tracking_uri(export)
    export.add_argument("--format", choices=EXPORT_FORMATS, default="gnnz",
                        help="gnnz: the trial's compressed file (default); safetensors: its "
                        "weights under PyG's state-dict names, for plain PyG + safetensors "
                        f"(models {', '.join(PYG_MODELS)}; activation quantizers left out)")
    export.add_argument("--weights", choices=WEIGHTS, help="safetensors only: float (default): "
                        "quantized weights dequantized to float32, load_state_dict takes the "
                        "file as it is; int8: quantized weights as int8 <name> + float32 "
                        "<name>.scale per output channel (4-bit ones as int8 values)")


def add_compare(sub) -> None:
    compare = sub.add_parser("compare", help="hypervolume and Pareto coverage of searches",
                             description="Hypervolume (one shared reference point) and "
                                         "coverage C(A, B) between the fronts of searches.")
    compare.add_argument("--experiments", nargs="+", required=True, metavar="NAME",
                         help="two or more experiment names")
    add_tracking_uri(compare)
    compare.add_argument("--objectives", help="METRIC:max|min,... (default: the first "
                         "search's own)")
    compare.add_argument("--format", choices=FORMATS, default="table")


def add_commands(sub) -> None:
    """Add the four analysis subcommands to ``sub`` (an ``add_subparsers`` result)."""
    for add in (add_pareto, add_report, add_export, add_compare):
        add(sub)


def _tracking_uri(args) -> str:
    """The store the command reads, checked after the command's own options (``--objectives``
    first): a bad one is one line, not MLflow's error."""
    from analysis.load import default_tracking_uri
    from analysis.pareto import parse_objectives
    from analysis.tracking_store import check_tracking_uri

    if getattr(args, "objectives", None):
        parse_objectives(args.objectives)
    uri = args.tracking_uri or default_tracking_uri()
    check_tracking_uri(uri, reading=True)
    return uri


def _search_objectives(experiments: list[str], tracking_uri: str) -> str:
    """The objectives the (latest) search in these experiments optimized."""
    from analysis.load import load_searches

    searches = load_searches(experiments, tracking_uri)
    recorded = searches["objectives"].dropna() if "objectives" in searches else []
    return recorded.iloc[0] if len(recorded) else DEFAULT_OBJECTIVES


def finished_trials(experiments: list[str], tracking_uri: str, objectives_text: str | None):
    """Finished trials of ``experiments`` and the objectives to judge them by, or a one-line
    error (no finished trials, unknown metric)."""
    from analysis.load import load_trials
    from analysis.pareto import parse_objectives

    given = parse_objectives(objectives_text) if objectives_text else None  # before reading
    trials = load_trials(experiments, tracking_uri)
    if trials.frame.empty:
        raise ValueError(
            f"no finished trials in {', '.join(experiments)} "
            f"(left out: {trials.excluded or 'none'})"
        )
    objectives = given or parse_objectives(_search_objectives(experiments, tracking_uri))
    unknown = [m for m in objectives if m not in trials.frame.columns]
    if unknown:
        metrics = sorted(c for c in trials.frame.columns if trials.frame[c].dtype.kind == "f")
        raise ValueError(f"unknown metric {unknown[0]!r} in --objectives; available: "
                         f"{', '.join(metrics)}")
    return trials, objectives


def cmd_pareto(args) -> int:
    from analysis.pareto import analyze, parse_constraint
    from analysis.report import pareto_table, render

    constraints = [parse_constraint(c) for c in args.constraint]
    out = check_out_file(args.out) if args.out else None
    tracking_uri = _tracking_uri(args)
    trials, objectives = finished_trials(args.experiment, tracking_uri, args.objectives)
    result = analyze(trials.frame, objectives, constraints)
    table = pareto_table(result.front, objectives, result.knee)
    shown = table.assign(knee=table["knee"].map({True: "*", False: ""})) if (
        args.format == "table") else table
    print(render(shown, args.format))
    if args.format == "table":
        left = ", ".join(f"{n} {s}" for s, n in trials.excluded.items()) or "none"
        print(f"\n{len(table)} Pareto-optimal of {len(result.feasible)} trials meeting "
              f"{len(constraints)} constraint(s), {len(trials.frame)} finished (not finished, "
              f"left out: {left}); knee marked *; hypervolume {result.hypervolume:.6g} "
              "against reference "
              + ", ".join(f"{m}={v:.6g}" for m, v in result.reference.items()), file=sys.stderr)
    if out:
        out.write_text(render(table, "csv"))
    return 0


def cmd_report(args) -> int:
    from analysis.load import load_searches
    from analysis.pareto import apply_constraints, parse_constraint
    from analysis.report import build_report

    constraints = [parse_constraint(c) for c in args.constraint]
    out = check_out_folder(args.out)
    tracking_uri = _tracking_uri(args)
    trials, objectives = finished_trials(args.experiment, tracking_uri, args.objectives)
    apply_constraints(trials.frame, constraints)  # an unknown metric: refused before any file
    searches = load_searches(args.experiment, tracking_uri)
    path = build_report(trials.frame, trials.excluded, searches, objectives, out, constraints,
                        title=f"Search report: {', '.join(args.experiment)}")
    if not args.no_log and not searches.empty:
        from mlflow.tracking import MlflowClient

        client = MlflowClient(tracking_uri)
        for run_id in searches["run_id"]:
            client.log_artifacts(run_id, str(out), artifact_path="report")
    print(f"report: {path}")
    return 0


def cmd_export(args) -> int:
    from analysis.export import export_run

    if args.weights and args.format != "safetensors":
        raise ValueError(f"--weights {args.weights} applies to --format safetensors only; "
                         "add --format safetensors or leave out --weights")
    out = check_out_file(args.out, overwrite=False, example="model.gnnz")
    sidecar = out.with_name(out.name + ".json")
    if sidecar.exists():
        raise ValueError(f"--out {args.out}: its sidecar {sidecar} already exists; choose "
                         "another path or remove it")
    model, sidecar = export_run(args.run_id, _tracking_uri(args), out, args.format,
                                args.weights or "float")
    print(f"model: {model} ({model.stat().st_size} bytes)\nconfig and metrics: {sidecar}")
    return 0


def cmd_compare(args) -> int:
    from analysis.compare import compare_fronts
    from analysis.report import render

    if len(args.experiments) < 2:
        raise ValueError(f"--experiments needs at least two names, got {args.experiments}")
    tracking_uri = _tracking_uri(args)
    first, objectives = finished_trials(args.experiments[:1], tracking_uri, args.objectives)
    frames = {args.experiments[0]: first.frame}  # read once (10,000 runs take seconds)
    for name in args.experiments[1:]:
        trials, _ = finished_trials([name], tracking_uri, ",".join(
            f"{m}:{d}" for m, d in objectives.items()))
        frames[name] = trials.frame
    table, reference = compare_fronts(frames, objectives)
    print(render(table, args.format))
    if args.format == "table":
        print("\nreference point: " + ", ".join(f"{m}={v:.6g}" for m, v in reference.items())
              + "; 'covers X' = fraction of X's front weakly dominated by this front",
              file=sys.stderr)
    return 0


COMMANDS = {"pareto": cmd_pareto, "report": cmd_report, "export": cmd_export,
            "compare": cmd_compare}


def build_parser() -> argparse.ArgumentParser:
    """The analysis commands alone, named as ``gnn-search`` names them."""
    parser = Parser(prog="gnn-search", description="Analyse finished searches read from "
                    "MLflow.")
    add_commands(parser.add_subparsers(dest="command", required=True, metavar="COMMAND"))
    return parser


def main(argv: list[str] | None = None) -> int:
    """``python -m analysis.<command> ...``: the same as ``gnn-search <command> ...``."""
    from analysis.env import apply_mlflow_env

    apply_mlflow_env()  # before MLflow is imported
    try:
        args = build_parser().parse_args(argv)
    except UsageError as err:
        print(err, file=sys.stderr)
        return 2
    try:
        return COMMANDS[args.command](args)
    except ERRORS as err:
        print(f"gnn-search {args.command}: error: {first_line(err)}", file=sys.stderr)
        return 2
