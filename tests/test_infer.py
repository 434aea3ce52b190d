"""``gnn-search infer`` on a real Cora trial file: the trial's test accuracy and kernels come
back, latency and memory are measured, a kernel this machine lacks falls back with a
warning, and bad input is one line with exit code 2."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from search.cli import main
from tests.conftest import fast_measure
from trainables.cycle import run_cycle
from trainables.model_file import update_meta

CONFIG = {"prune.method": "global", "prune.sparsity": 0.8, "quant.method": "qat",
          "quant.bits": 8, "finetune.epochs": 2}
MISSING_KERNEL = "vnni_magic+spmm"  # no machine has it: the plan's next candidate runs


@pytest.fixture(scope="module")
def trial(cora_task, cora_baseline, tmp_path_factory):
    """A pruned INT8 trial's model file and its result (two epochs: seconds)."""
    out = tmp_path_factory.mktemp("infer-trial")
    return run_cycle(CONFIG, cora_task, cora_baseline, lambda _: None, out,
                     measure_settings=fast_measure())


def _copy(trial, tmp_path: Path, **meta) -> Path:
    """The trial's model file copied, with ``meta`` written into its header."""
    path = tmp_path / "model.gnnz"
    shutil.copy(trial.model_path, path)
    if meta:
        update_meta(path, **meta)
    return path


def _infer_json(capsys, *args: str) -> dict:
    capsys.readouterr()
    assert main(["infer", *args, "--threads", "1", "--json"]) == 0, capsys.readouterr().err
    return json.loads(capsys.readouterr().out)


def test_infer_gives_back_the_trials_accuracy_and_kernels(trial, data_root, capsys):
    result = _infer_json(capsys, "--model", str(trial.model_path), "--data-root",
                         str(data_root))
    assert result["test_acc"] == trial.metrics["test_acc"]
    assert result["latency_kernel"] == trial.tags["latency_kernel"]
    assert (result["task"], result["dataset"], result["space"]) == (
        "node_classification", "Cora", None)  # the file says where its data is
    assert result["latency_threads"] == 1 and result["kernel_plan"] == "recorded"
    assert 0 < result["latency_ms_p10"] <= result["latency_ms"] <= result["latency_ms_p90"]
    for key in ("latency_ms_reference", "infer_peak_mb", "infer_peak_mb_reference"):
        assert result[key] > 0, key
    assert "runtime_fallback" not in result


def test_infer_prints_labelled_lines(trial, data_root, capsys):
    capsys.readouterr()
    assert main(["infer", "--model", str(trial.model_path), "--space", "cora_node",
                 "--data-root", str(data_root), "--threads", "1"]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert [line.split()[0] for line in lines] == ["model", "data", "accuracy", "latency",
                                                   "kernels", "memory"]
    assert f"test_acc={trial.metrics['test_acc']:.4f}" in lines[2]
    assert "ms median (p10 " in lines[3] and "threads 1;" in lines[3]
    assert "space cora_node" in lines[1]
    assert trial.tags["latency_kernel"] in lines[4]


def test_infer_as_a_process(trial, data_root, tmp_path):
    proc = subprocess.run(
        [sys.executable, "-m", "search.cli", "infer", "--model", str(trial.model_path),
         "--space", "cora_node", "--threads", "1", "--json"],
        capture_output=True, text=True, cwd=tmp_path, timeout=300,
        env={**os.environ, "GNN_SEARCH_DATA": str(data_root)})
    assert proc.returncode == 0, proc.stderr
    result = json.loads(proc.stdout)
    assert result["test_acc"] == trial.metrics["test_acc"]
    assert result["latency_kernel"] == trial.tags["latency_kernel"]
    assert result["latency_ms"] > 0 and result["space"] == "cora_node"


def test_a_kernel_this_machine_lacks_falls_back(trial, data_root, tmp_path, capsys):
    second = trial.tags["latency_kernel"].split(",")[1].split(":")[1]
    plan = {"version": 1, "layers": {"conv1": [MISSING_KERNEL, "mm+scatter"],
                                     "conv2": [second]}}
    path = _copy(trial, tmp_path, runtime_plan=plan)
    result = _infer_json(capsys, "--model", str(path), "--data-root", str(data_root))
    assert result["runtime_fallback"] == f"conv1:{MISSING_KERNEL}->mm+scatter"
    assert result["latency_kernel"] == f"conv1:mm+scatter,conv2:{second}"
    assert result["test_acc"] == trial.metrics["test_acc"]  # the reference kernel: same values
    main(["infer", "--model", str(path), "--data-root", str(data_root), "--threads", "1"])
    warning = capsys.readouterr().out.splitlines()[-1]
    assert warning.startswith(f"warning     runtime_fallback conv1:{MISSING_KERNEL}->")


def test_a_file_without_its_data_runs_with_space(trial, data_root, tmp_path, capsys):
    path = _copy(trial, tmp_path, task=None, dataset=None)
    capsys.readouterr()
    assert main(["infer", "--model", str(path), "--data-root", str(data_root)]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("gnn-search infer: error: ") and "pass --space NAME|FILE" in err
    result = _infer_json(capsys, "--model", str(path), "--space", "cora_node",
                         "--data-root", str(data_root))
    assert result["test_acc"] == trial.metrics["test_acc"]


BAD = {
    "missing": (["--model", "{tmp}/nowhere.gnnz"], "nowhere.gnnz does not exist; give a model "
                "file (model.gnnz)"),
    "folder": (["--model", "{tmp}"], "is not a file; give a model file"),
    "not-a-model": (["--model", "{tmp}/junk.gnnz"], "junk.gnnz: not a compressed GNN model "
                    "file (bad magic)"),
    "baseline-file": (["--model", "{baseline}"], "without the model it holds"),
    "sizes": (["--model", "{resized}", "--space", "cora_node"], "model expects 3 features and "
              "2 classes; space cora_node's data has 1433 features and 7 classes"),
    "threads": (["--model", "{model}", "--threads", "0"],
                "argument --threads: '0' is not allowed; expected an integer in 1..1024"),
    "threads-text": (["--model", "{model}", "--threads", "two"], "'two' is not allowed"),
    "unknown-space": (["--model", "{model}", "--space", "nope"],
                      "space file 'nope' not found; give a path or one of: "),
    "other-task": (["--model", "{model}", "--space", "proteins"],
                   "was trained for task 'node_classification'; space proteins is task "
                   "'graph_classification'"),
}


@pytest.mark.parametrize("key", list(BAD))
def test_bad_input_is_one_line(key, trial, cora_baseline, data_root, tmp_path, capsys,
                               monkeypatch):
    monkeypatch.chdir(tmp_path)
    (tmp_path / "junk.gnnz").write_bytes(b"PK\x03\x04 not a model")
    resized = _copy(trial, tmp_path, num_features=3, num_classes=2)
    values = {"tmp": tmp_path, "model": trial.model_path, "resized": resized,
              "baseline": cora_baseline.settings["path"]}
    args, message = BAD[key]
    args = [a.format(**values) for a in args]
    capsys.readouterr()
    code = main(["infer", *args, "--data-root", str(data_root)])
    err = capsys.readouterr().err
    assert code == 2, err
    lines = err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("gnn-search infer: error: "), err
    assert message in lines[0], lines[0]
