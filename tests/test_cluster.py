"""Running on a Ray cluster: ``ray_cluster.yaml`` passes Ray's own validation, and a real
two-node cluster on 127.0.0.1 (``ray start --head`` + ``ray start --address``) runs a search
whose trials land on both nodes, keeps to loopback and token authentication, and survives
losing its worker node in the middle of a trial."""

from __future__ import annotations

import ipaddress
import json
import re
from pathlib import Path

import psutil
import pytest
import yaml
from mlflow.tracking import MlflowClient

from tests import fault_helpers as fh
from tests.ray_loopback import LoopbackCluster

REPO = Path(__file__).resolve().parents[1]


def _variant(text: str, keep: str, drop: str) -> dict:
    """The cluster file as a user would edit it: delete one marked block, uncomment the
    other."""
    lines, out, state = text.splitlines(), [], None
    for line in lines:
        marker = re.match(r"# (>>>|<<<) (cloud|on-prem)", line)
        if marker:
            state = marker.group(2) if marker.group(1) == ">>>" else None
            continue
        if state == drop:
            continue
        if state == keep == "on-prem" and line.startswith("# "):  # written commented out
            line = line[2:]
        out.append(line)
    return yaml.safe_load("\n".join(out))


@pytest.mark.parametrize("variant", ["cloud", "on-prem"])
def test_cluster_file_passes_ray_validation(variant):
    from ray.autoscaler._private.util import prepare_config, validate_config

    text = (REPO / "ray_cluster.yaml").read_text()
    config = _variant(text, keep=variant, drop="on-prem" if variant == "cloud" else "cloud")
    assert config["provider"]["type"] == ("gcp" if variant == "cloud" else "local")
    prepared = prepare_config(config)  # what `ray up` does before validating
    validate_config(prepared)
    # installs the project as the README does, and keeps token auth on every node
    assert any("make -C ~/gnn-search venv" in c for c in prepared["setup_commands"])
    assert prepared["file_mounts"]["~/.ray/auth_token"] == "~/.ray/auth_token"
    for key in ("head_start_ray_commands", "worker_start_ray_commands"):
        assert any("RAY_AUTH_MODE=token" in c for c in prepared[key]), key
    head = " ".join(prepared["head_start_ray_commands"])
    assert "--dashboard-host=127.0.0.1" in head and "0.0.0.0" not in head



def _with_gpu_worker(text: str) -> str:
    """The cluster file with its commented GPU worker type uncommented."""
    out, inside = [], False
    for line in text.splitlines():
        marker = re.match(r"\s*# (>>>|<<<) gpu", line)
        if marker:
            inside = marker.group(1) == ">>>"
            continue
        if inside:
            line = re.sub(r"^(\s*)# ?", r"\1", line)
        out.append(line)
    return "\n".join(out)


def test_cluster_file_gpu_worker_passes_ray_validation():
    from ray.autoscaler._private.util import prepare_config, validate_config

    text = _with_gpu_worker((REPO / "ray_cluster.yaml").read_text())
    config = _variant(text, keep="cloud", drop="on-prem")
    prepared = prepare_config(config)
    validate_config(prepared)
    gpu = prepared["available_node_types"]["gpu_worker"]
    assert gpu["resources"]["GPU"] >= 1 and gpu["min_workers"] >= 1  # up when a search starts
    # its own install: torch's CUDA build (no CPU index), Ray's job API, the venv on PATH
    setup = " ".join(gpu["worker_setup_commands"])
    assert "make -C ~/gnn-search venv" in setup and "whl/cpu" not in setup
    assert "ray[default]==2.60.0" in setup and ".venv/bin:$PATH" in setup


def test_a_worker_imports_neither_mlflow_nor_optuna():
    """Trials run ``search.trial.trial_fn``: a worker process on any node imports Ray Tune and
    the trial's code, not the driver's MLflow, Optuna or space loader (seconds per worker)."""
    import subprocess
    import sys

    code = ("import sys, search.trial; print(sorted(m for m in ('mlflow', 'optuna', 'spaces', "
            "'search.tracking', 'search.run') if m in sys.modules))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         cwd=REPO, check=True).stdout
    assert out.strip() == "[]", out


class _NoBind:
    """Stands in for the port probe: tests never open a socket beyond loopback."""

    def __init__(self, *args):
        pass

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        return False

    def setsockopt(self, *args):
        pass

    def bind(self, address):
        pass


@pytest.mark.parametrize("host", ["127.0.0.1", "0.0.0.0"])
def test_mlflow_server_is_loopback_unless_opened(host, tmp_path, monkeypatch, capsys):
    """``gnn-search mlflow-server`` execs a lean server on 127.0.0.1; ``--host`` opens it
    only when asked, with a warning, and passes --allowed-hosts on."""
    from search import cluster as cl
    from search.cli import main

    started = {}
    monkeypatch.setattr(cl.socket, "socket", _NoBind)
    monkeypatch.setattr(cl.os, "execve", lambda path, argv, env: started.update(argv=argv,
                                                                                env=env))
    monkeypatch.chdir(tmp_path)
    args = ["mlflow-server", "--port", "5123", "--host", host]
    if host != "127.0.0.1":
        args += ["--allowed-hosts", "mlflow.lan:5123"]
    assert main(args) == 0
    argv, err = started["argv"], capsys.readouterr().err
    assert argv[argv.index("--host") + 1] == host and argv[argv.index("--port") + 1] == "5123"
    assert argv[argv.index("--backend-store-uri") + 1] == f"sqlite:///{tmp_path / 'mlflow.db'}"
    assert argv[argv.index("--workers") + 1] == "1"
    assert started["env"]["MLFLOW_SERVER_ENABLE_JOB_EXECUTION"] == "false"
    if host == "127.0.0.1":
        assert "warning" not in err and "--allowed-hosts" not in argv
    else:
        assert "warning: MLflow listens on 0.0.0.0:5123" in err
        assert argv[argv.index("--allowed-hosts") + 1] == "mlflow.lan:5123"


@pytest.fixture(scope="module")
def cluster():
    nodes = LoopbackCluster(cpus_per_node=1)
    try:
        nodes.start_head()
        nodes.start_worker()
        nodes.wait_for_cpus(2)
        yield nodes
    finally:
        nodes.stop()
    assert nodes.processes() == [], "both nodes are gone after the tests"


def _loopback(address: str) -> bool:
    return ipaddress.ip_address(address.removeprefix("::ffff:")).is_loopback


def _refused_run(cluster, tmp_path, env: dict, name: str, concurrency: str):
    """A search on the test cluster that must be refused (exit code 2) before it starts."""
    space = fh.write_space(tmp_path)
    proc = fh.cli(["run", "--space", str(space), "--trials", "4", "--concurrency", concurrency,
                   "--name", name, "--address", cluster.address,
                   "--storage", str(tmp_path / "ray"),
                   "--tracking-uri", f"sqlite:///{tmp_path / 'mlflow.db'}", *fh.FAST],
                  tmp_path, env, timeout=300)
    assert proc.returncode == 2, proc.stderr[-3000:]
    return proc


@pytest.mark.integration
@pytest.mark.slow
def test_cluster_is_loopback_only_with_token_auth(cluster, tmp_path, data_root, cache_dir):
    listening = [(p.name(), c.laddr) for p in cluster.processes()
                 for c in p.net_connections(kind="inet") if c.status == psutil.CONN_LISTEN]
    assert listening, "the cluster listens somewhere"
    assert all(_loopback(addr.ip) for _, addr in listening), listening
    # a driver without the cluster's token is refused, in one line, before anything runs
    env = fh.cli_env(data_root, cache_dir,
                     {**cluster.env, "RAY_AUTH_TOKEN_PATH": str(tmp_path / "no-token")})
    proc = _refused_run(cluster, tmp_path, env, "no-token", "1")
    assert proc.stderr.strip().splitlines()[-1] == (
        f"gnn-search run: error: the Ray cluster at {cluster.address} refused this driver's "
        "token; use the cluster's token (~/.ray/auth_token, RAY_AUTH_TOKEN_PATH or "
        "RAY_AUTH_TOKEN; README, 'Security')")
    assert fh.trial_runs(f"sqlite:///{tmp_path / 'mlflow.db'}", "no-token") == []


@pytest.mark.integration
@pytest.mark.slow
def test_concurrency_above_cluster_cpus_is_refused_first(cluster, tmp_path, cache_dir):
    """The cluster's CPUs are checked before any data or baseline work: with a data root
    that holds no dataset, the error is still about --concurrency."""
    empty = tmp_path / "no-data"
    empty.mkdir()
    proc = _refused_run(cluster, tmp_path, fh.cli_env(empty, cache_dir, cluster.env),
                        "too-wide", "3")
    assert proc.stderr.strip().splitlines() == [
        "gnn-search run: error: --concurrency 3 exceeds the cluster's 2 CPUs (each trial "
        "needs at least one); allowed: 1..2"]
    assert not (tmp_path / "ray" / "too-wide").exists()
    assert fh.trial_runs(f"sqlite:///{tmp_path / 'mlflow.db'}", "too-wide") == []


@pytest.mark.integration
@pytest.mark.slow
def test_gpus_per_trial_on_a_cluster_without_gpus_is_refused_first(cluster, tmp_path,
                                                                   data_root, cache_dir):
    """--gpus-per-trial is checked against the cluster's nodes before anything is written:
    no Tune storage, no tracking database."""
    space = fh.write_space(tmp_path)
    proc = fh.cli(["run", "--space", str(space), "--trials", "4", "--gpus-per-trial", "0.25",
                   "--name", "no-gpu", "--address", cluster.address,
                   "--storage", str(tmp_path / "ray"),
                   "--tracking-uri", f"sqlite:///{tmp_path / 'mlflow.db'}", *fh.FAST],
                  tmp_path, fh.cli_env(data_root, cache_dir, cluster.env), timeout=300)
    assert proc.returncode == 2, proc.stderr[-3000:]
    assert proc.stderr.strip().splitlines() == [
        f"gnn-search run: error: --gpus-per-trial 0.25: the Ray cluster at {cluster.address} "
        "has no GPUs; leave out --gpus-per-trial (trials run on CPUs), or run where GPU nodes "
        "are (ray_cluster.yaml: gpu_worker; README, 'GPUs')"]
    assert not (tmp_path / "ray").exists() and not (tmp_path / "mlflow.db").exists()


@pytest.mark.integration
@pytest.mark.slow
def test_search_runs_on_both_nodes(cluster, tmp_path, data_root, cache_dir):
    # trials of a few seconds: longer than starting a worker, so both nodes get one
    space = fh.write_space(tmp_path, epochs="{low: 120, high: 160}")
    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    # --address auto finds the cluster from RAY_ADDRESS, as inside `ray job submit`
    secret = "mlflow-token-that-must-not-be-logged"
    env = fh.cli_env(data_root, cache_dir, {**cluster.env, "RAY_ADDRESS": cluster.address,
                                            "MLFLOW_TRACKING_TOKEN": secret})
    proc = fh.cli(["run", "--space", str(space), "--trials", "4", "--concurrency", "2",
                   "--name", "both", "--address", "auto", "--storage", str(tmp_path / "ray"),
                   "--tracking-uri", uri, *fh.FAST], tmp_path, env)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    assert "4 trials finished, 0 failed" in proc.stdout
    # it says which cluster auto found, in one line
    assert (f"joined the Ray cluster at {cluster.address} (--address auto): 2 nodes, 2 CPUs"
            in proc.stderr.splitlines()), proc.stderr[-3000:]
    runs = fh.trial_runs(uri, "both")
    assert len(runs) == 4 and {r.info.status for r in runs} == {"FINISHED"}
    nodes = {r.data.tags["gnn_search.node_id"] for r in runs}
    assert nodes == {cluster.node_id("head"), cluster.node_id("worker")}, nodes
    for run in runs:  # the code came through the runtime environment, not this checkout
        code_dir = run.data.tags["gnn_search.code_dir"]
        assert "working_dir_files" in code_dir and str(cluster.root) in code_dir, code_dir
        assert run.data.tags["gnn_search.node_ip"] == "127.0.0.1"
    # no credential is logged or saved: not Ray's token, not MLflow's
    ray_token = cluster.token_path.read_text().strip()
    saved = (tmp_path / "ray" / "both" / "gnn_search.json").read_text()
    assert json.loads(saved)["trials"] == 4
    logged = [*runs, fh.parent_run(uri, "both")]
    for text in [saved, *(f"{r.data.params} {r.data.tags}" for r in logged)]:
        assert ray_token not in text and secret not in text


@pytest.mark.integration
@pytest.mark.slow
def test_worker_node_dies_mid_trial(cluster, tmp_path, data_root, cache_dir):
    """SIGKILL every process of the worker node while both nodes run a trial: Tune retries
    the lost trial (FailureConfig) on the head node and the search completes."""
    space = fh.write_space(tmp_path, epochs="{low: 120, high: 160}")  # trials of ~6 s
    db = tmp_path / "mlflow.db"
    env = fh.cli_env(data_root, cache_dir, cluster.env)
    log = tmp_path / "search.log"
    proc = fh.cli_popen(["run", "--space", str(space), "--trials", "3", "--concurrency", "2",
                         "--name", "lost-node", "--address", cluster.address,
                         "--storage", str(tmp_path / "ray"), "--tracking-uri",
                         f"sqlite:///{db}", "--max-failures", "2", *fh.FAST],
                        tmp_path, env, log)
    try:
        # both trials are fine-tuning (each has per-epoch metrics): one runs on each node
        fh.wait_until(lambda: sum(1 for _, status, metrics in fh.sqlite_trial_runs(db, "lost-node")
                                  if status == "RUNNING" and metrics > 0) >= 2,
                      300, "two trials fine-tuning", proc, log)
        worker = cluster.node_id("worker")
        cluster.kill("worker")
        assert proc.wait(timeout=600) == 0, log.read_text()[-4000:]
    finally:
        if proc.poll() is None:
            proc.kill()
    output = log.read_text()
    assert "3 trials finished (1 after a retry), 0 failed" in output, output[-3000:]
    uri = f"sqlite:///{db}"
    runs = fh.trial_runs(uri, "lost-node")
    assert len(runs) == 3 and {r.info.status for r in runs} == {"FINISHED"}
    assert len({r.data.tags["gnn_search.trial_id"] for r in runs}) == 3, "one run per trial"
    retried = [r for r in runs if r.data.tags["gnn_search.attempts"] == "2"]
    assert len(retried) == 1, [r.data.tags for r in runs]
    assert retried[0].data.tags["gnn_search.node_id"] == cluster.node_id("head") != worker
    assert retried[0].data.tags["gnn_search.retried_after"]
    history = MlflowClient(uri).get_metric_history(retried[0].info.run_id, "train_loss")
    steps = [m.step for m in history]
    assert steps == sorted(set(steps)), "the lost attempt's epochs are not mixed in"
    assert fh.parent_run(uri, "lost-node").data.metrics["trials_retried"] == 1
