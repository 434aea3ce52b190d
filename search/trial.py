"""The trial as Ray runs it: one compress-and-fine-tune cycle reporting to Tune.

Kept apart from the driver's modules so that a worker imports Ray Tune and the trial's code,
not MLflow, Optuna or the space loader: every worker process pays its imports once, on
every node.
"""

from __future__ import annotations

import json
import logging
import shutil
import tempfile
import time
from pathlib import Path
from typing import Any

import ray
from ray import tune

from trainables.baseline import Baseline
from trainables.cycle import run_cycle
from trainables.errors import first_line
from trainables.measure import MeasureSettings

ERROR_KEY = "gnn_search_error"  # a trial's failure message, reported just before it raises
RECORD_FILE = "trial.json"  # beside a finished trial's model: config, metrics, tags, history


class EpochReporter:
    """Sends per-epoch metrics to Tune every ``every`` epochs, each report carrying the
    epochs since the last one under ``history`` (every epoch reaches MLflow; a report is a
    round trip to the driver, ~2 ms). Keeps every epoch for the trial's record, and fails
    the trial once fine-tuning has run longer than ``timeout_s``."""

    def __init__(self, every: int, timeout_s: float | None = None) -> None:
        self.every, self.rows, self.history = every, [], []
        self.timeout_s, self.started = timeout_s, time.monotonic()

    def __call__(self, metrics: dict[str, Any]) -> None:
        self.rows.append(metrics)
        self.history.append(metrics)
        if len(self.rows) >= self.every:
            self.flush()
        elapsed = time.monotonic() - self.started
        if self.timeout_s is not None and elapsed > self.timeout_s:
            raise TimeoutError(f"trial exceeded --trial-timeout {self.timeout_s:g} s "
                               f"({elapsed:.1f} s, at epoch {metrics.get('epoch', '?')})")

    def flush(self) -> None:
        if self.rows:
            tune.report({**self.rows[-1], "history": self.rows})
            self.rows = []


REPORTS_PER_TRIAL = 10  # intermediate reports when nothing needs every epoch


def _where() -> dict[str, str]:
    """Where a trial runs: Ray node, host, and the folder its code was imported from (the
    cluster's copy of the runtime environment's working_dir)."""
    return {"gnn_search.node_id": ray.get_runtime_context().get_node_id(),
            "gnn_search.node_ip": ray.util.get_node_ip_address(),
            "gnn_search.code_dir": str(Path(run_cycle.__code__.co_filename).parents[1])}


def trial_fn(
    config: dict[str, Any], task, baseline: Baseline, seed: int,
    measure_settings: MeasureSettings, every_epoch: bool = False,
    timeout_s: float | None = None, device: str = "cpu",
) -> None:
    """Ray Tune function trainable: one compress-and-fine-tune cycle, on ``device`` (``cuda``:
    the GPU Ray reserved for the trial, made visible to it as device 0).

    The final report carries the model and a record (config, metrics, tags, every epoch) as
    its checkpoint. A trial restored with that checkpoint (the driver died after it finished)
    reports the record again instead of running again. A failure in the cycle is reported
    (``ERROR_KEY``) before it is raised, so the driver records the message and does not
    retry it: it would fail the same way.
    """
    logging.getLogger("ray.train").setLevel(logging.WARNING)  # no line per checkpoint
    restored = tune.get_checkpoint()
    if restored is not None:
        with restored.as_directory() as folder:
            path = Path(folder) / RECORD_FILE
            record = json.loads(path.read_text()) if path.is_file() else {}
        if record.get("trial_id") == tune.get_context().get_trial_id():
            tune.report({**record["metrics"], "tags": record["tags"]})
            return
    config = {k: v for k, v in config.items() if v is not None}  # grid points: unset keys
    out_dir = Path(tempfile.mkdtemp(prefix="gnn-trial-"))
    epochs = int(config.get("finetune.epochs", 0))
    reporter = EpochReporter(1 if every_epoch else max(1, epochs // REPORTS_PER_TRIAL), timeout_s)
    where = _where()
    try:
        try:
            result = run_cycle(
                config, task, baseline, report=reporter, out_dir=out_dir, seed=seed,
                measure_settings=measure_settings, device=device,
            )
        except Exception as err:
            message = first_line(err, with_type=True, limit=2000)
            tune.report({ERROR_KEY: message, "tags": where})
            raise
        reporter.flush()
        tags = {**result.tags, **where}
        record = {"trial_id": tune.get_context().get_trial_id(), "config": config,
                  "metrics": result.metrics, "tags": tags, "history": reporter.history}
        (out_dir / RECORD_FILE).write_text(json.dumps(record))
        tune.report(
            {**result.metrics, "tags": tags},
            checkpoint=tune.Checkpoint.from_directory(str(out_dir)),
        )
    finally:
        shutil.rmtree(out_dir, ignore_errors=True)
