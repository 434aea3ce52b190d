"""Shared by the cluster, fault and bad-input tests: a small fast space, the CLI as a real
process, a real MLflow tracking server, and ways to watch a search from outside."""

from __future__ import annotations

import os
import signal
import sqlite3
import subprocess
import sys
import time
import urllib.request
from collections.abc import Callable
from pathlib import Path

from mlflow.entities import Run
from mlflow.tracking import MlflowClient

REPO = Path(__file__).resolve().parents[1]

# GCN on Cora: a 30-epoch baseline, trials of a few seconds.
SPACE = """\
task: node_classification
dataset: {loader: planetoid, name: Cora, split: random, num_val: 500, num_test: 500}
model: {name: gcn, kwargs: {hidden: 16}}
baseline: {epochs: 30, lr: 0.01, weight_decay: 5.0e-4, seed: 0}
objectives: {val_acc: max, size_bytes: min}
space:
  prune.method: [global, none]
  prune.sparsity: {low: 0.3, high: 0.9}
  quant.method: [fp32, qat]
  quant.bits: [8]
  finetune.epochs: EPOCHS
  finetune.lr: {low: 1.0e-3, high: 1.0e-2, log: true}
"""
FAST = ["--energy-window", "0", "--latency-threads", "1", "--quiet"]


def write_space(folder: Path, epochs: str = "{low: 2, high: 4}", extra: str = "") -> Path:
    path = folder / "space.yaml"
    path.write_text(SPACE.replace("EPOCHS", epochs) + extra)
    return path


def cli_env(data_root: Path, cache_dir: Path, extra: dict[str, str] | None = None) -> dict:
    return {**os.environ, "GNN_SEARCH_DATA": str(data_root), "GNN_SEARCH_CACHE": str(cache_dir),
            **(extra or {})}


def cli(args: list[str], cwd: Path, env: dict, timeout: int = 600) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "search.cli", *args], capture_output=True,
                          text=True, cwd=cwd, env=env, timeout=timeout)


def cli_popen(args: list[str], cwd: Path, env: dict, log: Path, **kwargs) -> subprocess.Popen:
    return subprocess.Popen([sys.executable, "-m", "search.cli", *args], cwd=cwd, env=env,
                            stdout=log.open("w"), stderr=subprocess.STDOUT, **kwargs)


def wait_until(predicate: Callable[[], bool], timeout: float, what: str,
               proc: subprocess.Popen | None = None, log: Path | None = None) -> None:
    deadline = time.time() + timeout
    while not predicate():
        if proc is not None and proc.poll() is not None:
            raise AssertionError(f"process ended (rc {proc.returncode}) before {what}:\n"
                                 + (log.read_text()[-4000:] if log else ""))
        if time.time() > deadline:
            raise AssertionError(f"timed out waiting for {what}:\n"
                                 + (log.read_text()[-4000:] if log else ""))
        time.sleep(0.25)


def sqlite_trial_runs(db: Path, name: str) -> list[tuple[str, str, int]]:
    """(run id, status, number of metric rows) of a search's active trial runs, read
    straight from the SQLite file while a search writes to it."""
    if not db.exists():
        return []
    try:
        con = sqlite3.connect(f"file:{db}?mode=ro", uri=True, timeout=1)
        try:
            return con.execute(
                "select r.run_uuid, r.status, (select count(*) from metrics m "
                "where m.run_uuid = r.run_uuid) from runs r "
                "join tags role on role.run_uuid = r.run_uuid and role.key = 'gnn_search.role' "
                "join tags s on s.run_uuid = r.run_uuid and s.key = 'gnn_search.search' "
                "where role.value = 'trial' and s.value = ? and r.lifecycle_stage = 'active'",
                (name,)).fetchall()
        finally:
            con.close()
    except sqlite3.Error:
        return []


def trial_runs(tracking_uri: str, name: str) -> list[Run]:
    client = MlflowClient(tracking_uri)
    experiment = client.get_experiment_by_name(name)
    if experiment is None:
        return []
    return client.search_runs([experiment.experiment_id],
                              filter_string="tags.`gnn_search.role` = 'trial'")


def parent_run(tracking_uri: str, name: str) -> Run:
    client = MlflowClient(tracking_uri)
    experiment = client.get_experiment_by_name(name)
    runs = client.search_runs([experiment.experiment_id],
                              filter_string="tags.`gnn_search.role` = 'search'")
    assert len(runs) == 1, runs
    return runs[0]


def saved_studies(experiment: Path) -> list:
    """The Optuna study each driver session saved in Tune's storage, oldest first."""
    from ray.tune.search.optuna import OptunaSearch

    studies = []
    for path in sorted(experiment.glob("searcher-state-*.pkl")):
        searcher = OptunaSearch()
        searcher.restore(str(path))
        studies.append(searcher._ot_study)
    return studies


def healthy(url: str) -> bool:
    try:
        with urllib.request.urlopen(f"{url}/health", timeout=2) as response:
            return response.read().decode().strip() == "OK"
    except OSError:
        return False


class MlflowServer:
    """``gnn-search mlflow-server`` as a real process group (the server and its worker)."""

    def __init__(self, folder: Path, port: int, env: dict) -> None:
        self.folder, self.port, self.env = folder, port, env
        self.url = f"http://127.0.0.1:{port}"
        self.proc: subprocess.Popen | None = None

    def start(self, timeout: float = 240) -> None:
        self.proc = cli_popen(
            ["mlflow-server", "--port", str(self.port), "--backend-store-uri",
             f"sqlite:///{self.folder / 'mlflow.db'}", "--artifacts-destination",
             str(self.folder / "artifacts")],
            self.folder, self.env, self.folder / "server.log", start_new_session=True)
        try:
            wait_until(lambda: healthy(self.url), timeout, "the MLflow server", self.proc,
                       self.folder / "server.log")
        except AssertionError:
            self.kill()  # never leave a half-started server behind
            raise

    def kill(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            os.killpg(self.proc.pid, signal.SIGKILL)
            self.proc.wait(timeout=30)
        self.proc = None
