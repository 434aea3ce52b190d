"""A search whose start fails after Ray and the tracking store are touched (while its
parent MLflow run or its Tune experiment is made, before any trial) leaves nothing that
blocks its ``--name``: the same command runs again. What a killed start leaves behind (no
clean-up ran) is refused with the exact way to clear it."""

from __future__ import annotations

import json

import pytest
from mlflow.tracking import MlflowClient

from search.cli import main
from tests import fault_helpers as fh

# Every step after the parent run is created, up to Tune running the first trial.
STEPS = ("search.tracking.SearchRun.log_artifact", "search.run._new_tuner",
         "search.run._save_search", "ray.tune.Tuner.fit")


def _fail(*args, **kwargs):
    raise ConnectionError("injected start failure")


def _active_runs(uri: str, name: str) -> list:
    client = MlflowClient(uri)
    experiment = client.get_experiment_by_name(name)
    return [] if experiment is None else client.search_runs([experiment.experiment_id])


def _argv(tmp_path, data_root, cache_dir) -> list[str]:
    space = fh.write_space(tmp_path, "{low: 2, high: 3}")
    return ["run", "--space", str(space), "--trials", "1", "--concurrency", "1", "--name",
            "again", "--storage", str(tmp_path / "ray"), "--tracking-uri",
            f"sqlite:///{tmp_path / 'mlflow.db'}", "--data-root", str(data_root),
            "--cache-dir", str(cache_dir), *fh.FAST]


@pytest.mark.slow
@pytest.mark.integration
def test_a_failed_start_leaves_the_name_free(tmp_path, data_root, cache_dir, monkeypatch,
                                             capsys):
    monkeypatch.chdir(tmp_path)
    argv = _argv(tmp_path, data_root, cache_dir)
    uri = argv[argv.index("--tracking-uri") + 1]
    for step in STEPS:
        with monkeypatch.context() as patched:
            patched.setattr(step, _fail)
            assert main(argv) == 2, step
        err = capsys.readouterr().err.strip().splitlines()
        assert err[-1] == "gnn-search run: error: injected start failure", (step, err)
        assert not (tmp_path / "ray" / "again").exists(), f"{step}: Tune's folder is left"
        assert _active_runs(uri, "again") == [], f"{step}: a parent run is left"
    assert main(argv) == 0, capsys.readouterr().err[-3000:]  # the same --name runs
    assert len(fh.trial_runs(uri, "again")) == 1
    assert fh.parent_run(uri, "again").info.status == "FINISHED"


def test_what_a_killed_start_leaves_is_named_with_how_to_clear_it(tmp_path, capsys,
                                                                   monkeypatch):
    """No clean-up runs when the driver is killed: the next run names what is left and
    the command that clears it, before anything starts."""
    monkeypatch.chdir(tmp_path)
    argv = _argv(tmp_path, tmp_path, tmp_path)
    uri = argv[argv.index("--tracking-uri") + 1]
    client = MlflowClient(uri)  # the parent run a killed start left RUNNING
    experiment = client.create_experiment("again")
    parent = client.create_run(experiment, tags={"gnn_search.role": "search",
                                                 "gnn_search.search": "again"}).info.run_id
    capsys.readouterr()  # MLflow's own lines while the test made the store
    assert main(argv) == 2
    err = capsys.readouterr().err.strip()
    assert err == (f"gnn-search run: error: MLflow experiment 'again' in {uri} holds only the "
                   "parent run of a search that never started a trial (its start failed or "
                   f"was killed); delete it (MLFLOW_TRACKING_URI={uri} mlflow runs delete "
                   f"--run-id {parent}) to run it again, or choose another --name")
    folder = tmp_path / "ray" / "again"  # and Tune's folder, without a trial
    folder.mkdir(parents=True)
    (folder / "gnn_search.json").write_text(json.dumps({"name": "again"}))
    assert main(argv) == 2
    err = capsys.readouterr().err.strip()
    assert err == (f"gnn-search run: error: a Tune experiment named 'again' in {tmp_path / 'ray'}"
                   f" never started a trial (its start failed or was killed); remove {folder} "
                   "to run it again, or choose another --name")
