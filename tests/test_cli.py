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
    assert result["tags"]["latency_kernel"] == "float"
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
