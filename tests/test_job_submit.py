"""Launching a search as the README says: ``ray job submit`` to a head node (dashboard and job
API on 127.0.0.1 only, token authentication on), the driver logging to a ``gnn-search
mlflow-server``; ``ray job logs`` follows it, ``ray job stop`` stops it mid-search, and a
second submitted job (``--resume``) finishes it: every trial once, in MLflow and in Tune."""

from __future__ import annotations

import ipaddress
import json
import os
import re
import subprocess
import sys
import time
from pathlib import Path

import psutil
import pytest
from ray.tune import ExperimentAnalysis

from tests import fault_helpers as fh
from tests.ray_loopback import RAY, LoopbackCluster, free_port

REPO = Path(__file__).resolve().parents[1]
TRIALS = 6


def _ray(args: list[str], env: dict, timeout: int = 120) -> subprocess.CompletedProcess:
    return subprocess.run([RAY, *args], env=env, cwd=REPO, capture_output=True, text=True,
                          timeout=timeout)


def _status(job: str, cluster: LoopbackCluster, env: dict) -> str:
    proc = _ray(["job", "status", job, "--address", cluster.dashboard_url], env)
    text = proc.stdout + proc.stderr
    ended = {"succeeded": "SUCCEEDED", "failed": "FAILED", "was stopped": "STOPPED"}
    for words, status in ended.items():  # how the CLI words an ended job
        if f"Job '{job}' {words}" in text:
            return status
    found = re.search(rf"Status for job '{job}': (\w+)", text)
    return found.group(1) if found else text[-500:]


def _submit(job: str, cluster: LoopbackCluster, env: dict, run_args: list[str],
            runtime_env: dict) -> None:
    proc = _ray(["job", "submit", "--address", cluster.dashboard_url, "--submission-id", job,
                 "--no-wait", "--working-dir", ".", "--runtime-env-json",
                 json.dumps(runtime_env), "--", "python", "-m", "search.cli", "run",
                 "--address", "auto", *run_args], env)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]


def _wait_for_status(job: str, wanted: tuple[str, ...], cluster: LoopbackCluster, env: dict,
                     timeout: float) -> str:
    deadline, status = time.time() + timeout, ""
    while time.time() < deadline:
        status = _status(job, cluster, env)
        if status in wanted:
            return status
        time.sleep(1)
    raise AssertionError(f"job {job} is {status!r}, not {wanted}:\n"
                         + _logs(job, cluster, env)[-3000:])


def _logs(job: str, cluster: LoopbackCluster, env: dict) -> str:
    return _ray(["job", "logs", job, "--address", cluster.dashboard_url], env).stdout


@pytest.mark.integration
@pytest.mark.slow
def test_ray_job_submit_stop_and_resume(tmp_path, data_root, cache_dir):
    cluster = LoopbackCluster(cpus_per_node=2, dashboard=True)
    # the head runs the job's `python`: the project's environment must be on its PATH
    cluster.env["PATH"] = f"{Path(sys.executable).parent}{os.pathsep}{os.environ['PATH']}"
    server = fh.MlflowServer(tmp_path, free_port(), fh.cli_env(data_root, cache_dir))
    space = fh.write_space(tmp_path, epochs="{low: 6, high: 10}")
    storage = tmp_path / "ray"
    # what the job's driver and trials need besides the code (working_dir)
    runtime_env = {"env_vars": {"GNN_SEARCH_DATA": str(data_root),
                                "GNN_SEARCH_CACHE": str(cache_dir)}}
    follow = None
    try:
        cluster.start_head()
        server.start()
        env = cluster.env  # RAY_AUTH_MODE=token and the cluster's token
        # without RAY_AUTH_MODE=token the job client sends no token and is refused
        bare = {k: v for k, v in env.items() if k != "RAY_AUTH_MODE"}
        refused = _ray(["job", "list", "--address", cluster.dashboard_url], bare)
        assert refused.returncode != 0
        assert "Missing authentication token" in refused.stdout + refused.stderr
        listening = [c.laddr.ip for p in cluster.processes()
                     for c in p.net_connections(kind="inet") if c.status == psutil.CONN_LISTEN]
        assert listening and all(ipaddress.ip_address(ip.removeprefix("::ffff:")).is_loopback
                                 for ip in listening), listening

        _submit("search-1", cluster, env,
                ["--space", str(space), "--trials", str(TRIALS), "--concurrency", "2",
                 "--name", "jobs", "--storage", str(storage), "--tracking-uri", server.url,
                 *fh.FAST], runtime_env)
        log = tmp_path / "follow.log"
        follow = subprocess.Popen([RAY, "job", "logs", "search-1", "--follow", "--address",
                                   cluster.dashboard_url], env=env, cwd=REPO,
                                  stdout=log.open("w"), stderr=subprocess.STDOUT)

        def finished() -> int:
            return sum(r.info.status == "FINISHED" for r in fh.trial_runs(server.url, "jobs"))

        fh.wait_until(lambda: finished() >= 2, 150, "two finished trials (job 1)")
        assert _status("search-1", cluster, env) == "RUNNING"
        stop = _ray(["job", "stop", "search-1", "--address", cluster.dashboard_url], env)
        assert stop.returncode == 0, stop.stdout[-2000:] + stop.stderr[-2000:]
        _wait_for_status("search-1", ("STOPPED",), cluster, env, 60)
        follow.wait(timeout=60)  # following ends with the job
        followed = log.read_text()
        assert "joined the Ray cluster at 127.0.0.1" in followed, followed[-3000:]
        before = {r.data.tags["gnn_search.trial_id"]: r.info.run_id
                  for r in fh.trial_runs(server.url, "jobs") if r.info.status == "FINISHED"}
        assert 2 <= len(before) < TRIALS, "stopped mid-search"

        _submit("search-2", cluster, env, ["--resume", "jobs", "--storage", str(storage),
                                           "--quiet"], runtime_env)
        _wait_for_status("search-2", ("SUCCEEDED", "FAILED", "STOPPED"), cluster, env, 150)
        logs = _logs("search-2", cluster, env)
        assert _status("search-2", cluster, env) == "SUCCEEDED", logs[-4000:]
        assert f"Search 'jobs' (resumed): {TRIALS} trials finished, 0 failed" in logs

        trials = ExperimentAnalysis(str(storage / "jobs")).trials
        assert len(trials) == TRIALS and {t.status for t in trials} == {"TERMINATED"}
        runs = fh.trial_runs(server.url, "jobs")
        by_trial = {r.data.tags["gnn_search.trial_id"]: r for r in runs}
        assert len(runs) == TRIALS == len(by_trial), "one run per trial: none lost or twice"
        assert set(by_trial) == {t.trial_id for t in trials}
        assert {r.info.status for r in runs} == {"FINISHED"}
        for trial_id, run_id in before.items():  # finished before the stop: not rerun
            assert by_trial[trial_id].info.run_id == run_id
        parent = fh.parent_run(server.url, "jobs")
        assert parent.info.status == "FINISHED"
        assert parent.data.metrics["trials_completed"] == TRIALS
    finally:
        if follow is not None and follow.poll() is None:
            follow.kill()
        server.kill()
        cluster.stop()
    assert cluster.processes() == [], "the cluster is gone after the test"
