"""Where trials compute (``--gpus-per-trial``, the ``device`` setting), tested on the CPU:
the resources Tune reserves for a trial, the refusal of a GPU request this machine cannot
meet, the task data moved by the one helper (to the ``meta`` device: shapes only, so every
tensor's placement is checked without a GPU), the cycle's own refusal of an absent ``cuda``
and its ``device`` tag. With a GPU, the last test runs the cycle on it (``bench/gpu_check.sh``
runs a whole search there)."""

from __future__ import annotations

import dataclasses

import pytest
import torch
from ray.tune.trainable import wrap_function

from search.cli import main
from search.run import SearchSettings, _trainable, check_settings
from tests.conftest import fast_measure
from trainables import measure
from trainables.cycle import run_cycle
from trainables.device import resolve_device, task_to
from trainables.tasks import CrossValidation, build_task

NO_GPU = not torch.cuda.is_available()
CONFIG = {"prune.method": "global", "prune.sparsity": 0.5, "quant.method": "qat",
          "quant.bits": 8, "finetune.epochs": 2, "finetune.lr": 0.005}


def _tensors(obj, seen=None):
    """Every tensor a task holds: its fields, lists of graphs, PyG Data/Batch stores."""
    seen = seen if seen is not None else set()
    if id(obj) in seen:
        return
    seen.add(id(obj))
    if isinstance(obj, torch.Tensor):
        yield obj
    elif isinstance(obj, (list, tuple)):
        for value in obj:
            yield from _tensors(value, seen)
    elif hasattr(obj, "to") and hasattr(obj, "num_nodes"):  # torch_geometric Data / Batch
        for _, value in obj:
            yield from _tensors(value, seen)
    elif dataclasses.is_dataclass(obj):
        for value in vars(obj).values():
            yield from _tensors(value, seen)


@pytest.mark.parametrize("gpus", [0.0, 0.25, 1.0])
def test_trial_resources_as_tune_sees_them(gpus, cora_task, cora_baseline):
    settings = SearchSettings(name="r", concurrency=2, gpus_per_trial=gpus)
    request = wrap_function(_trainable(settings, cora_task, cora_baseline, cpus=4)
                            ).default_resource_request({})
    expected = {"CPU": 2.0, **({"GPU": gpus} if gpus else {})}
    assert request.required_resources == expected
    assert settings.device == ("cuda" if gpus else "cpu")


@pytest.mark.skipif(not NO_GPU, reason="this machine has a GPU")
def test_a_gpu_request_without_gpus_is_refused_before_anything(tmp_path, data_root, cache_dir,
                                                               capsys, monkeypatch):
    monkeypatch.chdir(tmp_path)
    code = main(["run", "--space", "cora_node", "--gpus-per-trial", "0.25", "--name", "g",
                 "--storage", str(tmp_path / "ray"),
                 "--tracking-uri", f"sqlite:///{tmp_path / 'mlflow.db'}",
                 "--data-root", str(data_root), "--cache-dir", str(cache_dir), "--quiet"])
    err = capsys.readouterr().err.strip().splitlines()
    assert code == 2
    assert err == ["gnn-search run: error: --gpus-per-trial 0.25: this machine has no GPUs; "
                   "leave out --gpus-per-trial (trials run on CPUs), or run where GPU nodes "
                   "are (ray_cluster.yaml: gpu_worker; README, 'GPUs')"]
    assert sorted(p.name for p in tmp_path.iterdir()) == []  # no storage, no mlflow.db


@pytest.mark.parametrize("gpus", [-0.5, 65.0, float("nan")])
def test_gpus_per_trial_out_of_range_is_refused_by_the_api(gpus, tmp_path):
    settings = SearchSettings(name="g", storage=tmp_path / "ray", gpus_per_trial=gpus)
    with pytest.raises(ValueError, match=r"--gpus-per-trial .* not allowed; expected a number "
                                         r"of GPUs in \[0, 64\]"):
        check_settings(settings)
    assert not (tmp_path / "ray").exists()


def test_resolve_device():
    assert resolve_device("cpu") == torch.device("cpu")
    for bad in ("tpu", "cuda:x", "mps"):
        with pytest.raises(ValueError, match="allowed: cpu, cuda or cuda:N"):
            resolve_device(bad)
    if NO_GPU:
        with pytest.raises(ValueError, match="device 'cuda' is not available here"):
            resolve_device("cuda")


def _kfold_proteins(data_root):
    return build_task("graph_classification",
                      {"loader": "tu", "name": "PROTEINS", "split": "kfold", "folds": 2},
                      data_root, seed=0)


@pytest.mark.parametrize("kind", ["node", "link", "graph-kfold"])
def test_task_to_moves_every_tensor_and_leaves_the_task(kind, cora_task, data_root):
    if kind == "node":
        task = cora_task
    elif kind == "link":
        task = build_task("link_prediction", {"loader": "planetoid", "name": "Cora",
                                              "split": "random", "val_ratio": 0.05,
                                              "test_ratio": 0.1, "subgraphs": 2},
                          data_root, seed=0)
    else:
        task = _kfold_proteins(data_root)
        task.folds[0].example_inputs()  # a cached calibration batch moves too
    moved = task_to(task, "meta")
    before = list(_tensors(task.folds if isinstance(task, CrossValidation) else task))
    after = list(_tensors(moved.folds if isinstance(moved, CrossValidation) else moved))
    assert before and len(after) == len(before)
    assert {t.device.type for t in after} == {"meta"}
    assert {t.device.type for t in before} == {"cpu"}  # the driver's copy stays
    assert [t.shape for t in after] == [t.shape for t in before]
    assert task_to(cora_task, "cpu") is cora_task  # nothing to move


def test_baseline_builds_on_the_device(cora_baseline):
    model = cora_baseline.build("meta")
    assert {p.device.type for p in model.parameters()} == {"meta"}
    assert {p.device.type for p in cora_baseline.build().parameters()} == {"cpu"}


def test_time_calls_wait_for_the_device_inside_the_window():
    events: list[str] = []
    times = measure._time_calls(lambda: events.append("call"), 2,
                                sync=lambda: events.append("sync"))
    assert len(times) == 2
    assert events == ["sync", "call", "sync"] * 2
    assert measure.synchronizer("cpu") is measure._no_sync


def test_gpu_energy_is_the_gpus_own(monkeypatch):
    class Data:
        gpu_energy, energy_consumed = 1e-6, 3e-6  # kWh

    class Tracker:
        final_emissions_data = Data()

        def stop(self):
            pass

    assert measure.stop_joules(Tracker(), gpu_only=True) == pytest.approx(3.6)
    assert measure.stop_joules(Tracker()) == pytest.approx(10.8)
    assert measure.reset_peak_gpu("cpu") is False


@pytest.mark.skipif(not NO_GPU, reason="this machine has a GPU")
def test_the_cycle_refuses_an_absent_gpu_first(cora_task, cora_baseline, tmp_path):
    out = tmp_path / "out"
    with pytest.raises(ValueError, match="device 'cuda' is not available here"):
        run_cycle(CONFIG, cora_task, cora_baseline, [].append, out, device="cuda")
    assert not out.exists()


def test_the_cycle_on_an_explicit_cpu(cora_task, cora_baseline, tmp_path):
    result = run_cycle(CONFIG, cora_task, cora_baseline, [].append, tmp_path,
                       measure_settings=fast_measure(), device="cpu")
    assert result.tags["device"] == "cpu"
    assert "peak_gpu_mb" not in result.metrics
    assert result.tags["latency_kernel"] != "eager:cuda"


@pytest.mark.skipif(NO_GPU, reason="needs a CUDA GPU")
def test_the_cycle_on_a_gpu(cora_task, cora_baseline, tmp_path):
    from trainables.cycle import load_compressed

    settings = measure.MeasureSettings(warmup=1, min_repeats=3, energy_window_s=1.0)
    result = run_cycle(CONFIG, cora_task, cora_baseline, [].append, tmp_path,
                       measure_settings=settings, device="cuda")
    m, tags = result.metrics, result.tags
    assert tags["device"] == "cuda" and tags["latency_kernel"] == "eager:cuda"
    assert m["peak_gpu_mb"] > 0 and m["latency_ms"] > 0
    assert tags["energy_source"] == "nvml", tags
    model, _ = load_compressed(result.model_path)  # the file is a CPU file, as on the CPU
    assert cora_task.evaluate(model)["val_acc"] == pytest.approx(m["val_acc"], abs=0.01)
