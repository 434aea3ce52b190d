"""Early stopping's trade: compute saved against front quality, on Cora (SplineConv).

The same searches (space, seed, trial budget, concurrency) run with and without
``--early-stopping``; compute is fine-tuning epochs actually run, front quality is the
hypervolume of finished trials (val_acc max, size_bytes min) against one reference point
shared by every search of the benchmark. Median over seeds.

Early stopping compares a trial only with trials of its compression bucket, so it acts when
buckets repeat: the benchmark's space fixes the compression to two buckets (90% global
pruning, FP32 or INT8 QAT) and searches the fine-tuning (lr over three decades, epochs,
schedule), the "tune the fine-tuning of a chosen compression" use. In the bundled joint
space buckets rarely repeat within a few dozen trials, and it stops little (``--joint``).

    python bench/early_stopping.py [--quick] [--data-root DIR] [--cache-dir DIR] [--no-write]
"""

from __future__ import annotations

import statistics
import sys
import tempfile
import time
import warnings
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench.common import append_result, parse_args
from search.env import apply_quiet_env

JOINT = "Bundled joint `cora_node` space"
FINE_TUNING = "Fine-tuning space (90% global pruning, FP32 or INT8 QAT; lr, epochs, schedule)"


def main() -> None:
    def joint(parser):
        parser.add_argument("--joint", action="store_true",
                            help="search the bundled joint space instead of the fine-tuning one")

    args = parse_args(__doc__, "1 seed x 8 trials per mode (< 3 min)", joint)
    warnings.filterwarnings("ignore")
    apply_quiet_env()
    from analysis.load import load_trials
    from analysis.pareto import hypervolume, pareto_front, reference_point
    from search.run import SearchSettings, run_search
    from spaces import load_space
    from trainables.measure import MeasureSettings

    space = load_space("cora_node")
    if not args.joint:
        space = type(space)(**{**space.model_dump(), "warm_start": [], "space": {
            "prune.method": "global", "prune.sparsity": 0.9, "quant.method": ["qat", "fp32"],
            "quant.bits": 8, "finetune.epochs": {"low": 20, "high": 100},
            "finetune.lr": {"low": 1.0e-4, "high": 1.0e-1, "log": True},
            "finetune.schedule": ["cosine", "constant"], "finetune.weight_decay": 5.0e-4}})
    seeds, trials = ([0], 8) if args.quick else ([0, 1, 2], 24)
    work = Path(tempfile.mkdtemp(prefix="bench-early-stopping-"))
    uri = f"sqlite:///{work / 'mlflow.db'}"
    started = time.perf_counter()
    runs: dict[tuple[bool, int], dict] = {}
    for seed in seeds:
        for stopping in (False, True):
            name = f"es-{int(stopping)}-{seed}"
            t0 = time.perf_counter()
            outcome = run_search(space, SearchSettings(
                name=name, trials=trials, concurrency=2, tracking_uri=uri,
                storage=work / "ray", data_root=args.data_root, cache_dir=args.cache_dir,
                seed=seed, progress=False, early_stopping=stopping,
                measure=MeasureSettings(energy_window_s=0)))
            frame = load_trials([name], uri).frame
            epochs_run = int(frame["finetune.epochs"].sum()) + _stopped_epochs(uri, name,
                                                                              outcome)
            runs[stopping, seed] = {"frame": frame, "outcome": outcome, "epochs_run": epochs_run,
                                    "wall_s": time.perf_counter() - t0}
            print(f"seed {seed} early_stopping={stopping}: {outcome.completed} finished, "
                  f"{outcome.early_stopped} stopped, {epochs_run} epochs run, "
                  f"{outcome.epochs_saved} saved, {runs[stopping, seed]['wall_s']:.0f} s",
                  flush=True)
    objectives = space.objectives
    reference = reference_point([r["frame"] for r in runs.values()], objectives)
    rows = ["| seed | mode | finished | stopped | epochs run | epochs saved | hypervolume | "
            "wall s |", "|---|---|---|---|---|---|---|---|"]
    saved_share, hv_ratio, wall_ratio = [], [], []
    for seed in seeds:
        hv = {}
        for stopping in (False, True):
            r = runs[stopping, seed]
            out, frame = r["outcome"], r["frame"]
            hv[stopping] = hypervolume(pareto_front(frame, objectives), objectives, reference)
            rows.append(f"| {seed} | {'early stopping' if stopping else 'plain'} | "
                        f"{out.completed} | {out.early_stopped} | {r['epochs_run']} | "
                        f"{out.epochs_saved} | {hv[stopping]:.5g} | {r['wall_s']:.0f} |")
        plain, stopped = runs[False, seed], runs[True, seed]
        saved_share.append(1 - stopped["epochs_run"] / plain["epochs_run"])
        hv_ratio.append(hv[True] / hv[False] if hv[False] else float("nan"))
        wall_ratio.append(stopped["wall_s"] / plain["wall_s"])
    saved, quality = statistics.median(saved_share), statistics.median(hv_ratio)
    body = "\n".join([
        f"{JOINT if args.joint else FINE_TUNING} on Cora (SplineConv), default sampler, "
        f"{trials} trials per search, "
        f"concurrency 2, seeds {seeds}; hypervolume against one reference point for all "
        "searches (val_acc max, size_bytes min). Epochs run: finished trials' fine-tuning "
        "epochs plus the epochs stopped trials ran. The two modes sample different trials "
        "after the first stop (Optuna sees PRUNED trials), so each pair compares two "
        "searches, not the same trials.", "", *rows, "",
        f"Median over seeds: early stopping ran {saved * 100:.0f}% fewer fine-tuning epochs "
        f"(wall time x{statistics.median(wall_ratio):.2f}) for a hypervolume x{quality:.3f} "
        "of the plain search's.",
    ])
    print(body)
    if not args.no_write:
        append_result("Early stopping: compute saved vs front quality (bench/early_stopping.py)",
                      body)
    print(f"early stopping: {saved * 100:.0f}% fewer epochs, hypervolume x{quality:.3f} "
          f"({time.perf_counter() - started:.0f} s)")


def _stopped_epochs(uri: str, name: str, outcome) -> int:
    """Epochs that early-stopped trials ran: their planned epochs less those saved."""
    from mlflow.tracking import MlflowClient

    from search.early_stopping import EARLY_STOPPED_TAG

    client = MlflowClient(uri)
    experiment = client.get_experiment_by_name(name)
    stopped = client.search_runs([experiment.experiment_id],
                                 filter_string=f"tags.`{EARLY_STOPPED_TAG}` = 'true'")
    planned = sum(int(r.data.params["finetune.epochs"]) for r in stopped)
    return planned - outcome.epochs_saved


if __name__ == "__main__":
    main()
