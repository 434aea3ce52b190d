"""A real search: Ray Tune + OptunaSearch + MLflow (SQLite) on real Cora, then everything a
user does with it: the Pareto front, the report (in a real browser), export, compare, and the
MLflow UI."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest
import torch
from mlflow.tracking import MlflowClient

from analysis.load import load_trials
from tests import browser
from trainables import load_compressed
from trainables.model_file import load_state
from trainables.pruning import PRUNERS

pytestmark = [pytest.mark.integration, pytest.mark.slow]


def _cli(args: list[str], cwd: Path, env: dict, timeout: int = 900):
    return subprocess.run([sys.executable, "-m", "search.cli", *args], capture_output=True,
                          text=True, cwd=cwd, env=env, timeout=timeout)


@pytest.fixture(scope="module")
def search(data_root, cache_dir, tmp_path_factory):
    """Two finished searches in one SQLite store: ``it`` (2 trials) and ``it2`` (1 trial)."""
    tmp = tmp_path_factory.mktemp("search")
    uri = f"sqlite:///{tmp / 'mlflow.db'}"
    env = {**os.environ, "GNN_SEARCH_DATA": str(data_root), "GNN_SEARCH_CACHE": str(cache_dir)}
    outputs = {}
    for name, trials, seed in (("it", 2, 1), ("it2", 1, 7)):
        proc = _cli(["run", "--trials", str(trials), "--concurrency", "2", "--name", name,
                     "--tracking-uri", uri, "--storage", str(tmp / "ray"), "--seed", str(seed),
                     "--energy-window", "0.3", "--quiet"], tmp, env)
        assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
        outputs[name] = proc.stdout
    return {"tmp": tmp, "uri": uri, "env": env, "stdout": outputs["it"],
            "client": MlflowClient(uri)}


def _children(search, name="it"):
    client = search["client"]
    experiment = client.get_experiment_by_name(name)
    runs = client.search_runs([experiment.experiment_id])
    return experiment, [r for r in runs if r.data.tags.get("gnn_search.role") == "search"], [
        r for r in runs if r.data.tags.get("gnn_search.role") == "trial"]


def test_search_is_tracked(search, cora_task):
    tmp, uri, client = search["tmp"], search["uri"], search["client"]
    assert "2 trials finished, 0 failed" in search["stdout"]
    # the bundled space searches on the deployed model's latency too
    assert ("Pareto-optimal configurations (val_acc:max, size_bytes:min, latency_ms:min)"
            in search["stdout"])
    assert f"mlflow ui --backend-store-uri {uri}" in search["stdout"]
    _, parents, children = _children(search)
    assert len(parents) == 1 and len(children) == 2
    parent = parents[0]
    assert parent.info.status == "FINISHED"
    assert parent.data.metrics["trials_completed"] == 2
    assert parent.data.metrics["baseline_val_acc"] > 0.85
    assert parent.data.params["objectives"] == "val_acc:max,size_bytes:min,latency_ms:min"
    for child in children:
        assert child.info.status == "FINISHED"
        assert child.data.tags["mlflow.parentRunId"] == parent.info.run_id
        params, metrics = child.data.params, child.data.metrics
        assert params["prune.method"] in PRUNERS
        assert {"quant.method", "finetune.epochs", "finetune.lr", "finetune.schedule"} <= set(
            params)
        for key in ("val_acc", "test_acc", "size_bytes", "size_ratio", "latency_ms",
                    "sparsity_actual"):
            assert key in metrics, key
        history = client.get_metric_history(child.info.run_id, "train_loss")
        assert len(history) == int(params["finetune.epochs"])
        assert [h.step for h in history] == list(range(1, len(history) + 1))
        assert child.data.tags["latency_kernel"].startswith("conv1:")
        assert child.data.tags["latency_threads"] == "1", "Ray trials run single-threaded"
        assert child.data.tags["energy_source"] and metrics["energy_mj"] > 0
        assert metrics["trial_energy_j"] > 0 and metrics["cpu_percent"] > 0
        # the artifact is the compressed model that was measured, and it reloads exactly
        local = client.download_artifacts(child.info.run_id, "model/model.gnnz", str(tmp))
        assert os.path.getsize(local) == metrics["size_bytes"]
        model, meta = load_compressed(local)
        assert meta["config"]["prune.method"] == params["prune.method"]
        assert cora_task.evaluate(model)["val_acc"] == pytest.approx(metrics["val_acc"])
        state, _ = load_state(local)
        assert all(torch.equal(state[k], v) for k, v in model.state_dict().items())
    trials = load_trials(["it"], uri)
    assert len(trials.frame) == 2 and trials.excluded == {}


def test_pareto_command(search):
    tmp, uri, env = search["tmp"], search["uri"], search["env"]
    proc = _cli(["pareto", "--experiment", "it", "--tracking-uri", uri, "--format", "json",
                 "--out", str(tmp / "front.csv")], tmp, env)
    assert proc.returncode == 0, proc.stderr
    front = json.loads(proc.stdout)
    _, _, children = _children(search)
    assert 1 <= len(front) <= 2 and sum(r["knee"] for r in front) == 1
    assert {r["run_id"] for r in front} <= {c.info.run_id for c in children}
    assert (tmp / "front.csv").read_text().startswith("knee,run_id,search,val_acc,size_bytes")
    table = _cli(["pareto", "--experiment", "it", "--experiment", "it2", "--tracking-uri", uri,
                  "--constraint", "val_acc>=0.5"], tmp, env)
    assert table.returncode == 0 and "hypervolume" in table.stderr
    assert "3 finished" in table.stderr, "two experiments merged"


@pytest.mark.parametrize(("args", "message"), [
    (["pareto", "--experiment", "nope"], "unknown experiment 'nope'"),
    (["pareto", "--experiment", "it", "--objectives", "flops:min"], "unknown metric 'flops'"),
    (["pareto", "--experiment", "it", "--objectives", "val_acc:up"], "bad objective"),
    (["pareto", "--experiment", "it", "--constraint", "val_acc=>1"], "malformed constraint"),
    (["report", "--experiment", "nope", "--out", "r"], "unknown experiment 'nope'"),
    (["export", "--run-id", "0123abc", "--out", "m.gnnz"], "unknown run id '0123abc'"),
    (["compare", "--experiments", "it"], "--experiments needs at least two names"),
    (["run", "--trials", "1", "--name", "it"], "already exists"),
])
def test_bad_input_is_one_line(search, args, message):
    tmp, uri, env = search["tmp"], search["uri"], search["env"]
    extra = ["--tracking-uri", uri] + (["--storage", str(tmp / "ray")] if args[0] == "run"
                                      else [])
    runs_before = len(search["client"].search_runs(
        [e.experiment_id for e in search["client"].search_experiments()]))
    proc = _cli([*args, *extra], tmp, env, timeout=300)
    assert proc.returncode == 2, proc.stdout + proc.stderr
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and message in lines[0], proc.stderr
    runs_after = len(search["client"].search_runs(
        [e.experiment_id for e in search["client"].search_experiments()]))
    assert runs_after == runs_before, "nothing recorded is lost or added"


def test_no_finished_trials_is_one_line(search):
    client, tmp, env, uri = search["client"], search["tmp"], search["env"], search["uri"]
    experiment_id = client.create_experiment("empty")
    run = client.create_run(experiment_id, tags={"gnn_search.role": "trial"})  # never finished
    proc = _cli(["pareto", "--experiment", "empty", "--tracking-uri", uri], tmp, env)
    assert proc.returncode == 2
    assert "no finished trials in empty (left out: {'RUNNING': 1})" in proc.stderr
    client.delete_run(run.info.run_id)


def test_report_in_a_real_browser(search):
    tmp, uri, env = search["tmp"], search["uri"], search["env"]
    out = tmp / "report"
    proc = _cli(["report", "--experiment", "it", "--out", str(out), "--tracking-uri", uri],
                tmp, env)
    assert proc.returncode == 0, proc.stderr
    page = (out / "index.html").read_text()
    for needle in ("pareto-interactive", "parallel-coordinates", "Against the FP32 baseline",
                   "Pareto-optimal configurations", "data:image/png;base64"):
        assert needle in page, needle
    assert "http://" not in page.split("<body>")[1][:2000], "self-contained"
    assert (out / "pareto_val_acc_vs_size_bytes.png").stat().st_size > 5000
    # logged as an artifact of the search's parent run
    _, parents, _ = _children(search)
    logged = [a.path for a in search["client"].list_artifacts(parents[0].info.run_id, "report")]
    assert "report/index.html" in logged
    # a real browser renders the Pareto plot without console errors
    dom, console = browser.run((out / "index.html").as_uri(), "--virtual-time-budget=8000",
                               "--dump-dom")
    assert console == [], console
    assert 'id="pareto-interactive"' in dom and "main-svg" in dom, "plotly drew the front"
    shot = tmp / "report.png"
    browser.run((out / "index.html").as_uri(), "--virtual-time-budget=8000",
                "--window-size=1200,1600", f"--screenshot={shot}")
    assert shot.stat().st_size > 20_000


def test_export_reproduces_the_trial(search, cora_task):
    tmp, uri, env = search["tmp"], search["uri"], search["env"]
    _, _, children = _children(search)
    child = children[0]
    out = tmp / "exported" / "model.gnnz"
    out.parent.mkdir()  # --out's folder must exist (it is never created)
    proc = _cli(["export", "--run-id", child.info.run_id, "--out", str(out), "--tracking-uri",
                 uri], tmp, env)
    assert proc.returncode == 0, proc.stderr
    sidecar = json.loads((out.parent / "model.gnnz.json").read_text())
    assert sidecar["run_id"] == child.info.run_id
    assert sidecar["config"]["prune.method"] == child.data.params["prune.method"]
    model, _ = load_compressed(out)
    scores = cora_task.evaluate(model)
    assert scores["val_acc"] == pytest.approx(child.data.metrics["val_acc"])
    assert scores["test_acc"] == pytest.approx(child.data.metrics["test_acc"])


def test_compare_command(search):
    tmp, uri, env = search["tmp"], search["uri"], search["env"]
    proc = _cli(["compare", "--experiments", "it", "it2", "--tracking-uri", uri, "--format",
                 "json"], tmp, env)
    assert proc.returncode == 0, proc.stderr
    rows = {r["experiment"]: r for r in json.loads(proc.stdout)}
    assert set(rows) == {"it", "it2"} and rows["it"]["trials"] == 2
    assert 0.0 <= rows["it"]["covers it2"] <= 1.0 and rows["it"]["hypervolume"] > 0


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_mlflow_ui_shows_the_search(search):
    tmp, uri = search["tmp"], search["uri"]
    port = _free_port()
    env = {**search["env"], "MLFLOW_SERVER_ENABLE_JOB_EXECUTION": "false"}
    server = subprocess.Popen(
        [sys.executable, "-m", "mlflow", "server", "--backend-store-uri", uri,
         "--default-artifact-root", str(tmp / "mlartifacts"), "--host", "127.0.0.1",
         "--port", str(port), "--workers", "1"],
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, env=env, cwd=tmp,
        start_new_session=True)  # its uvicorn worker goes down with it (killpg below)
    base = f"http://127.0.0.1:{port}"
    try:
        deadline = time.time() + 180  # a first start migrates the SQLite schema; slow when busy
        while True:
            try:
                with urllib.request.urlopen(f"{base}/health", timeout=2) as r:
                    if r.read().decode().strip() == "OK":
                        break
            except OSError:
                if time.time() > deadline:
                    pytest.fail("mlflow server did not answer /health within 180 s")
                time.sleep(0.5)
        with urllib.request.urlopen(
                f"{base}/api/2.0/mlflow/experiments/get-by-name?experiment_name=it") as r:
            experiment_id = json.load(r)["experiment"]["experiment_id"]
        request = urllib.request.Request(
            f"{base}/api/2.0/mlflow/runs/search", method="POST",
            headers={"Content-Type": "application/json"},
            data=json.dumps({"experiment_ids": [experiment_id],
                             "filter": "tags.`gnn_search.role` = 'trial'"}).encode())
        with urllib.request.urlopen(request) as r:
            runs = json.load(r)["runs"]
        assert len(runs) == 2
        for run in runs:
            params = {p["key"] for p in run["data"]["params"]}
            metrics = {m["key"] for m in run["data"]["metrics"]}
            tags = {t["key"]: t["value"] for t in run["data"]["tags"]}
            assert {"prune.method", "quant.method", "finetune.epochs"} <= params
            assert {"val_acc", "size_bytes", "latency_ms", "train_loss"} <= metrics
            assert "mlflow.parentRunId" in tags
        shot = tmp / "mlflow_ui.png"
        browser.run(f"{base}/#/experiments/{experiment_id}/runs", "--virtual-time-budget=15000",
                    "--window-size=1400,900", f"--screenshot={shot}")
        assert shot.stat().st_size > 20_000
    finally:
        os.killpg(server.pid, signal.SIGTERM)
        server.wait(timeout=30)
