"""``gnn-search export --format safetensors``: trial files made by the real cycle (gcn on Cora,
gin on PROTEINS, spline where PyG's SplineConv kernel is installed) are exported from MLflow
and loaded with safetensors and plain ``torch_geometric.nn`` modules assembled here, never
this project's loader; their logits are the project's reloaded model's."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
from mlflow.tracking import MlflowClient
from safetensors import safe_open
from safetensors.torch import load_file
from torch import Tensor, nn
from torch_geometric.nn import GCNConv, GINConv, global_add_pool

from analysis.cli import main
from tests.conftest import CORA, fast_measure
from trainables.baseline import get_baseline
from trainables.cycle import load_compressed, run_cycle
from trainables.model_file import save_model
from trainables.models import build_model
from trainables.tasks import build_task

PROTEINS = {"loader": "tu", "name": "PROTEINS", "split": "stratified", "val_ratio": 0.1,
            "test_ratio": 0.1, "metric": "acc", "batch_size": 128}
TRAINING = {"epochs": 3, "lr": 0.01, "weight_decay": 0.0}  # as test_tasks: a shared cache
QAT8 = {"prune.method": "none", "quant.method": "qat", "quant.bits": 8, "finetune.epochs": 1,
        "finetune.lr": 0.001}
CASES = {  # name: (dataset, model, trial config)
    "gcn-fp32": ("cora", "gcn", {"prune.method": "none", "quant.method": "fp32",
                                 "finetune.epochs": 1}),
    "gcn-pruned-int8": ("cora", "gcn", {**QAT8, "prune.method": "global",
                                        "prune.sparsity": 0.7, "finetune.epochs": 2}),
    "gcn-int4": ("cora", "gcn", {**QAT8, "quant.method": "ptq", "quant.bits": 4}),
    "gin-int8": ("proteins", "gin", QAT8),
}
REL_TOL = 1e-5


# ---- plain PyG: what a user writes, with no import of this project ---------------------------


class PlainGCN(nn.Module):
    def __init__(self, num_features: int, num_classes: int, hidden: int = 16,
                 dropout: float = 0.5) -> None:
        super().__init__()
        self.conv1, self.conv2 = GCNConv(num_features, hidden), GCNConv(hidden, num_classes)

    def forward(self, x: Tensor, edge_index: Tensor) -> Tensor:
        return self.conv2(self.conv1(x, edge_index).relu(), edge_index)


class PlainGIN(nn.Module):
    def __init__(self, num_features: int, num_classes: int, hidden: int = 64, layers: int = 5,
                 dropout: float = 0.5) -> None:
        super().__init__()
        self.convs = nn.ModuleList(GINConv(nn.Sequential(
            nn.Linear(num_features if i == 0 else hidden, hidden), nn.BatchNorm1d(hidden),
            nn.ReLU(), nn.Linear(hidden, hidden), nn.BatchNorm1d(hidden), nn.ReLU(),
        )) for i in range(layers))
        self.lin1, self.lin2 = nn.Linear(hidden * layers, hidden), nn.Linear(hidden, num_classes)

    def forward(self, x: Tensor, edge_index: Tensor, batch: Tensor) -> Tensor:
        readouts = []
        for conv in self.convs:
            x = conv(x, edge_index)
            readouts.append(global_add_pool(x, batch))
        return self.lin2(self.lin1(torch.cat(readouts, dim=-1)).relu())


class PlainSpline(nn.Module):
    def __init__(self, num_features: int, num_classes: int, hidden: int = 16,
                 kernel_size: int = 2, dim: int = 1, degree: int = 1,
                 dropout: float = 0.5) -> None:
        from torch_geometric.nn import SplineConv  # needs torch-spline-conv

        super().__init__()
        self.conv1 = SplineConv(num_features, hidden, dim=dim, kernel_size=kernel_size,
                                degree=degree)
        self.conv2 = SplineConv(hidden, num_classes, dim=dim, kernel_size=kernel_size,
                                degree=degree)

    def forward(self, x: Tensor, edge_index: Tensor, edge_attr: Tensor) -> Tensor:
        x = nn.functional.elu(self.conv1(x, edge_index, edge_attr))
        return self.conv2(x, edge_index, edge_attr)


PLAIN = {"gcn": PlainGCN, "gin": PlainGIN, "spline": PlainSpline}


def load_plain(path: Path) -> tuple[dict[str, Tensor], dict[str, str]]:
    """The file's state dict, int8 weights dequantized as the metadata documents."""
    tensors = load_file(path)
    with safe_open(path, framework="pt") as f:
        metadata = f.metadata()
    if metadata["weights"] == "int8":
        for name, quant in json.loads(metadata["quantized"]).items():
            scale = tensors.pop(name + ".scale")
            shape = [1] * tensors[name].dim()
            shape[quant["axis"]] = -1
            tensors[name] = tensors[name].to(torch.float32) * scale.view(shape)
    return tensors, metadata


def plain_model(tensors: dict[str, Tensor], metadata: dict[str, str]) -> nn.Module:
    model = PLAIN[metadata["model"]](json.loads(metadata["num_features"]),
                                     json.loads(metadata["num_classes"]),
                                     **json.loads(metadata["kwargs"]))
    model.load_state_dict(tensors, strict=True)
    return model.eval()


# ---- trial files, logged as MLflow trials ----------------------------------------------------


def _log_trial(client: MlflowClient, experiment: str, model_file: Path) -> str:
    run = client.create_run(experiment, tags={"gnn_search.role": "trial"})
    client.log_artifact(run.info.run_id, str(model_file), "model")  # model/model.gnnz
    client.set_terminated(run.info.run_id, "FINISHED")
    return run.info.run_id


@pytest.fixture(scope="module")
def tasks(data_root):
    return {"cora": ("node_classification", CORA,
                     build_task("node_classification", CORA, data_root, seed=0)),
            "proteins": ("graph_classification", PROTEINS,
                         build_task("graph_classification", PROTEINS, data_root, seed=0))}


@pytest.fixture(scope="module")
def store(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("safetensors-store")
    uri = f"sqlite:///{tmp / 'mlflow.db'}"
    client = MlflowClient(uri)
    experiment = client.create_experiment("export", artifact_location=(tmp / "a").as_uri())
    return {"uri": uri, "client": client, "experiment": experiment, "tmp": tmp}


@pytest.fixture(scope="module")
def trials(tasks, store, cache_dir):
    """Each case's trial: its MLflow run id, model file and task."""
    out = {}
    for case, (dataset, model, config) in CASES.items():
        task_name, spec, task = tasks[dataset]
        baseline, _ = get_baseline(task, task_name, spec, {"name": model, "kwargs": {}},
                                   TRAINING, 0, cache_dir, progress=False)
        result = run_cycle(config, task, baseline, lambda r: None, store["tmp"] / case,
                           seed=0, measure_settings=fast_measure())
        run_id = _log_trial(store["client"], store["experiment"], result.model_path)
        out[case] = (run_id, result.model_path, task)
    return out


def export(store, run_id: str, out: Path, *options: str) -> int:
    return main(["export", "--run-id", run_id, "--out", str(out), "--tracking-uri",
                 store["uri"], *options])


def _inputs(task) -> tuple[Tensor, ...]:
    """A forward's inputs: the whole graph (node tasks) or the test graphs as one batch."""
    if hasattr(task, "edge_attr"):
        return task.x, task.edge_index, task.edge_attr
    return task.test.x, task.test.edge_index, task.test.batch


def _reference_logits(model_file: Path, inputs: tuple[Tensor, ...]) -> Tensor:
    """The project's reloaded model, its activation quantizers (not in the file) left off."""
    reloaded, meta = load_compressed(model_file)
    spec = meta["model"]
    model = build_model(spec["name"], meta["num_features"], meta["num_classes"],
                        **spec.get("kwargs", {}))
    model.load_state_dict({k: v for k, v in reloaded.state_dict().items()
                           if not k.startswith("act_quant.")}, strict=True)
    with torch.no_grad():
        return model.eval()(*inputs)


def _plain_logits(model: nn.Module, name: str, inputs: tuple[Tensor, ...]) -> Tensor:
    with torch.no_grad():
        return model(*inputs[:2]) if name == "gcn" else model(*inputs)


def _check_export(store, run_id: str, model_file: Path, task, tmp_path: Path) -> dict:
    """Export float and int8 files, load both plainly, compare weights and logits."""
    assert export(store, run_id, tmp_path / "f.safetensors", "--format", "safetensors") == 0
    assert export(store, run_id, tmp_path / "q.safetensors", "--format", "safetensors",
                  "--weights", "int8") == 0
    floats, meta_f = load_plain(tmp_path / "f.safetensors")
    dequantized, meta_q = load_plain(tmp_path / "q.safetensors")
    assert (meta_f["weights"], meta_q["weights"]) == ("float", "int8")
    assert sorted(floats) == sorted(dequantized)
    for name in floats:  # the same weights either way, bit for bit
        assert floats[name].dtype == dequantized[name].dtype, name
        assert torch.equal(floats[name], dequantized[name]), name
    inputs = _inputs(task)
    reference = _reference_logits(model_file, inputs)
    for tensors, metadata in ((floats, meta_f), (dequantized, meta_q)):
        logits = _plain_logits(plain_model(tensors, metadata), metadata["model"], inputs)
        assert logits.shape == reference.shape
        assert (logits - reference).abs().max() <= REL_TOL * reference.abs().max()
    return meta_q


@pytest.mark.parametrize("case", list(CASES))
def test_plain_pyg_loads_the_export(case, trials, store, tmp_path):
    run_id, model_file, task = trials[case]
    metadata = _check_export(store, run_id, model_file, task, tmp_path)
    config = CASES[case][2]
    quantized = json.loads(metadata["quantized"])
    raw = load_file(tmp_path / "q.safetensors")
    if config["quant.method"] == "fp32":
        assert quantized == {} and not any(k.endswith(".scale") for k in raw)
        return
    assert quantized and {q["bits"] for q in quantized.values()} == {config["quant.bits"]}
    qmax = 2 ** (config["quant.bits"] - 1) - 1
    for name, quant in quantized.items():
        values, scale = raw[name], raw[name + ".scale"]
        assert values.dtype == torch.int8 and scale.dtype == torch.float32
        assert scale.shape == (values.shape[quant["axis"]],)  # one per output channel
        assert int(values.abs().max()) <= qmax
    if config["prune.method"] != "none":  # pruned zeros stay zero in the integers
        zeros = sum(int((raw[n] == 0).sum()) for n in quantized)
        assert zeros >= (config["prune.sparsity"] - 1e-3) * sum(raw[n].numel()
                                                                 for n in quantized)


def test_metadata_says_what_the_file_holds_and_leaves_out(trials, store, tmp_path):
    run_id, model_file, _ = trials["gcn-pruned-int8"]
    assert export(store, run_id, tmp_path / "m.safetensors", "--format", "safetensors") == 0
    reloaded, meta = load_compressed(model_file)
    state = reloaded.state_dict()
    with safe_open(tmp_path / "m.safetensors", framework="pt") as f:
        metadata, keys = f.metadata(), set(f.keys())
    assert metadata["model"] == "gcn" and json.loads(metadata["kwargs"]) == meta["model"]["kwargs"]
    assert json.loads(metadata["num_features"]) == meta["num_features"] == 1433
    assert json.loads(metadata["num_classes"]) == meta["num_classes"] == 7
    assert json.loads(metadata["quantized"]) == {"conv1.lin.weight": {"bits": 8, "axis": 0},
                                                 "conv2.lin.weight": {"bits": 8, "axis": 0}}
    assert json.loads(metadata["activation_quant"]) == meta["activation_quant"]
    assert meta["activation_quant"]["bits"] == 8  # QAT quantized activations: the file does not
    dropped = sorted(k for k in state if k.startswith("act_quant."))
    assert dropped and sorted(json.loads(metadata["left_out"])) == dropped
    assert keys == set(state) - set(dropped)
    assert "not PyG layers" in metadata["left_out_note"]
    assert json.loads(metadata["config"]) == meta["config"]
    sidecar = json.loads((tmp_path / "m.safetensors.json").read_text())
    assert sidecar["run_id"] == run_id and "safetensors.torch import load_file" in (
        sidecar["load_with"])


def test_default_format_still_copies_the_model_file(trials, store, tmp_path):
    run_id, model_file, _ = trials["gcn-fp32"]
    assert export(store, run_id, tmp_path / "m.gnnz") == 0
    assert (tmp_path / "m.gnnz").read_bytes() == model_file.read_bytes()
    assert "load_compressed('m.gnnz')" in json.loads(
        (tmp_path / "m.gnnz.json").read_text())["load_with"]


def _error(store, capsys, run_id: str, out: Path, *options: str) -> str:
    assert export(store, run_id, out, *options) == 2
    err = capsys.readouterr().err
    assert len(err.strip().splitlines()) == 1, err
    return err


def test_bad_input_is_refused_before_writing(trials, store, tmp_path, capsys):
    model = build_model("hgpsl", 3, 2)  # its pooling layer is this project's own
    hgpsl = tmp_path / "hgpsl" / "model.gnnz"
    hgpsl.parent.mkdir()
    save_model(hgpsl, model.state_dict(), meta={
        "model": {"name": "hgpsl", "kwargs": {}}, "num_features": 3, "num_classes": 2,
        "config": {}})
    hgpsl_run = _log_trial(store["client"], store["experiment"], hgpsl)
    (tmp_path / "new").mkdir()  # --out's folder must exist (one rule for every --out)
    out = tmp_path / "new" / "m.safetensors"
    err = _error(store, capsys, hgpsl_run, out, "--format", "safetensors")
    assert err == ("gnn-search export: error: --format safetensors: model 'hgpsl' is not built "
                   "from PyG and torch layers only; allowed: spline, gcn, ness, gae, gin, "
                   "graph_gcn\n")
    assert not any((tmp_path / "new").iterdir()), "nothing written"
    run_id = trials["gcn-fp32"][0]
    err = _error(store, capsys, run_id, out, "--weights", "int8")
    assert "--weights int8 applies to --format safetensors only" in err
    (tmp_path / "taken.safetensors").write_text("mine")
    err = _error(store, capsys, run_id, tmp_path / "taken.safetensors", "--format",
                 "safetensors")
    assert "taken.safetensors already exists; choose another path or remove it" in err
    assert (tmp_path / "taken.safetensors").read_text() == "mine"
    err = _error(store, capsys, run_id, out, "--format", "onnx")
    assert "argument --format: invalid choice: 'onnx'" in err
    assert not any((tmp_path / "new").iterdir())


@pytest.mark.reference
def test_spline_loads_into_pyg_spline_conv(cora_task, cora_baseline, store, tmp_path):
    """Our SplineConv's state dict in PyG's SplineConv (needs torch-spline-conv)."""
    pytest.importorskip("torch_spline_conv", reason="PyG's SplineConv needs torch-spline-conv")
    result = run_cycle(QAT8, cora_task, cora_baseline, lambda r: None, tmp_path / "trial",
                       seed=0, measure_settings=fast_measure())
    run_id = _log_trial(store["client"], store["experiment"], result.model_path)
    metadata = _check_export(store, run_id, result.model_path, cora_task, tmp_path)
    assert json.loads(metadata["quantized"])["conv1.weight"] == {"bits": 8, "axis": 2}
