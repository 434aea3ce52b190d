"""Shared fixtures: the real Cora graph from a writable copy of the raw files, a baseline."""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import pytest

from analysis.env import bypass_proxy_for_loopback

REPO = Path(__file__).resolve().parents[1]
IN_CI = os.environ.get("CI", "").lower() == "true"
# Test code talks to MLflow servers on 127.0.0.1 too (urllib, MlflowClient), as the CLI does.
bypass_proxy_for_loopback(os.environ)


def _shared_datasets() -> Path | None:
    for candidate in (os.environ.get("SHARED_DATASETS"), REPO.parent / "shared" / "datasets"):
        if candidate and Path(candidate).is_dir():
            return Path(candidate)
    return None


@pytest.fixture(scope="session")
def data_root(tmp_path_factory) -> Path:
    """A writable data root holding Cora's raw files (never the read-only shared folder)."""
    env = os.environ.get("GNN_SEARCH_DATA")
    if env and (Path(env) / "Cora" / "raw").is_dir():
        return Path(env)
    shared = _shared_datasets()
    if shared is None:
        message = "raw datasets not found: set GNN_SEARCH_DATA or SHARED_DATASETS"
        if IN_CI:
            pytest.fail(message)
        pytest.skip(message)
    root = tmp_path_factory.mktemp("datasets")
    shutil.copytree(shared, root, dirs_exist_ok=True)
    return root


@pytest.fixture(scope="session")
def cache_dir(tmp_path_factory) -> Path:
    return Path(os.environ.get("GNN_SEARCH_CACHE") or tmp_path_factory.mktemp("cache"))


def fast_measure():
    """Minimal measurement for tests that do not test measurement."""
    from trainables.measure import MeasureSettings

    return MeasureSettings(warmup=0, min_repeats=1, max_repeats=1, energy_window_s=0)


CORA = {"loader": "planetoid", "name": "Cora", "split": "random", "num_val": 500, "num_test": 500}
SPLINE = {"name": "spline", "kwargs": {"hidden": 16, "kernel_size": 2, "dropout": 0.5}}


@pytest.fixture(scope="session")
def cora_task(data_root):
    from trainables.tasks import build_task

    return build_task("node_classification", CORA, data_root, seed=0)


@pytest.fixture(scope="session")
def cora_baseline(cora_task, cache_dir):
    """A short-trained SplineConv baseline (60 epochs: enough to be far above chance)."""
    from trainables.baseline import get_baseline

    training = {"epochs": 60, "lr": 0.01, "weight_decay": 5e-3}
    baseline, _ = get_baseline(cora_task, "node_classification", CORA, SPLINE, training, 0,
                               cache_dir, progress=False)
    return baseline
