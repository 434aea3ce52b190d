"""The command line: help, `trial --json`, and one-line errors with a non-zero exit code."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest

from search.cli import _print_epoch, build_parser, main


def _cli(*args: str, cwd=None, env_extra=None) -> subprocess.CompletedProcess:
    env = {**os.environ, **(env_extra or {})}
    return subprocess.run([sys.executable, "-m", "search.cli", *args], capture_output=True,
                          text=True, cwd=cwd, env=env, timeout=600)


def test_help_lists_commands_and_options(capsys):
    with pytest.raises(SystemExit) as exit_info:
        main(["--help"])
    assert exit_info.value.code == 0
    out = capsys.readouterr().out
    for command in ("run", "trial", "pareto"):
        assert command in out
    parser = build_parser()
    run_help = parser._subparsers._group_actions[0].choices["run"].format_help()
    for option in ("--space", "--trials", "--concurrency", "--name", "--tracking-uri",
                   "--storage", "--data-root", "--seed"):
        assert option in run_help


@pytest.mark.parametrize("option", ["--cache-dir", "--data-root"])
def test_trial_refuses_a_folder_option_that_is_a_file(option, tmp_path):
    """A cache or data folder that is a file is refused before the dataset and baseline."""
    blocker = tmp_path / "a-file"
    blocker.write_text("")
    proc = _cli("trial", option, str(blocker / "sub"), "--out", str(tmp_path / "m"),
                cwd=tmp_path)
    assert proc.returncode == 2, proc.stderr
    lines = proc.stderr.strip().splitlines()
    assert lines == [f"gnn-search trial: error: {option} {blocker / 'sub'}: {blocker} is a "
                     "file, not a folder; give a folder"], proc.stderr


@pytest.mark.slow
def test_trial_json(data_root, cache_dir, tmp_path):
    proc = _cli("trial", "--set", "prune.method=global", "--set", "prune.sparsity=0.95",
                "--set", "quant.method=qat", "--set", "quant.bits=4",
                "--set", "finetune.epochs=3", "--json", "--out", str(tmp_path / "m"),
                "--latency-threads", "1", "--energy-window", "0.3",
                "--data-root", str(data_root), "--cache-dir", str(cache_dir), cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr
    result = json.loads(proc.stdout)
    for key in ("val_acc", "test_acc", "size_bytes", "size_ratio", "latency_ms",
                "sparsity_actual", "peak_rss_mb", "energy_mj", "cpu_percent", "trial_energy_j",
                "params_nonzero", "latency_ms_p10", "latency_ms_p90"):
        assert isinstance(result[key], float), key
    assert result["tags"]["latency_threads"] == "1"
    assert result["tags"]["energy_source"]
    assert not (tmp_path / "emissions.csv").exists(), "codecarbon must write no files"
    assert result["config"]["prune.sparsity"] == 0.95 and result["avg_bits"] == 4
    assert result["tags"]["latency_kernel"].startswith("conv1:")
    assert os.path.getsize(result["model_path"]) == result["size_bytes"]


@pytest.mark.slow
def test_trial_shows_fine_tuning_progress_on_stderr(data_root, cache_dir, tmp_path):
    proc = _cli("trial", "--set", "finetune.epochs=2", "--out", str(tmp_path / "m"),
                "--latency-threads", "1", "--energy-window", "0",
                "--data-root", str(data_root), "--cache-dir", str(cache_dir), cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr
    progress = [line for line in proc.stderr.splitlines() if line.startswith("fine-tune ")]
    assert [line.split(":")[0] for line in progress] == ["fine-tune epoch 1/2",
                                                         "fine-tune epoch 2/2"], proc.stderr
    for line in progress:
        assert "train_loss=" in line and "val_acc=" in line and "prune_sparsity=" in line
    # stdout is the final metrics only, as before
    assert proc.stdout.startswith("config:   ") and "fine-tune" not in proc.stdout
    assert proc.stdout.splitlines()[-1].startswith("model file: ")


def test_progress_line_of_a_fold(capsys):
    # k-fold cycles count epochs across folds: epoch 7 of fold 1 (5 per fold) is its 2nd
    _print_epoch({"epoch": 7, "fold": 1, "train_loss": 0.51234, "val_acc": 0.75,
                  "prune_sparsity": 0.5}, epochs=5, folds=10)
    captured = capsys.readouterr()
    assert captured.out == ""
    assert captured.err == ("fine-tune fold 2/10 epoch 2/5: train_loss=0.5123 val_acc=0.75 "
                            "prune_sparsity=0.5\n")


def test_analysis_entry_points(tmp_path):
    """``python -m analysis.X`` runs ``gnn-search X``: same parser, same one-line errors."""
    for command in ("report", "export", "compare"):
        proc = subprocess.run([sys.executable, "-m", f"analysis.{command}", "--help"],
                              capture_output=True, text=True, timeout=300)
        assert proc.returncode == 0 and proc.stdout.startswith(f"usage: gnn-search {command}")
        assert "--tracking-uri" in proc.stdout
    proc = subprocess.run([sys.executable, "-m", "analysis.pareto", "--experiment", "nope"],
                          capture_output=True, text=True, cwd=tmp_path, timeout=300)
    assert proc.returncode == 2
    assert proc.stderr.startswith("gnn-search pareto: error: no MLflow database at")
    assert len(proc.stderr.strip().splitlines()) == 1
    assert not (tmp_path / "mlflow.db").exists()


def test_missing_dataset_is_one_line(tmp_path, monkeypatch):
    empty = tmp_path / "empty"
    empty.mkdir()
    # The data root is empty and PyG cannot download here: the message names the folder.
    proc = _cli("trial", "--data-root", str(empty), cwd=tmp_path,
                env_extra={"HTTPS_PROXY": "http://127.0.0.1:9", "HTTP_PROXY": "http://127.0.0.1:9"})
    assert proc.returncode == 2, proc.stderr
    assert "Traceback" not in proc.stderr
    assert str(empty / "Cora" / "raw") in proc.stderr and "ind.cora.x" in proc.stderr


@pytest.mark.parametrize(("args", "message"), [
    (["run", "--seed", "-1"], "gnn-search run: error: argument --seed: '-1' is not allowed; "
                              "expected an integer in 0..4294967295; see gnn-search run --help"),
    (["trial", "--seed", str(2**32)], "gnn-search trial: error: argument --seed: '4294967296' "
                                      "is not allowed; expected an integer in 0..4294967295"),
    (["trial", "--seed", "x"], "gnn-search trial: error: argument --seed: 'x' is not allowed"),
    (["run", "--sampler", "cmaes"], "gnn-search run: error: argument --sampler: invalid choice"),
    ([], "gnn-search: error: the following arguments are required: COMMAND"),
])
def test_a_refused_command_line_is_one_line(args, message, capsys):
    assert main(args) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and err.startswith(message), err


def test_analysis_entry_point_refuses_in_one_line_too(capsys):
    from analysis.cli import main as analysis_main

    assert analysis_main(["pareto"]) == 2
    err = capsys.readouterr().err.strip()
    assert err == ("gnn-search pareto: error: the following arguments are required: "
                   "--experiment; see gnn-search pareto --help")


def _error(args: list[str], capsys) -> str:
    code = main(args)
    err = capsys.readouterr().err.strip()
    assert code == 2 and len(err.splitlines()) == 1, err
    return err


@pytest.mark.parametrize("name", ["", "a" * 101])
def test_empty_or_long_name_is_refused_before_anything(name, tmp_path, capsys, monkeypatch):
    monkeypatch.chdir(tmp_path)
    err = _error(["run", "--name", name, "--storage", str(tmp_path / "ray"), "--tracking-uri",
                  f"sqlite:///{tmp_path / 'mlflow.db'}"], capsys)
    assert ("argument --name: '' is empty" if not name else "is 101 characters long; allowed: "
            "at most 100") in err
    assert list(tmp_path.iterdir()) == [], "no storage, no tracking store"


def test_a_name_of_100_characters_is_allowed():
    from search.run import SearchSettings, check_settings

    with pytest.raises(ValueError, match="--trials 0 is not allowed; expected an integer in "
                                         "1..100000"):  # the name passed
        check_settings(SearchSettings(name="a" * 100, trials=0))
    with pytest.raises(ValueError, match=r"--seed -1 is not allowed; expected an integer in "
                                         r"0\.\.4294967295"):
        check_settings(SearchSettings(name="ok", seed=-1))


def test_objectives_each_metric_once(tmp_path, capsys):
    # refused before the (missing) tracking store is read
    uri = f"sqlite:///{tmp_path / 'none.db'}"
    for objectives, twice in (("val_acc:max,val_acc:min", "both max and min"),
                              ("val_acc:max,size_bytes:min,val_acc:max", "max twice")):
        err = _error(["pareto", "--experiment", "x", "--tracking-uri", uri, "--objectives",
                      objectives], capsys)
        assert f"objective 'val_acc' is given {twice}; give each metric once" in err
    err = _error(["compare", "--experiments", "a", "b", "--tracking-uri", uri, "--objectives",
                  "val_acc:max,val_acc:min"], capsys)
    assert "is given both max and min" in err


def test_out_paths_are_checked_before_any_run_is_read(tmp_path, capsys):
    uri = f"sqlite:///{tmp_path / 'none.db'}"  # no store: a check after reading would say so
    (tmp_path / "model.gnnz").write_text("mine")
    (tmp_path / "other.gnnz.json").write_text("mine")
    (tmp_path / "a-file").write_text("mine")
    pareto = ["pareto", "--experiment", "x", "--tracking-uri", uri, "--out"]
    report = ["report", "--experiment", "x", "--tracking-uri", uri, "--out"]
    export = ["export", "--run-id", "abc", "--tracking-uri", uri, "--out"]
    cases = [
        ([*pareto, str(tmp_path)], f"--out {tmp_path} is a folder; give a file name"),
        ([*pareto, str(tmp_path / "no" / "f.csv")],
         f"folder {tmp_path / 'no'} does not exist; create it or choose another path"),
        ([*pareto, str(tmp_path / "a-file" / "f.csv")], "is a file, not a folder"),
        ([*pareto, "/proc/front.csv"], "--out /proc/front.csv is not writable"),
        ([*report, str(tmp_path / "a-file")], "a-file is a file; give a folder"),
        ([*report, str(tmp_path / "a-file" / "r")], "a-file is a file, not a folder"),
        ([*report, "/proc/report"], "--out /proc/report is not writable"),
        ([*export, str(tmp_path / "model.gnnz")],
         "model.gnnz already exists; choose another path or remove it"),
        ([*export, str(tmp_path / "other.gnnz")], "other.gnnz.json already exists"),
        ([*export, str(tmp_path)], "is a folder"),
        (["trial", "--out", str(tmp_path / "a-file")], "a-file is a file; give a folder"),
    ]
    for args, message in cases:
        err = _error(args, capsys)
        assert message in err and "no MLflow database" not in err, err
    assert (tmp_path / "model.gnnz").read_text() == "mine", "nothing overwritten"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["a-file", "model.gnnz",
                                                          "other.gnnz.json"]


def test_export_takes_a_run_id_prefix(tmp_path):
    from mlflow.tracking import MlflowClient

    from analysis.export import find_run

    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    client = MlflowClient(uri)
    experiment = client.create_experiment("prefixes")
    ids = [client.create_run(experiment, tags={"gnn_search.role": "trial"}).info.run_id
           for _ in range(17)]
    client.create_run(experiment, tags={"gnn_search.role": "search"})  # not a trial
    for run_id in ids:
        assert find_run(client, run_id[:8], uri).info.run_id == run_id
        assert find_run(client, run_id.upper()[:8], uri).info.run_id == run_id
    assert find_run(client, ids[0], uri).info.run_id == ids[0]
    shared = next(c for c in "0123456789abcdef" if sum(i.startswith(c) for i in ids) > 1)
    matching = [i for i in ids if i.startswith(shared)]
    with pytest.raises(ValueError, match=rf"run id prefix '{shared}' is ambiguous: "
                                         rf"{len(matching)} trials match \(.*{matching[0]}"):
        find_run(client, shared, uri)
    with pytest.raises(ValueError, match="unknown run id 'zz' in .*give a trial's run id or a "
                                         "prefix of it"):
        find_run(client, "zz", uri)


def test_a_database_tracking_uri_is_tried_once_not_retried_for_minutes(tmp_path, capsys,
                                                                      monkeypatch):
    """postgresql:// with no server (or no driver) is one line within seconds."""
    import time

    monkeypatch.chdir(tmp_path)
    started = time.perf_counter()
    err = _error(["run", "--storage", str(tmp_path / "ray"), "--tracking-uri",
                  "postgresql://127.0.0.1:1/runs"], capsys)
    assert time.perf_counter() - started < 60
    assert "--tracking-uri postgresql://...: " in err, err
    assert "driver is not installed" in err or "does not answer" in err, err
    assert "allowed: sqlite:////abs/path/mlflow.db" in err or "use sqlite:///" in err, err
    assert not (tmp_path / "ray").exists()
