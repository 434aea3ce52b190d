"""The plain script ``bench/scale.py`` measures the service against: what a user would write
instead of the service, a ``Tuner`` with ``OptunaSearch`` over the same space and sampler,
running the same instant stand-in trial (per-epoch reports, a model file as checkpoint),
with actors reused as the service does; no MLflow, no forced experiment-state saves.

Joins the Ray cluster in ``RAY_ADDRESS``; writes the ``fit`` wall time and each trial's
completion time (the driver's clock) as JSON to ``--out``.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
# per-epoch reports carry the search metric only, as the service's do
os.environ.setdefault("TUNE_DISABLE_STRICT_METRIC_CHECKING", "1")

import ray
from ray import tune
from ray.tune.search.optuna import OptunaSearch

from spaces import load_space
from spaces.samplers import make_sampler


def instant_trial(config: dict) -> None:
    """The stand-in: the same reports and file as ``tests/instantplugin``'s cycle."""
    from sitecustomize import MODEL_FILE, stand_in_metrics  # tests/instantplugin

    metrics = stand_in_metrics(config)
    epochs = int(config.get("finetune.epochs", 10))
    every = max(1, epochs // 10)
    rows = []
    for epoch in range(1, epochs + 1):
        rows.append({"epoch": epoch, "train_loss": 1.0 / epoch, "val_acc": metrics["val_acc"]})
        if len(rows) >= every:
            tune.report({**rows[-1], "history": rows})
            rows = []
    folder = Path(tempfile.mkdtemp())
    (folder / MODEL_FILE).write_bytes(json.dumps(config, sort_keys=True).encode())
    tune.report(metrics, checkpoint=tune.Checkpoint.from_directory(str(folder)))


class Completions(tune.Callback):
    def __init__(self) -> None:
        self.done: list[float] = []

    def on_trial_complete(self, iteration, trials, trial, **info) -> None:
        self.done.append(time.perf_counter())


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--trials", type=int, required=True)
    parser.add_argument("--concurrency", type=int, required=True)
    parser.add_argument("--storage", required=True)
    parser.add_argument("--out", required=True)
    args = parser.parse_args()
    space = load_space("cora_node")
    ray.init(log_to_driver=False)
    completions = Completions()
    tuner = tune.Tuner(
        tune.with_resources(instant_trial, {"cpu": 1}),
        tune_config=tune.TuneConfig(
            search_alg=OptunaSearch(space=space.define_by_run, metric=space.metrics,
                                    mode=space.modes,
                                    sampler=make_sampler(space.sampler, 0, args.trials)),
            num_samples=args.trials, max_concurrent_trials=args.concurrency,
            reuse_actors=True),  # as the service does (Tune's default, False: ~1 s per trial)
        run_config=tune.RunConfig(name="scale-plain", storage_path=args.storage, verbose=0,
                                  callbacks=[completions]),
    )
    started = time.perf_counter()
    results = tuner.fit()
    wall = time.perf_counter() - started
    finished = sum(r.error is None for r in results)
    Path(args.out).write_text(json.dumps({"wall_s": wall, "finished": finished,
                                          "done": completions.done}))
    ray.shutdown()


if __name__ == "__main__":
    main()
