"""Bring your own model: a user's class by import path (``model: {class: ...}``) or a name
an installed package registers (entry-point group ``gnn_search.models``), checked on the
task's real data before a search starts, compressed by every method that applies, written to
a model file that records the class path and loads it back by name, deployed and exported.

The user's models live in ``tests/usermodels/models.py``, outside the project's packages.
"""

from __future__ import annotations

import importlib.metadata
import json
import re
import sys
from pathlib import Path

import pytest
import torch

from spaces import SpaceError, load_space
from tests.conftest import CORA, fast_measure
from trainables.models import (
    ENTRY_POINT_GROUP,
    MODELS,
    _entry_points,
    build_model,
    message_passing_layers,
    model_class,
    model_names,
)

REPO = Path(__file__).resolve().parents[1]  # holds the package tests.usermodels
PKG = "tests.usermodels.models"
NODE_SPACE = """\
task: node_classification
dataset: {loader: planetoid, name: Cora, split: random, num_val: 500, num_test: 500}
model: MODEL
baseline: {epochs: 20, lr: 0.01, weight_decay: 5.0e-4, seed: 0}
objectives: {val_acc: max, size_bytes: min}
space:
  prune.method: [global, none]
  prune.sparsity: {low: 0.3, high: 0.9}
  quant.method: [fp32, qat]
  quant.bits: [8]
  finetune.epochs: {low: 1, high: 2}
"""
LINK_DATASET = ("{loader: planetoid, name: Cora, split: random, val_ratio: 0.05, test_ratio: "
                "0.1, subgraphs: 2}")
GRAPH_DATASET = ("{loader: tu, name: PROTEINS, split: stratified, val_ratio: 0.1, test_ratio: "
                 "0.1, metric: acc, batch_size: 128}")


def _space(tmp_path: Path, model: str, task: str = "node_classification",
           dataset: str | None = None) -> Path:
    text = NODE_SPACE.replace("MODEL", model).replace("node_classification", task)
    if dataset is not None:
        text = text.replace(text.splitlines()[1], f"dataset: {dataset}")
    if task == "link_prediction":
        text = text.replace("val_acc: max", "val_roc_auc: max")
    path = tmp_path / "space.yaml"
    path.write_text(text)
    return path


def _cls(name: str, kwargs: str = "{}") -> str:
    return f'{{class: "{PKG}:{name}", kwargs: {kwargs}}}'


# ---- the space file ------------------------------------------------------------------------


def test_a_space_file_names_a_class_by_import_path(tmp_path):
    space = load_space(_space(tmp_path, _cls("SAGE", "{hidden: 8}")))
    spec = {"class": f"{PKG}:SAGE", "kwargs": {"hidden": 8}}
    # what the baseline's cache key hashes and the model file records
    assert space.model.as_dict() == space.model.model_dump() == spec
    assert space.model.label == f"{PKG}:SAGE" and not space.model.builtin
    model = build_model(spec, 10, 3)
    assert type(model) is model_class(spec) and model.conv1.out_channels == 8
    # a built-in's spec is what it always was: cached baselines keep their keys
    assert load_space("cora_node").model.model_dump() == {
        "name": "spline", "kwargs": {"hidden": 16, "kernel_size": 2, "dropout": 0.5}}


def test_the_cache_key_follows_class_kwargs_and_code(tmp_path, monkeypatch):
    from trainables import baseline as baseline_mod

    args = ("node_classification", CORA)
    training = {"epochs": 1, "lr": 0.01}
    sage = {"class": f"{PKG}:SAGE", "kwargs": {"hidden": 8}}
    key = baseline_mod.baseline_key(*args, sage, training, 0)
    assert key != baseline_mod.baseline_key(*args, {**sage, "kwargs": {"hidden": 9}},
                                            training, 0)
    assert key != baseline_mod.baseline_key(*args, {**sage, "class": f"{PKG}:GAT"},
                                            training, 0)
    monkeypatch.setattr(baseline_mod, "model_code", lambda model: "edited")
    assert key != baseline_mod.baseline_key(*args, sage, training, 0), "edited code retrains"


LOAD_ERRORS = {
    "no-module": (_cls("SAGE").replace(PKG, "no_such_pkg.models"),
                  "model.class: cannot import model class 'no_such_pkg.models:SAGE' (No module "
                  "named 'no_such_pkg'); install the package that holds it, put it on "
                  "PYTHONPATH or run from its folder"),
    "no-attribute": (_cls("Missing"), f"model.class: cannot import model class '{PKG}:Missing' "
                     f"(module '{PKG}' has no attribute 'Missing')"),
    "not-a-path": ('{class: "tests.usermodels.models.SAGE"}', "model.class: model class "
                   "'tests.usermodels.models.SAGE' is not an import path; expected "
                   "'package.module:Class'"),
    "not-a-module": (_cls("NotAModule"), f"model.class: model class '{PKG}:NotAModule' is class "
                     "NotAModule, not a torch.nn.Module subclass"),
    "not-a-class": (_cls("not_a_class"), f"model class '{PKG}:not_a_class' is an object of "
                    "type int, not a torch.nn.Module subclass"),
    "name-and-class": (f'{{name: gcn, class: "{PKG}:SAGE"}}', "model: give name or class, not "
                       f"both (name 'gcn', class '{PKG}:SAGE')"),
    "neither": ("{kwargs: {hidden: 8}}", "model: missing key 'name' (a registered model) or "
                "'class'"),
    "unknown-kwarg": (_cls("SAGE", "{hiddn: 8}"), f"model.kwargs: unknown argument 'hiddn' for "
                      f"model '{PKG}:SAGE'; allowed: hidden, dropout"),
    "misspelt-key": (f'{{clas: "{PKG}:SAGE"}}', "model: unknown key 'clas'; did you mean "
                     "'class'?"),
}


@pytest.mark.parametrize("case", list(LOAD_ERRORS))
def test_a_bad_model_is_refused_when_the_space_loads(case, tmp_path):
    model, message = LOAD_ERRORS[case]
    with pytest.raises(SpaceError) as err:
        load_space(_space(tmp_path, model))
    assert "\n" not in str(err.value) and message in str(err.value), str(err.value)


def test_structured_pruning_refuses_a_users_layer_it_cannot_prune(tmp_path):
    """DependencyGraph finds a user's SAGEConv channels; a multi-head GATConv is refused when
    the space loads, in one line naming the layer."""
    for cls, kwargs in (("SAGE", "{hidden: 16}"), ("GAT", "{}")):
        model = f'{{class: "{PKG}:{cls}", kwargs: {kwargs}}}'
        text = _space(tmp_path, model).read_text().replace("[global, none]", "[structured, none]")
        (tmp_path / "space.yaml").write_text(text)
        if cls == "SAGE":
            assert load_space(tmp_path / "space.yaml").model.as_dict()["class"] == f"{PKG}:SAGE"
            continue
        with pytest.raises(SpaceError) as err:
            load_space(tmp_path / "space.yaml")
        assert "\n" not in str(err.value), str(err.value)
        assert re.search(r"space.prune.method: prune.method='structured' .*cannot prune layer "
                         r"'conv1' \(GATConv\): GATConv with heads=2 couples heads x channels",
                         str(err.value)), str(err.value)


# ---- checked on the real data ----------------------------------------------------------------


@pytest.fixture(scope="module")
def tasks(data_root):
    from trainables.tasks import build_task

    return {
        "node_classification": build_task("node_classification", CORA, data_root, 0),
        "link_prediction": build_task("link_prediction", {
            "loader": "planetoid", "name": "Cora", "split": "random", "val_ratio": 0.05,
            "test_ratio": 0.1, "subgraphs": 2}, data_root, 0),
        "graph_classification": build_task("graph_classification", {
            "loader": "tu", "name": "PROTEINS", "split": "stratified", "val_ratio": 0.1,
            "test_ratio": 0.1, "metric": "acc", "batch_size": 128}, data_root, 0),
    }


def _load(tmp_path, model: str, task: str):
    dataset = {"link_prediction": LINK_DATASET, "graph_classification": GRAPH_DATASET}.get(task)
    return load_space(_space(tmp_path, model, task, dataset))


@pytest.mark.parametrize(("task", "model"), [
    ("node_classification", "SAGE"), ("node_classification", "GAT"),
    ("link_prediction", "Encoder"),
    ("graph_classification", "GraphSAGE"),
])
def test_a_fitting_class_passes_the_check_on_the_real_data(task, model, tasks, tmp_path):
    space = _load(tmp_path, _cls(model), task)
    before = torch.random.get_rng_state()
    space.check_on_data(tasks[task])
    assert torch.equal(torch.random.get_rng_state(), before), "the baseline's seed decides"


DATA_ERRORS = {
    "wrong-shape": ("node_classification", _cls("WrongShape"),
                    f"model '{PKG}:WrongShape': forward returned shape [2708, 3] on task "
                    "'node_classification''s data; expected [2708, 7] ([num_nodes, "
                    "num_classes] logits)"),
    "node-model-on-graphs": ("graph_classification", _cls("SAGE"),
                             f"model '{PKG}:SAGE': forward returned shape [",
                             ), "wrong-signature": (
        "node_classification", _cls("OneArgument"),
        f"model '{PKG}:OneArgument': forward(x) does not take "
        "what task 'node_classification' passes: forward(x [2708, 1433], edge_index "
        "[2, 10556], edge_attr [10556, 1])"),
    "two-argument-forward-on-nodes": ("node_classification", _cls("Encoder"),
                                      "does not take what task 'node_classification' passes"),
    "link-passes-no-classes": ("link_prediction", _cls("SAGE"),
                               f"model '{PKG}:SAGE' cannot be built with num_features=1433, "
                               "num_classes=null (TypeError: "),
    "constructor-refuses": ("node_classification", _cls("Raising", "{hidden: 100}"),
                            f"model.kwargs: model '{PKG}:Raising' cannot be built with "
                            "num_features=1433, num_classes=7, hidden=100 (ValueError: hidden "
                            "must be at most 64, got 100); give it arguments its constructor "
                            "accepts"),
}


@pytest.mark.parametrize("case", list(DATA_ERRORS))
def test_a_class_that_does_not_fit_the_task_is_refused_on_the_real_data(case, tasks, tmp_path):
    task, model, message = DATA_ERRORS[case]
    space = _load(tmp_path, model, task)
    with pytest.raises(SpaceError) as err:
        space.check_on_data(tasks[task])
    assert "\n" not in str(err.value) and message in str(err.value), str(err.value)
    assert str(err.value).startswith(space.source)
    if case == "node-model-on-graphs":
        assert "expected [" in str(err.value) and "[num_graphs, num_classes] logits" in str(
            err.value)


# ---- through the CLI: exit 2, one line, nothing started ------------------------------------


@pytest.mark.slow
@pytest.mark.parametrize("case", ["no-module", "not-a-module", "name-and-class", "wrong-shape",
                                  "wrong-signature", "constructor-refuses"])
@pytest.mark.parametrize("command", ["run", "trial"])
def test_the_cli_refuses_a_bad_model_before_any_work(case, command, tmp_path, data_root,
                                                     capsys, monkeypatch):
    import ray
    from mlflow.tracking import MlflowClient

    from search.cli import main

    model, message = (LOAD_ERRORS[case] if case in LOAD_ERRORS
                      else DATA_ERRORS[case][1:])
    space = _space(tmp_path, model)
    cache, storage, db = tmp_path / "cache", tmp_path / "ray", tmp_path / "mlflow.db"
    monkeypatch.setenv("GNN_SEARCH_DATA", str(data_root))
    args = ["--space", str(space), "--cache-dir", str(cache)]
    if command == "run":
        args += ["--storage", str(storage), "--tracking-uri", f"sqlite:///{db}", "--name",
                 "mine", "--quiet"]
        # an existing tracking store (a new sqlite file gets MLflow's tables, and two log
        # lines, when the search first opens it: before the data loads)
        MlflowClient(f"sqlite:///{db}").search_experiments()
    else:
        args += ["--out", str(tmp_path / "out")]
    capsys.readouterr()
    code = main([command, *args])
    err = capsys.readouterr().err.strip().splitlines()
    assert code == 2 and len(err) == 1, err
    assert err[0].startswith(f"gnn-search {command}: error: ") and message in err[0], err[0]
    assert not ray.is_initialized(), "Ray was not started"
    assert not (storage / "mine").exists() and not (tmp_path / "out").exists()
    assert not (cache / "baselines").exists(), "no baseline was trained"
    if command == "run":
        assert MlflowClient(f"sqlite:///{db}").get_experiment_by_name("mine") is None


# ---- compression: every layer quantized, every method runs ----------------------------------


@pytest.mark.parametrize("model", ["SAGE", "GAT"])
def test_activation_quantizers_attach_to_every_message_passing_layer(model, tasks):
    from trainables.models import compression_targets
    from trainables.quantization import QUANTIZERS, attach_activation_quant

    task = tasks["node_classification"]
    spec = {"class": f"{PKG}:{model}", "kwargs": {}}
    layers = set(message_passing_layers(build_model(spec, task.num_features,
                                                    task.num_classes)))
    assert layers == {"conv1", "conv2"}
    quantizing = [m for m in QUANTIZERS if QUANTIZERS[m]().activation(8, task.num_nodes)]
    assert {"qat", "degree_quant", "a2q"} <= set(quantizing)
    for method in quantizing:
        net = build_model(spec, task.num_features, task.num_classes)
        quantizer = QUANTIZERS[method]()
        quantizer.prepare(net, compression_targets(net), 8, num_nodes=task.num_nodes)
        if not hasattr(net, "act_quant"):  # PTQ: attached for calibration, after training
            attach_activation_quant(net, quantizer.activation_spec)
        assert {k.replace("__", ".") for k in net.act_quant} == layers, method
        seen = []
        for quant in net.act_quant.values():
            quant.register_forward_hook(lambda m, args, out, seen=seen: seen.append(m))
        net.train()
        loss = net(*task.example_inputs()).sum()
        loss.backward()
        assert len(seen) == len(layers), f"{method}: every layer's input went through it"
        assert all(bool(q.ready) for q in net.act_quant.values()), method


@pytest.fixture(scope="module")
def sage_baseline(tasks, cache_dir):
    from trainables.baseline import get_baseline

    spec = {"class": f"{PKG}:SAGE", "kwargs": {"hidden": 16}}
    baseline, _ = get_baseline(tasks["node_classification"], "node_classification", CORA, spec,
                               {"epochs": 30, "lr": 0.01, "weight_decay": 5e-4}, 0, cache_dir,
                               progress=False)
    return baseline


def _methods():
    from trainables.params import check_fit
    from trainables.pruning import PRUNERS
    from trainables.quantization import QUANTIZERS
    from trainables.structured import registered_support

    configs = []
    for prune in PRUNERS:
        config = {"prune.method": prune, "quant.method": "fp32"}
        if prune != "none":
            config["prune.sparsity"] = 0.5
        configs.append(config)
    for quant in QUANTIZERS:
        if quant != "fp32":
            configs.append({"prune.method": "global", "prune.sparsity": 0.5,
                            "quant.method": quant, "quant.bits": 8})
    fits = []
    for config in configs:
        try:
            check_fit(config, True, lambda: registered_support(
                "node_classification", {"class": f"{PKG}:SAGE", "kwargs": {"hidden": 16}}))
        except ValueError:
            continue
        fits.append(config)
    return fits


@pytest.mark.slow
@pytest.mark.parametrize("config", _methods(),
                         ids=lambda c: f"{c['prune.method']}-{c['quant.method']}")
def test_every_method_compresses_a_users_model(config, tasks, sage_baseline, tmp_path):
    from tests.test_runtime import assert_same_answers
    from trainables.compressed import load_compressed
    from trainables.cycle import run_cycle

    task = tasks["node_classification"]
    config = {**config, "finetune.epochs": 2, "finetune.lr": 0.005}
    result = run_cycle(config, task, sage_baseline, lambda r: None, tmp_path,
                       measure_settings=fast_measure())
    m = result.metrics
    assert result.tags["roundtrip"] == "exact"
    if config["prune.method"] == "structured":  # whole channels: rows and columns go
        assert 0.3 <= m["sparsity_actual"] <= 1 - (1 - 0.5) ** 2 + 0.01
    elif config["prune.method"] != "none":
        assert m["sparsity_actual"] >= 0.49
    assert m["avg_bits"] == config.get("quant.bits", 32)
    model, meta = load_compressed(result.model_path)
    assert meta["model"] == {"class": f"{PKG}:SAGE", "kwargs": {"hidden": 16}}
    assert type(model).__name__ == "SAGE"
    if config["quant.method"] not in ("fp32",):
        assert set(model.act_quant) == {"conv1", "conv2"}
    # SAGEConv is a layer the runtime has no kernel for: it runs eagerly, same answers
    scores = assert_same_answers(task, result.model_path,
                                 quantized="quant.bits" in config)
    assert scores == {"val_acc": m["val_acc"], "test_acc": m["test_acc"]}
    assert "conv1" not in result.tags["latency_kernel"].replace("conv1:eager", "")


# ---- the model file --------------------------------------------------------------------------


@pytest.fixture(scope="module")
def sage_file(tasks, sage_baseline, tmp_path_factory):
    from trainables.cycle import run_cycle

    out = tmp_path_factory.mktemp("sage")
    config = {"prune.method": "global", "prune.sparsity": 0.7, "quant.method": "qat",
              "quant.bits": 8, "finetune.epochs": 2}
    result = run_cycle(config, tasks["node_classification"], sage_baseline, lambda r: None,
                       out, measure_settings=fast_measure())
    return result


def test_the_model_file_loads_the_class_by_its_path(sage_file, tasks):
    from trainables import deployment
    from trainables.compressed import load_compressed
    from trainables.model_file import load_state

    task = tasks["node_classification"]
    _, meta = load_state(sage_file.model_path)
    assert meta["model"] == {"class": f"{PKG}:SAGE", "kwargs": {"hidden": 16}}
    model, _ = load_compressed(sage_file.model_path)
    deployed, _ = deployment.load_deployed(sage_file.model_path, task)
    assert task.evaluate(deployed) == task.evaluate(model) == {
        "val_acc": sage_file.metrics["val_acc"], "test_acc": sage_file.metrics["test_acc"]}
    with torch.inference_mode():
        assert torch.equal(task.inference(deployed)(), task.inference(model)())


def test_a_model_file_whose_class_is_gone_is_one_line(sage_file, tmp_path):
    import shutil

    from trainables.compressed import load_compressed
    from trainables.model_file import StorageError, update_meta

    path = tmp_path / "moved.gnnz"
    shutil.copy(sage_file.model_path, path)
    update_meta(path, model={"class": "gone_pkg.models:SAGE", "kwargs": {"hidden": 16}})
    with pytest.raises(StorageError) as err:
        load_compressed(path)
    assert str(err.value) == (
        f"{path}: its model 'gone_pkg.models:SAGE' cannot be loaded (cannot import model class "
        "'gone_pkg.models:SAGE' (No module named 'gone_pkg'); install the package that holds "
        "it, put it on PYTHONPATH or run from its folder)")


def test_infer_runs_a_users_model_file(sage_file, data_root, capsys, monkeypatch):
    import functools

    from search.cli import main
    from trainables import measure

    monkeypatch.setenv("GNN_SEARCH_DATA", str(data_root))
    monkeypatch.setattr(measure, "MeasureSettings", functools.partial(
        measure.MeasureSettings, warmup=0, min_repeats=1, max_repeats=1))  # not timed here
    capsys.readouterr()
    assert main(["infer", "--model", str(sage_file.model_path), "--json"]) == 0
    out = json.loads(capsys.readouterr().out)
    assert out["test_acc"] == pytest.approx(sage_file.metrics["test_acc"])


def test_safetensors_export_of_a_users_model(sage_file, tmp_path):
    from safetensors import safe_open
    from safetensors.torch import load_file

    from analysis.safetensors_export import write_safetensors
    from trainables.compressed import load_compressed

    out = write_safetensors(sage_file.model_path, tmp_path / "m.safetensors")
    with safe_open(str(out), "pt") as f:
        metadata = f.metadata()
    assert metadata["model"] == f"{PKG}:SAGE"
    assert metadata["forward"] == f"SAGE.forward in {PKG}"
    plain = build_model({"class": f"{PKG}:SAGE", "kwargs": {"hidden": 16}},
                        json.loads(metadata["num_features"]), json.loads(metadata["num_classes"]))
    plain.load_state_dict(load_file(str(out)))  # the user's own class takes the file
    eager, _ = load_compressed(sage_file.model_path)
    for name, tensor in plain.state_dict().items():
        assert torch.equal(tensor, eager.state_dict()[name]), name


# ---- entry points ----------------------------------------------------------------------------


def _plugin(root: Path, lines: str, dist: str = "my_gnns") -> Path:
    """An installed distribution as importlib.metadata finds it: a ``*.dist-info`` folder
    with METADATA and entry_points.txt, on sys.path."""
    info = root / f"{dist}-1.0.dist-info"
    info.mkdir(parents=True)
    (info / "METADATA").write_text(f"Metadata-Version: 2.1\nName: {dist}\nVersion: 1.0\n")
    (info / "entry_points.txt").write_text(f"[{ENTRY_POINT_GROUP}]\n{lines}\n")
    return root


@pytest.fixture
def plugin_path(tmp_path, monkeypatch):
    def install(lines: str, dist: str = "my_gnns") -> None:
        monkeypatch.syspath_prepend(str(_plugin(tmp_path / dist, lines, dist)))
        importlib.invalidate_caches()
        _entry_points.cache_clear()

    yield install
    monkeypatch.undo()
    importlib.invalidate_caches()
    _entry_points.cache_clear()


def test_an_installed_package_registers_a_model_name(plugin_path, tmp_path, tasks):
    plugin_path(f"sage = {PKG}:SAGE\ngat = {PKG}:GAT")
    assert model_names() == [*MODELS, "sage", "gat"]
    assert model_class("sage").__name__ == "SAGE"
    space = load_space(_space(tmp_path, "{name: sage, kwargs: {hidden: 8}}"))
    assert space.model.model_dump() == {"name": "sage", "kwargs": {"hidden": 8}}
    assert not space.model.builtin  # no task spec lists it: the real-data check decides
    space.check_on_data(tasks["node_classification"])


def test_a_plugin_with_a_built_in_name_is_an_error_naming_both(plugin_path, tmp_path):
    plugin_path(f"gcn = {PKG}:SAGE")
    with pytest.raises(SpaceError) as err:
        load_space(_space(tmp_path, "{name: gcn}"))
    assert "\n" not in str(err.value)
    assert ("model name 'gcn' is both the built-in trainables.models:GCN and the plugin "
            f"{PKG}:SAGE of my_gnns (entry point group gnn_search.models); rename the "
            "plugin's entry point") in str(err.value)


def test_a_plugin_that_does_not_import_is_one_line(plugin_path, tmp_path):
    plugin_path("broken = no_such_pkg.models:SAGE")
    with pytest.raises(SpaceError) as err:
        load_space(_space(tmp_path, "{name: broken}"))
    assert "model.name: model 'broken' (entry point no_such_pkg.models:SAGE) cannot be " \
           "imported (No module named 'no_such_pkg')" in str(err.value)


def test_no_plugins_means_the_built_ins():
    names = [ep.name for ep in importlib.metadata.entry_points(group=ENTRY_POINT_GROUP)]
    assert names == [] and model_names() == list(MODELS)
    model_class({"class": f"{PKG}:SAGE"})
    assert str(Path(sys.modules[PKG].__file__)).endswith("tests/usermodels/models.py")


def test_a_linear_layer_on_more_than_two_dims_is_deployed(tasks):
    from trainables import deployment

    task = tasks["node_classification"]
    spec = {"class": f"{PKG}:Heads", "kwargs": {}}
    model = build_model(spec, task.num_features, task.num_classes)
    with torch.inference_mode():
        expected = task.inference(model)()
    deployed = deployment.deploy_model(model, task, settings=fast_measure())
    assert "lin" in deployed.layers and deployed.plan["lin"] == ["mm"]
    with torch.inference_mode():
        assert torch.allclose(task.inference(deployed)(), expected, atol=1e-5)


@pytest.mark.slow
@pytest.mark.integration
def test_a_search_runs_a_users_model_on_ray(tmp_path, data_root, cache_dir):
    """Ray's workers import the class by its path (PYTHONPATH, as the driver's)."""
    from tests import fault_helpers as fh
    from trainables.model_file import load_state

    space = _space(tmp_path, _cls("SAGE", "{hidden: 8}"))
    proc = fh.cli(["run", "--space", str(space), "--trials", "1", "--concurrency", "1",
                   "--name", "byom", "--storage", str(tmp_path / "ray"), "--tracking-uri",
                   f"sqlite:///{tmp_path / 'mlflow.db'}", *fh.FAST], tmp_path,
                  fh.cli_env(data_root, cache_dir, {"PYTHONPATH": str(REPO)}))
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    (path,) = (tmp_path / "ray").rglob("model.gnnz")
    assert load_state(path)[1]["model"] == {"class": f"{PKG}:SAGE", "kwargs": {"hidden": 8}}


def test_every_task_says_what_its_forward_gets():
    from trainables.model_check import FORWARD
    from trainables.tasks import TASKS

    assert set(FORWARD) == set(TASKS)
