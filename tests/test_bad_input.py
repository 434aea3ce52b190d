"""Bad input: every row of the README's table, run against the real CLI next to an existing
search. Each gives exit code 2 and one line naming the value and what is allowed, before any
trial starts, and leaves the existing search (Tune's storage and MLflow) as it was."""

from __future__ import annotations

import re
import shutil
import socket
from dataclasses import dataclass
from pathlib import Path

import pytest
from mlflow.entities import ViewType
from mlflow.tracking import MlflowClient

from search.cli import main
from tests import fault_helpers as fh
from tests.ray_loopback import free_port
from trainables.model_file import update_meta

REPO = Path(__file__).resolve().parents[1]
VALID = fh.SPACE.replace("EPOCHS", "{low: 2, high: 3}")
CORA = "loader: planetoid, name: Cora"  # VALID's data, replaced by other sources below
BROKEN = "function: 'tests.userdata.broken:{}'"  # dataset functions wrong on purpose
GRAPHS = re.sub(r"dataset: .*", "dataset: {" + BROKEN.format("mixed_features") + "}",
                VALID).replace("node_classification", "graph_classification").replace(
                    "name: gcn", "name: gin")


@dataclass
class Case:
    args: list[str]  # {space} {storage} {uri} {tmp} {port} {busy} are filled in
    message: str  # names the bad value: in the README's table and in the line on stderr
    allowed: str  # what is allowed, or what to do: in the table and in the line too
    space: str | bytes | None = None  # the space file {space} holds (default: a valid one)


def run(*extra: str) -> list[str]:
    return ["run", "--space", "{space}", "--storage", "{storage}", "--tracking-uri", "{uri}",
            "--name", "fresh", *extra]


CASES = {
    "malformed-yaml": Case(run(), "malformed YAML", "expected a YAML mapping of task, dataset",
                           space="task: [unclosed"),
    "unknown-task": Case(run(), "task: unknown task 'node_regression'",
                         "allowed: node_classification, link_prediction",
                         space=VALID.replace("node_classification", "node_regression")),
    "unknown-model": Case(run(), "model.name: unknown model 'transformer'",
                          "allowed: spline, gcn,",
                          space=VALID.replace("name: gcn", "name: transformer")),
    "unknown-method": Case(run(), "prune.method='lottery' is not allowed",
                           "expected one of none, global,",
                           space=VALID.replace("[global, none]", "[global, lottery]")),
    "sparsity-range": Case(run(), "prune.sparsity=1.2 is not allowed",
                           "expected a number in [0.0, 1.0)",
                           space=VALID.replace("high: 0.9}", "high: 1.2}")),
    "negative-sparsity": Case(run(), "prune.sparsity=-0.1 is not allowed",
                              "expected a number in [0.0, 1.0)",
                              space=VALID.replace("low: 0.3,", "low: -0.1,")),
    "unsupported-bits": Case(run(), "quant.bits=16 is not allowed", "expected one of 4, 8",
                             space=VALID.replace("[8]", "[8, 16]")),
    "empty-search-space": Case(run(), "nothing to search: every parameter is fixed "
                               "(prune.method=global, finetune.lr=0.01)",
                               "give at least one a list of choices or a {low, high} range",
                               space=re.sub(r"(?s)space:\n.*", "space: {prune.method: global, "
                                            "finetune.lr: 0.01}\n", VALID)),
    "test-objective": Case(run(), "'test_acc' cannot be an objective", "allowed: val_acc,",
                           space=VALID.replace("val_acc: max", "test_acc: max")),
    "negative-trials": Case(run("--trials", "-3"), "argument --trials: '-3' is not allowed",
                            "expected an integer in 1..100000"),
    "concurrency-above-cpus": Case(run("--concurrency", "64"),
                                   "--concurrency 64 exceeds this machine's", "allowed: 1.."),
    # no GPU here: "has no GPUs"; with GPUs, fewer than 64 on one node: "exceeds the N GPUs"
    "gpus-beyond-this-machine": Case(run("--gpus-per-trial", "64"), "--gpus-per-trial 64",
                                     "this machine"),
    "bad-name": Case(run("--name", "a/b"), "--name 'a/b' is not allowed",
                     "use letters, digits, '.', '_' and '-'"),
    "malformed-address": Case(run("--address", "nowhere"),
                              "--address 'nowhere' is not a Ray address",
                              "allowed: auto, HOST:PORT"),
    "address-auto-none": Case(run("--address", "auto"),
                              "--address auto found no Ray cluster to join",
                              "start one with `ray start --head`"),
    "unreachable-cluster": Case(run("--address", "127.0.0.1:{port}"),
                                "cannot reach the Ray cluster at 127.0.0.1:",
                                "start it (`ray up ray_cluster.yaml` or `ray start --head`)"),
    "unwritable-storage": Case(run("--storage", "{tmp}/a-file/ray"), "is not writable",
                               "give a writable folder or a URI"),
    "cache-dir-file": Case(run("--cache-dir", "{tmp}/a-file/cache"),
                           "a-file is a file, not a folder", "give a folder"),
    "data-root-file": Case(run("--data-root", "{tmp}/a-file"), "a-file is a file, not a folder",
                           "give a folder"),
    "unknown-storage-uri": Case(run("--storage", "foo://bucket/x"), "--storage "
                                "'foo://bucket/x' is not a storage location Tune can use",
                                "allowed: a folder or a URI (file://, s3://, gs://"),
    "existing-name": Case(run("--name", "existing"), "a Tune experiment named 'existing' "
                          "already exists", "choose another --name, or continue it with "
                          "--resume existing"),
    "resume-unknown": Case(["run", "--resume", "nope", "--storage", "{storage}"],
                           "no search named 'nope' in", "pass the --storage it ran with"),
    "resume-with-settings": Case(["run", "--resume", "existing", "--trials", "9", "--storage",
                                  "{storage}"], "--trials cannot be given with --resume",
                                 "keeps the settings it started with"),
    "tracking-unreachable": Case(run("--tracking-uri", "http://127.0.0.1:{port}"),
                                 "is unreachable (no answer from /health)",
                                 "start one with `gnn-search mlflow-server`"),
    "tracking-credentials": Case(run("--tracking-uri", "http://me:secret@127.0.0.1:{port}"),
                                 "--tracking-uri must not carry credentials",
                                 "set MLFLOW_TRACKING_USERNAME/"),
    "trial-timeout": Case(run("--trial-timeout", "0"), "argument --trial-timeout: '0' is not "
                          "allowed", "expected a number of seconds in (0, 2592000]"),
    "max-failures": Case(run("--max-failures", "-1"), "argument --max-failures: '-1' is not "
                         "allowed", "expected an integer in 0..100"),
    "latency-threads": Case(run("--latency-threads", "0"), "argument --latency-threads: '0' is "
                            "not allowed", "expected an integer in 1..1024"),
    "missing-dataset": Case(run("--data-root", "{tmp}/empty"), "dataset 'Cora' is not in",
                            "Put its raw files there (ind.cora.x,"),
    "dataset-function-import": Case(run(), "dataset.function 'tests.userdata.nope:load' "
                                    "cannot be imported (ModuleNotFoundError: No module named",
                                    "give a module on the Python path or in the current "
                                    "folder", space=VALID.replace(
                                        CORA, "function: 'tests.userdata.nope:load'")),
    "dataset-function-and-loader": Case(run(), "dataset.function cannot be given with "
                                        "dataset.loader", "remove one", space=VALID.replace(
                                            CORA, f"{CORA}, {BROKEN.format('raises')}")),
    "dataset-function-raises": Case(run(), "dataset.function tests.userdata.broken:raises "
                                    "raised RuntimeError: nodes.csv: column 'label' is missing",
                                    "fix the function or its dataset.kwargs",
                                    space=VALID.replace(CORA, BROKEN.format("raises"))),
    "dataset-function-type": Case(run(), "dataset.function tests.userdata.broken:wrong_type "
                                  "returned dict", "task 'node_classification' expects one "
                                  "torch_geometric.data.Data graph",
                                  space=VALID.replace(CORA, BROKEN.format("wrong_type"))),
    "dataset-no-labels": Case(run(), "the graph of tests.userdata.broken:no_labels has no "
                              "labels (y)", "needs an integer class in y",
                              space=VALID.replace(CORA, BROKEN.format("no_labels"))),
    "dataset-feature-counts": Case(run(), "dataset tests.userdata.broken:mixed_features: graph "
                                   "7 has 5 node features, graph 0 has 3",
                                   "every graph needs the same features", space=GRAPHS),
    "pyg-unknown-class": Case(run(), "dataset.class 'Amazonn' is not a torch_geometric.datasets "
                              "class", "did you mean Amazon", space=VALID.replace(
                                  CORA, "loader: pyg, class: Amazonn, name: Photo")),
    "pyg-missing-dataset": Case(run("--data-root", "{tmp}/empty"), "dataset Amazon/Photo is "
                                "not in", "Put its raw files there (amazon_electronics_photo."
                                "npz)", space=VALID.replace(
                                    CORA, "loader: pyg, class: Amazon, name: Photo")),
    "corrupted-baseline": Case(run("--cache-dir", "{tmp}/bad-cache"),
                               "payload is truncated or corrupted (checksum mismatch)",
                               "delete that file and the baseline is trained again"),
    "corrupted-model": Case(["export", "--run-id", "{corrupt_run}", "--out", "{tmp}/m.gnnz",
                             "--tracking-uri", "{uri}"], "model/model.gnnz is damaged: not a "
                            "compressed GNN model file (bad magic)",
                            "export needs the model file its trial wrote"),
    "tracking-uri-scheme": Case(run("--tracking-uri", "foo://store"), "--tracking-uri "
                                "'foo://store': scheme 'foo' is not a tracking store",
                                "allowed: sqlite:////abs/path/mlflow.db, http(s)://HOST:PORT"),
    "tracking-uri-folder": Case(run("--tracking-uri", "sqlite:///{tmp}"), "is a folder",
                                "allowed: sqlite:////abs/path/mlflow.db (a file)"),
    "server-backend": Case(["mlflow-server", "--port", "{port}", "--backend-store-uri",
                            "file:///srv/mlruns"], "--backend-store-uri 'file:///srv/mlruns': "
                           "scheme 'file' is not a tracking store", "allowed: sqlite:///"),
    "server-port": Case(["mlflow-server", "--port", "70000"],
                        "argument --port: '70000' is not allowed", "expected an integer in "
                        "1..65535"),
    "server-port-busy": Case(["mlflow-server", "--port", "{busy}"], "cannot listen on "
                             "127.0.0.1:", "pick another --port (or --host)"),
    "sync-unknown": Case(["sync", "nope", "--storage", "{storage}"], "no search named 'nope'",
                         "pass the --storage it ran with"),
    "duplicate-key": Case(run(), "key 'objectives' is written twice (lines 5 and 13)",
                          "write it once", space=VALID + "objectives: {val_acc: max}\n"),
    "not-utf8": Case(run(), "not a UTF-8 text file (UTF-16 byte-order mark)",
                     "expected a YAML space file", space=VALID.encode("utf-16")),
    "key-not-a-name": Case(run(), "key '1' on line 13 is not a name", "keys must be names",
                           space=VALID + "1: x\n"),
    "misspelt-key": Case(run(), "unknown key 'objective'", "did you mean 'objectives'?",
                         space=VALID.replace("objectives:", "objective:")),
    "space-entry-type": Case(run(), "space.prune.method: expected a list of choices",
                             "a {low, high} range or a single value, got null",
                             space=VALID.replace("[global, none]", "")),
    "dataset-option": Case(run(), "dataset.val_ratio does not apply to task "
                           "'node_classification'", "allowed: loader, name, split, num_val, "
                           "num_test", space=VALID.replace("num_test: 500", "num_test: 500, "
                                                           "val_ratio: 0.1")),
    "model-argument": Case(run(), "model.kwargs: model 'gcn' cannot be built with hidden=-5",
                           "give it a value the model accepts",
                           space=VALID.replace("hidden: 16", "hidden: -5")),
    "model-class-import": Case(run(), "model.class: cannot import model class "
                               "'no_such_pkg.models:SAGE' (No module named 'no_such_pkg')",
                               "install the package that holds it, put it on PYTHONPATH or run "
                               "from its folder",
                               space=VALID.replace("name: gcn",
                                                   'class: "no_such_pkg.models:SAGE"')),
    "model-class-not-a-module": Case(run(), "model class 'tests.usermodels.models:NotAModule' "
                                     "is class NotAModule, not a torch.nn.Module subclass",
                                     "a model is an nn.Module built as Class(num_features, "
                                     "num_classes, **kwargs)", space=VALID.replace(
                                         "{name: gcn, kwargs: {hidden: 16}}",
                                         '{class: "tests.usermodels.models:NotAModule"}')),
    "model-class-and-name": Case(run(), "(name 'gcn', class 'tests.usermodels.models:SAGE')",
                                 "give name or class, not both", space=VALID.replace(
                                     "name: gcn",
                                     'name: gcn, class: "tests.usermodels.models:SAGE"')),
    "model-class-constructor": Case(run(), "model 'tests.usermodels.models:Raising' cannot be "
                                    "built with num_features=1433, num_classes=7, hidden=100 "
                                    "(ValueError: hidden must be at most 64, got 100)",
                                    "give it arguments its constructor accepts",
                                    space=VALID.replace("name: gcn, kwargs: {hidden: 16}",
                                                        'class: "tests.usermodels.models:Raising"'
                                                        ", kwargs: {hidden: 100}")),
    "model-class-forward": Case(run(), "model 'tests.usermodels.models:OneArgument': forward(x) "
                                "does not take what task 'node_classification' passes",
                                "forward(x [2708, 1433], edge_index [2, 10556], edge_attr "
                                "[10556, 1])", space=VALID.replace(
                                    "{name: gcn, kwargs: {hidden: 16}}",
                                    '{class: "tests.usermodels.models:OneArgument"}')),
    "model-class-output": Case(run(), "model 'tests.usermodels.models:WrongShape': forward "
                               "returned shape [2708, 3] on task 'node_classification''s data",
                               "expected [2708, 7] ([num_nodes, num_classes] logits)",
                               space=VALID.replace("{name: gcn, kwargs: {hidden: 16}}",
                                                   '{class: "tests.usermodels.models:WrongShape"}'
                                                   )),
    "duplicate-objective": Case(["pareto", "--experiment", "existing", "--tracking-uri",
                                 "{uri}", "--objectives", "val_acc:max,val_acc:min"],
                                "objective 'val_acc' is given both max and min",
                                "give each metric once"),
    "empty-name": Case(run("--name", ""), "argument --name: '' is empty",
                       "give a value, or leave out --name"),
    "long-name": Case(run("--name", "a" * 120), "is 120 characters long",
                      "allowed: at most 100"),
    "seed-range": Case(run("--seed", "-1"), "argument --seed: '-1' is not allowed",
                       "expected an integer in 0..4294967295"),
    "export-onto-file": Case(["export", "--run-id", "{corrupt_run}", "--out", "{tmp}/a-file",
                              "--tracking-uri", "{uri}"], "a-file already exists",
                             "choose another path or remove it"),
    "out-is-a-file": Case(["report", "--experiment", "existing", "--out", "{tmp}/a-file",
                           "--tracking-uri", "{uri}", "--no-log"], "a-file is a file",
                          "give a folder (it is created if missing, in a "
                          "folder that exists)"),
    "out-is-a-folder": Case(["pareto", "--experiment", "existing", "--out", "{tmp}",
                             "--tracking-uri", "{uri}"], "is a folder",
                            "give a file name, e.g."),
    "out-missing-folder": Case(["pareto", "--experiment", "existing", "--out",
                                "{tmp}/nowhere/front.csv", "--tracking-uri", "{uri}"],
                               "/nowhere does not exist", "create it or choose another path"),
    "out-unwritable": Case(["pareto", "--experiment", "existing", "--out", "/proc/front.csv",
                            "--tracking-uri", "{uri}"], "--out /proc/front.csv is not writable",
                           "choose another path"),
    # classes tests/test_bad_input_property.py found (a traceback, exit 1, work first, a
    # value silently replaced or coerced, a message in Python's words)
    "number-not-finite": Case(run("--energy-window", "nan"), "argument --energy-window: "
                              "'nan' is not allowed", "expected a number of seconds in "
                              "[0, 3600]"),
    "empty-value": Case(["pareto", "--experiment", "existing", "--tracking-uri", ""],
                        "argument --tracking-uri: '' is empty",
                        "give a value, or leave out --tracking-uri"),
    "name-too-long": Case(["pareto", "--experiment", "existing", "--tracking-uri", "{uri}",
                           "--out", "{tmp}/" + "x" * 300], "the name xxxxxxxxxxxxxxxxxxxx... "
                          "is 300 bytes long", "allowed: at most 255 bytes per name"),
    "tracking-not-a-database": Case(run("--tracking-uri", "sqlite:///{tmp}/a-file"),
                                    "a-file is not an SQLite database",
                                    "give the search's mlflow.db, or the name of a new file"),
    "analysis-tracking-uri": Case(["pareto", "--experiment", "existing", "--tracking-uri",
                                   "file:///{tmp}/mlruns"], "scheme 'file' is not a tracking "
                                  "store MLflow can use here", "allowed: sqlite:////abs/path/"),
    "tracking-uri-malformed": Case(run("--tracking-uri", "http://127.0.0.1:99999"),
                                   "'http://127.0.0.1:99999' is not a URI (Port out of range",
                                   "allowed: sqlite:////abs/path/mlflow.db"),
    "cache-dir-unwritable": Case(run("--cache-dir", "/proc/gnn-search-cache"),
                                 "--cache-dir /proc/gnn-search-cache is not writable",
                                 "choose another path"),
    "artifacts-destination": Case(["mlflow-server", "--port", "{port}",
                                   "--artifacts-destination", "{tmp}/a-file"],
                                  "a-file is a file, not a folder", "give a folder"),
    "allowed-hosts": Case(["mlflow-server", "--port", "{port}", "--allowed-hosts",
                           "mlflow.lan:5000,"], "--allowed-hosts 'mlflow.lan:5000,' has an "
                          "empty entry", "give hosts separated by commas"),
    "out-missing-parent": Case(["report", "--experiment", "existing", "--out",
                                "{tmp}/nowhere/report", "--tracking-uri", "{uri}", "--no-log"],
                               "/nowhere does not exist", "create it or choose another path"),
    "search-name": Case(["sync", "../existing", "--storage", "{storage}"],
                        "search name '../existing' is not allowed",
                        "use letters, digits, '.', '_' and '-'"),
    "constraint-metric": Case(["report", "--experiment", "existing", "--out", "{tmp}/r",
                               "--tracking-uri", "{uri}", "--no-log", "--constraint",
                               "nope>=1"], "unknown metric 'nope' in constraint 'nope>=1'",
                              "available: "),
    "constraint-not-finite": Case(["pareto", "--experiment", "existing", "--tracking-uri",
                                   "{uri}", "--constraint", "val_acc<=1e999"],
                                  "'1e999' is not a finite number", "expected e.g. "),
    "address-url": Case(run("--address", "http://127.0.0.1:8265"),
                        "--address 'http://127.0.0.1:8265' is not a Ray address",
                        "allowed: auto, HOST:PORT"),
    "space-value-as-written": Case(run(), "prune.method=true is not allowed",
                                   "expected one of none, global,",
                                   space=VALID.replace("[global, none]", "true")),
    "space-bool-number": Case(run(), "dataset.num_val: expected a whole number (got true)",
                              "expected a whole number",
                              space=VALID.replace("num_val: 500", "num_val: true")),
    "space-not-finite": Case(run(), "baseline.weight_decay: expected a finite number "
                             "(got .inf)", "expected a finite number",
                             space=VALID.replace("weight_decay: 5.0e-4", "weight_decay: .inf")),
    "space-is-a-folder": Case(run("--space", "{tmp}/empty"), "/empty' is a folder",
                              "give a YAML space file in it"),
    "deleted-experiment": Case(run("--name", "gone"), "MLflow experiment 'gone' is deleted",
                               "restore it (mlflow experiments restore --experiment-id"),
    "never-started": Case(run("--name", "halfway"), "holds only the parent run of a search "
                          "that never started a trial", "mlflow runs delete --run-id"),
    "run-id-ambiguous": Case(["export", "--run-id", "{ambiguous}", "--out", "{tmp}/m.gnnz",
                              "--tracking-uri", "{uri}"], "is ambiguous: ",
                             "trials match ("),
    "infer-missing-model": Case(["infer", "--model", "{tmp}/nowhere.gnnz"],
                                "nowhere.gnnz does not exist", "give a model file (model.gnnz) "
                                "that gnn-search trial, run or export wrote"),
    "infer-not-a-model": Case(["infer", "--model", "{tmp}/model.gnnz"], "model.gnnz: not a "
                              "compressed GNN model file (bad magic)",
                              "give a model file (model.gnnz)"),
    "infer-model-mismatch": Case(["infer", "--model", "{tmp}/resized.gnnz", "--space",
                                  "cora_node", "--data-root", "{data_root}"],
                                 "model expects 3 features and 2 classes; space cora_node's "
                                 "data has 1433 features and 7 classes",
                                 "pass the --space its trial ran on"),
    "infer-threads": Case(["infer", "--model", "{tmp}/trial.gnnz", "--threads", "0"],
                          "argument --threads: '0' is not allowed",
                          "expected an integer in 1..1024"),
    "infer-unknown-space": Case(["infer", "--model", "{tmp}/trial.gnnz", "--space", "nope"],
                                "space file 'nope' not found", "give a path or one of: bbbp,"),
    "infer-no-space": Case(["infer", "--model", "{tmp}/no-source.gnnz"],
                           "does not record the space it came from",
                           "pass --space NAME|FILE, the space its trial ran on"),
}


@pytest.fixture(scope="module")
def existing(tmp_path_factory, data_root, cache_dir):
    """A finished one-trial search named ``existing``, and the makings of the bad cases."""
    tmp = tmp_path_factory.mktemp("bad-input")
    storage, uri = tmp / "ray", f"sqlite:///{tmp / 'mlflow.db'}"
    space = fh.write_space(tmp, "{low: 2, high: 3}")
    proc = fh.cli(["run", "--space", str(space), "--trials", "1", "--concurrency", "1",
                   "--name", "existing", "--storage", str(storage), "--tracking-uri", uri,
                   *fh.FAST], tmp, fh.cli_env(data_root, cache_dir))
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    (tmp / "a-file").write_text("not a folder")
    (tmp / "empty").mkdir()
    bad_cache = tmp / "bad-cache" / "baselines"  # the cached baseline, corrupted
    bad_cache.mkdir(parents=True)
    for model in Path(cache_dir).glob("baselines/*.gnnz"):
        data = bytearray(model.read_bytes())
        data[-20:] = bytes(20)
        (bad_cache / model.name).write_bytes(bytes(data))
    client = MlflowClient(uri)  # a finished trial whose model file is garbage
    experiment = client.create_experiment("corrupt")
    run = client.create_run(experiment, tags={"gnn_search.role": "trial"})
    (tmp / "model.gnnz").write_bytes(b"PK\x03\x04 not a model")
    client.log_artifact(run.info.run_id, str(tmp / "model.gnnz"), "model")
    client.set_terminated(run.info.run_id, "FINISHED")
    _infer_files(tmp, storage)
    client.delete_experiment(client.create_experiment("gone"))  # deleted, not purged
    client.create_run(client.create_experiment("halfway"),  # a killed start's parent run
                      tags={"gnn_search.role": "search", "gnn_search.search": "halfway"})
    return {"tmp": tmp, "storage": storage, "uri": uri, "space": space,
            "corrupt_run": run.info.run_id, "ambiguous": _ambiguous_prefix(client),
            "data_root": data_root}


def _infer_files(tmp: Path, storage: Path) -> None:
    """Copies of the search's trial file for ``infer``: as it is, with a header saying 3
    features and 2 classes, and with no record of its data."""
    shutil.copy(next(storage.rglob("model.gnnz")), tmp / "trial.gnnz")
    for name, meta in (("resized", {"num_features": 3, "num_classes": 2}),
                       ("no-source", {"task": None, "dataset": None})):
        shutil.copy(tmp / "trial.gnnz", tmp / f"{name}.gnnz")
        update_meta(tmp / f"{name}.gnnz", **meta)


def _ambiguous_prefix(client: MlflowClient) -> str:
    """A one-digit prefix two trial run ids share: 17 runs, 16 hex digits."""
    experiment = client.create_experiment("prefixes")
    ids = [client.create_run(experiment, tags={"gnn_search.role": "trial"}).info.run_id
           for _ in range(17)]
    return next(c for c in "0123456789abcdef" if sum(i.startswith(c) for i in ids) > 1)


def _state(existing) -> tuple:
    """Everything a bad command must leave alone: Tune's files and every MLflow run."""
    files = sorted((str(p.relative_to(existing["storage"])), p.stat().st_size,
                    p.stat().st_mtime_ns) for p in existing["storage"].rglob("*") if p.is_file())
    client = MlflowClient(existing["uri"])
    experiments = client.search_experiments(view_type=ViewType.ALL)
    runs = sorted((r.info.run_id, r.info.status, r.info.end_time, len(r.data.metrics),
                   len(r.data.tags)) for r in client.search_runs(
        [e.experiment_id for e in experiments], run_view_type=ViewType.ALL))
    return files, sorted(e.name for e in experiments), runs


def _readme_rows() -> dict[str, str]:
    text = (REPO / "README.md").read_text()
    section = text.split("## Bad input", 1)[1].split("\n## ", 1)[0]
    return {m.group(1): line for line in section.splitlines()
            if (m := re.match(r"\| `([a-z0-9-]+)` \|", line))}


def test_readme_table_is_the_test_table():
    rows = _readme_rows()
    assert len(rows) >= 15
    assert set(rows) == set(CASES), set(rows) ^ set(CASES)
    for key, case in CASES.items():
        for part in (case.message, case.allowed):
            assert part.replace("|", "\\|") in rows[key], (key, part)


@pytest.mark.slow
@pytest.mark.integration
@pytest.mark.parametrize("key", list(CASES))
def test_bad_input_is_one_line_and_changes_nothing(key, existing, capsys, monkeypatch):
    case = CASES[key]
    tmp = existing["tmp"]
    monkeypatch.chdir(tmp)
    # nothing may be downloaded in these tests: a missing dataset must stay missing
    monkeypatch.setenv("HTTPS_PROXY", "http://127.0.0.1:9")
    monkeypatch.setenv("HTTP_PROXY", "http://127.0.0.1:9")
    # --address auto finds no cluster, whatever else runs on this machine
    import ray._private.services as services

    monkeypatch.delenv("RAY_ADDRESS", raising=False)
    monkeypatch.setattr(services, "find_gcs_addresses", lambda: frozenset())
    monkeypatch.setattr(services, "find_bootstrap_address", lambda temp_dir: None)
    space = tmp / f"{key}.yaml"
    if isinstance(case.space, bytes):
        space.write_bytes(case.space)
    else:
        space.write_text(case.space if case.space is not None else VALID)
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        values = {"space": space, "storage": existing["storage"], "uri": existing["uri"],
                  "tmp": tmp, "port": free_port(), "busy": busy.getsockname()[1],
                  "corrupt_run": existing["corrupt_run"], "ambiguous": existing["ambiguous"],
                  "data_root": existing["data_root"]}
        args = [a.format(**values) for a in case.args]
        before = _state(existing)
        capsys.readouterr()
        code = main(args)
        err = capsys.readouterr().err
    assert code == 2, err
    lines = err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith(f"gnn-search {args[0]}: error: "), err
    assert case.message in lines[0] and case.allowed in lines[0], lines[0]
    assert not (tmp / "m.gnnz").exists(), "a damaged model is not exported"
    assert _state(existing) == before, "the existing search must be untouched"
    assert not (existing["storage"] / "fresh").exists(), "no new search was started"
