"""The user's example (examples/custom_gnn) as its README walks through it: a package of its
own (a GraphSAGE, a graph read from two CSV files) that is not installed and not one of the
project's packages, searched through Ray with every pruning method (structured included),
QAT and Degree-Quant, then the Pareto front, export, and the exported file reloaded."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from mlflow.tracking import MlflowClient

from search import cluster
from tests import fault_helpers as fh
from trainables.pruning import PRUNERS

pytestmark = [pytest.mark.integration, pytest.mark.slow]

EXAMPLE = Path(__file__).resolve().parents[1] / "examples" / "custom_gnn"
TRIALS = 6  # the uncompressed model, then the space file's five warm-start points


def _env(data_root: Path, cache_dir: Path) -> dict[str, str]:
    """The user's shell: the example is not installed and not on PYTHONPATH."""
    env = fh.cli_env(data_root, cache_dir)
    env.pop("PYTHONPATH", None)
    return env


def _run(args: list[str], env: dict, timeout: int = 900) -> subprocess.CompletedProcess:
    """``gnn-search ARGS`` from the example's folder, as its README runs it."""
    return subprocess.run([sys.executable, "-m", "search.cli", *args], capture_output=True,
                          text=True, cwd=EXAMPLE, env=env, timeout=timeout)


@pytest.fixture(scope="module")
def searched(data_root, cache_dir, tmp_path_factory):
    tmp = tmp_path_factory.mktemp("example")
    root = tmp / "data"
    root.mkdir()
    shutil.copytree(data_root / "Cora", root / "Cora")
    made = subprocess.run([sys.executable, str(EXAMPLE / "make_csv.py"), "--data-root",
                           str(root)], capture_output=True, text=True, timeout=300)
    assert made.returncode == 0, made.stderr
    shutil.rmtree(root / "Cora")  # the search reads only the two CSV files
    # the example's space file, with a short baseline and fine-tuning for CI
    text = (EXAMPLE / "sage_csv.yaml").read_text()
    text = text.replace("baseline: {epochs: 100,", "baseline: {epochs: 30,")
    text = text.replace("finetune.epochs: {low: 5, high: 50, log: true, default: 20}",
                        "finetune.epochs: 2")
    assert "epochs: 30" in text and "finetune.epochs: 2\n" in text
    space = tmp / "sage_csv.yaml"
    space.write_text(text)
    uri = f"sqlite:///{tmp / 'mlflow.db'}"
    env = _env(root, cache_dir)
    proc = _run(["run", "--space", str(space), "--trials", str(TRIALS), "--concurrency", "2",
                 "--name", "custom", "--tracking-uri", uri, "--storage", str(tmp / "ray"),
                 *fh.FAST], env)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    return {"tmp": tmp, "uri": uri, "env": env, "stdout": proc.stdout}


def test_every_method_ran_on_the_users_model(searched):
    assert f"{TRIALS} trials finished, 0 failed" in searched["stdout"]
    client = MlflowClient(searched["uri"])
    experiment = client.get_experiment_by_name("custom")
    runs = client.search_runs([experiment.experiment_id])
    trials = [r for r in runs if r.data.tags.get("gnn_search.role") == "trial"]
    (parent,) = [r for r in runs if r.data.tags.get("gnn_search.role") == "search"]
    assert parent.data.params["model"] == "custom_gnn.models:SAGE"
    assert parent.data.metrics["baseline_val_acc"] > 0.6
    assert len(trials) == TRIALS and all(r.info.status == "FINISHED" for r in trials)
    assert {r.data.params["prune.method"] for r in trials} == set(PRUNERS)
    assert {"qat", "degree_quant", "fp32"} <= {r.data.params["quant.method"] for r in trials}
    (structured,) = [r for r in trials if r.data.params["prune.method"] == "structured"]
    assert structured.data.tags["structured_channels"].startswith("conv1=")
    for run in trials:
        assert run.data.metrics["size_bytes"] > 0 and run.data.metrics["latency_ms"] > 0


def test_front_export_and_reload(searched):
    tmp, uri, env = searched["tmp"], searched["uri"], searched["env"]
    proc = _run(["pareto", "--experiment", "custom", "--tracking-uri", uri, "--format",
                 "json"], env)
    assert proc.returncode == 0, proc.stderr
    front = json.loads(proc.stdout)
    (knee,) = [r for r in front if r["knee"]]
    out = tmp / "sage.gnnz"
    proc = _run(["export", "--run-id", knee["run_id"], "--out", str(out), "--tracking-uri",
                 uri], env)
    assert proc.returncode == 0, proc.stderr
    # the exported file names the user's class; loading it imports that class by name
    proc = subprocess.run(
        [sys.executable, "-c",
         "import sys, json; from trainables import load_compressed; "
         "m, meta = load_compressed(sys.argv[1]); "
         "print(json.dumps([type(m).__module__, type(m).__name__, meta['model']]))", str(out)],
        capture_output=True, text=True, cwd=EXAMPLE, env=env, timeout=300)
    assert proc.returncode == 0, proc.stderr
    module, name, spec = json.loads(proc.stdout)
    assert (module, name) == ("custom_gnn.models", "SAGE")
    assert spec == {"class": "custom_gnn.models:SAGE", "kwargs": {"hidden": 64, "dropout": 0.5}}
    # elsewhere, without the user's package, it fails in one line naming the class
    proc = subprocess.run([sys.executable, "-m", "search.cli", "infer", "--model", str(out)],
                          capture_output=True, text=True, cwd=tmp, env=env, timeout=300)
    assert proc.returncode == 2
    assert "custom_gnn" in proc.stderr and "Traceback" not in proc.stderr
    assert len(proc.stderr.strip().splitlines()) == 1, proc.stderr


def test_the_users_package_is_shipped_to_the_workers(monkeypatch):
    """Found from the space's import paths (a source folder, not installed): shipped as
    ``py_modules``; installed packages and the project's own are not."""
    monkeypatch.chdir(EXAMPLE)
    monkeypatch.syspath_prepend(str(EXAMPLE))
    paths = ["custom_gnn.models:SAGE", "custom_gnn.data:load_csv_graph",
             "torch_geometric.nn:GraphSAGE", "trainables.models:GCN"]
    assert cluster.user_code(paths, [], cluster=False) == [str(EXAMPLE / "custom_gnn")]
    assert cluster.user_code(paths, [str(EXAMPLE / "custom_gnn")], cluster=True) == [
        str(EXAMPLE / "custom_gnn")]
    env = cluster.runtime_env(cluster=False, user_code=[str(EXAMPLE / "custom_gnn")])
    assert env["py_modules"] == [str(EXAMPLE / "custom_gnn")]


def test_py_modules_refuses_what_ray_cannot_ship(tmp_path):
    (tmp_path / "notes.txt").write_text("x")
    for bad, why in ((tmp_path / "missing", "not found"),
                     (tmp_path / "notes.txt", "not .py or .whl")):
        with pytest.raises(ValueError, match=why):
            cluster.check_py_module(str(bad))
    assert cluster.check_py_module(str(EXAMPLE / "custom_gnn")) == str(EXAMPLE / "custom_gnn")
    relative = os.path.relpath(EXAMPLE / "make_csv.py")
    assert cluster.check_py_module(relative) == str(EXAMPLE / "make_csv.py")
