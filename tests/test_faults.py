"""Faults, each with real processes: a trial that raises, a driver killed with SIGKILL and
resumed, and an MLflow server that is away at the start or goes away mid-search (then
``gnn-search sync``). A lost worker node is in ``test_cluster.py``."""

from __future__ import annotations

import ipaddress
import os
import signal
import time
import uuid
from pathlib import Path

import psutil
import pytest
from mlflow.tracking import MlflowClient
from ray.tune import ExperimentAnalysis

from tests import fault_helpers as fh
from tests.ray_loopback import free_port

pytestmark = [pytest.mark.integration, pytest.mark.slow]


def _study_trials(experiment: Path) -> list[list]:
    """The Optuna study of each driver session, oldest first: [(state, params), ...]."""
    return [[(t.state.name, t.params) for t in study.trials]
            for study in fh.saved_studies(experiment)]


PLUGIN = Path(__file__).with_name("faultplugin")


def _fault_point(lr: float) -> str:
    return ("  - {prune.method: global, prune.sparsity: 0.5, quant.method: fp32, "
            f"finetune.epochs: 4, finetune.lr: {lr}}}\n")


def test_trial_that_raises_fails_alone(tmp_path, data_root, cache_dir):
    """Trials that raise in their own process (NaN loss, out of memory, a bad configuration,
    still fine-tuning at --trial-timeout) are FAILED in Tune, MLflow and Optuna with their
    message, not retried (the failure is their own), and the search goes on to its full
    trial count. ``tests/faultplugin`` puts each fault inside the trial's own process,
    chosen by a sentinel learning rate."""
    from tests.faultplugin.sitecustomize import BAD_CONFIG_LR, NAN_LR, OOM_LR, SLOW_LR

    space = fh.write_space(tmp_path, extra="warm_start:\n" + "".join(
        _fault_point(lr) for lr in (SLOW_LR, NAN_LR, OOM_LR, BAD_CONFIG_LR)))
    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    env = fh.cli_env(data_root, cache_dir, {"PYTHONPATH": os.pathsep.join(
        [str(PLUGIN), os.environ.get("PYTHONPATH", "")])})
    proc = fh.cli(["run", "--space", str(space), "--trials", "7", "--concurrency", "2",
                   "--name", "raises", "--storage", str(tmp_path / "ray"), "--tracking-uri", uri,
                   "--trial-timeout", "2", "--max-failures", "2", *fh.FAST], tmp_path, env)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    expected = {  # finetune.lr -> (error type, what its message says)
        SLOW_LR: ("TimeoutError", "trial exceeded --trial-timeout 2 s"),
        NAN_LR: ("FloatingPointError", "fine-tuning diverged: loss is nan at epoch 1"),
        OOM_LR: ("RuntimeError", "can't allocate memory: you tried to allocate 70368744177664"),
        BAD_CONFIG_LR: ("ValueError", "quant.bits=3 is not allowed"),
    }
    trials = ExperimentAnalysis(str(tmp_path / "ray" / "raises")).trials
    failed = [t for t in trials if t.status == "ERROR"]
    finished = [t for t in trials if t.status == "TERMINATED"]
    assert len(trials) == 7 and len(finished) == 3, [(t.status, t.config) for t in trials]
    assert sorted(t.config["finetune.lr"] for t in failed) == sorted(expected)
    assert "3 trials finished, 4 failed" in proc.stdout
    runs = {r.data.tags["gnn_search.trial_id"]: r for r in fh.trial_runs(uri, "raises")}
    assert len(runs) == 7
    for trial in failed:
        kind, message = expected[trial.config["finetune.lr"]]
        assert trial.run_metadata.num_failures == 1  # Tune: counted once, no retry
        error = Path(trial.storage.trial_fs_path, "error.txt").read_text()
        assert kind in error and message in error, error[-2000:]
        run = runs[trial.trial_id]  # MLflow: FAILED with the message, one attempt
        assert run.info.status == "FAILED"
        tag = run.data.tags["gnn_search.error"]
        assert tag.startswith(f"{kind}: ") and message in tag, tag
        assert run.data.tags["gnn_search.attempts"] == "1"
    assert all(runs[t.trial_id].info.status == "FINISHED" for t in finished)
    # the search went on after the failures: a trial sampled by Optuna finished last
    last = max(trials, key=lambda t: t.run_metadata.start_time or 0)
    assert last.status == "TERMINATED" and last.config["finetune.lr"] not in expected
    states = [state for state, _ in _study_trials(tmp_path / "ray" / "raises")[-1]]
    assert sorted(states) == sorted(["FAIL"] * 4 + ["COMPLETE"] * 3)
    parent = fh.parent_run(uri, "raises")
    assert parent.info.status == "FINISHED"
    assert parent.data.metrics["trials_failed"] == 4


def _listening(procs: list[psutil.Process]) -> list[str]:
    """The addresses these processes listen on."""
    found = []
    for proc in procs:
        try:
            found += [c.laddr.ip for c in proc.net_connections(kind="inet")
                      if c.status == psutil.CONN_LISTEN]
        except psutil.Error:
            continue
    return found


def _loopback(address: str) -> bool:
    return ipaddress.ip_address(address.removeprefix("::ffff:")).is_loopback


def _driver_processes(mark: str) -> list[psutil.Process]:
    found = []
    for proc in psutil.process_iter():
        try:
            if proc.environ().get("GNN_SEARCH_TEST_DRIVER") == mark:
                found.append(proc)
        except (psutil.Error, OSError):
            continue
    return found


def test_killed_driver_resumes_without_losing_or_rerunning(tmp_path, data_root, cache_dir):
    space = fh.write_space(tmp_path)
    db = tmp_path / "mlflow.db"
    uri = f"sqlite:///{db}"
    storage = tmp_path / "ray"
    mark = uuid.uuid4().hex
    env = fh.cli_env(data_root, cache_dir, {"GNN_SEARCH_TEST_DRIVER": mark})
    args = ["--storage", str(storage), *fh.FAST]
    log = tmp_path / "first.log"
    driver = fh.cli_popen(["run", "--space", str(space), "--trials", "6", "--concurrency", "1",
                           "--name", "killed", "--tracking-uri", uri, *args], tmp_path, env, log)
    try:
        fh.wait_until(lambda: sum(s == "FINISHED" for _, s, _ in
                                  fh.sqlite_trial_runs(db, "killed")) >= 2,
                      300, "two finished trials", driver, log)
        listening = _listening(_driver_processes(mark))  # the search's own Ray: loopback only
        assert listening and all(_loopback(ip) for ip in listening), listening
        driver.send_signal(signal.SIGKILL)
        driver.wait(timeout=30)
        killed_at = time.time()
        # the driver's own Ray (started by it) goes down with it
        fh.wait_until(lambda: not _driver_processes(mark), 60, "the driver's Ray to stop")
    finally:
        for proc in _driver_processes(mark):
            proc.kill()
    before = {r.data.tags["gnn_search.trial_id"]: r for r in fh.trial_runs(uri, "killed")
              if r.info.status == "FINISHED"}
    assert len(before) >= 2
    models = {p: p.stat().st_mtime for p in storage.glob("killed/trial_*/checkpoint_*/*")}

    # starting it again under the same name is refused; --resume continues it
    again = fh.cli(["run", "--space", str(space), "--name", "killed", "--tracking-uri", uri,
                    *args], tmp_path, env)
    assert again.returncode == 2 and "--resume killed" in again.stderr
    resumed = fh.cli(["run", "--resume", "killed", "--storage", str(storage), "--quiet"],
                     tmp_path, env)
    assert resumed.returncode == 0, resumed.stdout[-3000:] + resumed.stderr[-3000:]
    assert "Search 'killed' (resumed): 6 trials finished, 0 failed" in resumed.stdout

    trials = ExperimentAnalysis(str(storage / "killed")).trials
    assert len(trials) == 6 and {t.status for t in trials} == {"TERMINATED"}
    runs = fh.trial_runs(uri, "killed")
    by_trial = {r.data.tags["gnn_search.trial_id"]: r for r in runs}
    assert len(runs) == 6 == len(by_trial), "one run per trial, none lost"
    assert set(by_trial) == {t.trial_id for t in trials}
    assert {r.info.status for r in runs} == {"FINISHED"}
    for trial_id, run in before.items():  # not rerun: same run, same model file
        assert by_trial[trial_id].info.run_id == run.info.run_id
        files = list(storage.glob(f"killed/trial_{trial_id}/checkpoint_*/*"))
        assert files and all(models.get(f) == f.stat().st_mtime < killed_at for f in files)
    # the Optuna study kept its history: the first session's trials open the final study
    studies = _study_trials(storage / "killed")
    assert len(studies) == 2
    first, final = studies
    assert [s for s, _ in final] == ["COMPLETE"] * 6
    done_before = [params for state, params in first if state == "COMPLETE"]
    assert len(done_before) >= 1 and [p for _, p in final[:len(done_before)]] == done_before
    parent = fh.parent_run(uri, "killed")
    assert parent.info.status == "FINISHED"
    assert parent.data.metrics["search_resumes"] == 1
    assert parent.data.metrics["trials_completed"] == 6


def test_tracking_server_away_at_start_is_one_line(tmp_path, data_root, cache_dir):
    port = free_port()
    started = time.time()
    proc = fh.cli(["run", "--space", str(fh.write_space(tmp_path)), "--trials", "1",
                   "--name", "away", "--storage", str(tmp_path / "ray"),
                   "--tracking-uri", f"http://127.0.0.1:{port}", *fh.FAST],
                  tmp_path, fh.cli_env(data_root, cache_dir))
    assert proc.returncode == 2
    assert proc.stderr.strip().splitlines() == [
        f"gnn-search run: error: MLflow tracking server http://127.0.0.1:{port} is unreachable "
        "(no answer from /health); start one with `gnn-search mlflow-server` or pass another "
        "--tracking-uri"]
    assert time.time() - started < 60
    assert not (tmp_path / "ray").exists(), "no trial, no Tune experiment"


def test_tracking_server_goes_away_then_sync(tmp_path, data_root, cache_dir):
    """The server is killed mid-search: the trials still finish and stay in Tune's storage
    (an object-store style URI here); `gnn-search sync` writes the rest, twice is once."""
    env = fh.cli_env(data_root, cache_dir)
    server = fh.MlflowServer(tmp_path, free_port(), env)
    server.start()
    group = [psutil.Process(server.proc.pid), *psutil.Process(server.proc.pid).children(True)]
    listening = _listening(group)
    assert listening and all(_loopback(ip) for ip in listening), listening
    storage = f"file://{tmp_path / 'store'}"
    log = tmp_path / "search.log"
    try:
        driver = fh.cli_popen(["run", "--space", str(fh.write_space(tmp_path)), "--trials", "5",
                               "--concurrency", "1", "--name", "away", "--storage", storage,
                               "--tracking-uri", server.url, *fh.FAST], tmp_path, env, log)
        try:
            fh.wait_until(lambda: sum(s == "FINISHED" for _, s, _ in fh.sqlite_trial_runs(
                tmp_path / "mlflow.db", "away")) >= 2, 300, "two finished trials", driver, log)
            server.kill()
            assert driver.wait(timeout=600) == 0, log.read_text()[-4000:]
        finally:
            if driver.poll() is None:
                driver.kill()
        output = log.read_text()
        assert "Search 'away': 5 trials finished, 0 failed" in output
        assert f"gnn-search sync away --storage {storage}" in output
        server.start()
        client = MlflowClient(server.url)
        assert len(fh.trial_runs(server.url, "away")) < 5
        first = fh.cli(["sync", "away", "--storage", storage], tmp_path, env)
        assert first.returncode == 0, first.stderr
        assert "5 trials in Tune's storage (5 finished" in first.stdout
        written = int(first.stdout.split(" written to MLflow")[0].rsplit(" ", 1)[1])
        assert written >= 3
        second = fh.cli(["sync", "away", "--storage", storage], tmp_path, env)
        assert "0 written to MLflow, 5 already there" in second.stdout, second.stdout
        runs = fh.trial_runs(server.url, "away")
        assert len(runs) == 5 == len({r.data.tags["gnn_search.trial_id"] for r in runs})
        for run in runs:
            assert run.info.status == "FINISHED"
            history = client.get_metric_history(run.info.run_id, "train_loss")
            steps = [m.step for m in history]
            assert steps == sorted(set(steps)) and len(steps) == int(
                run.data.params["finetune.epochs"]), "every epoch once"
            artifacts = [a.path for a in client.list_artifacts(run.info.run_id, "model")]
            assert artifacts == ["model/model.gnnz"]
        parent = fh.parent_run(server.url, "away")
        assert parent.info.status == "FINISHED"
        assert parent.data.metrics["trials_completed"] == 5
    finally:
        server.kill()
        for proc in psutil.process_iter():  # nothing of this test's server may outlive it
            try:
                if str(tmp_path) in " ".join(proc.cmdline()):
                    os.kill(proc.pid, signal.SIGKILL)
            except (psutil.Error, OSError):
                continue
