"""Bad input, generated: every option of every command, read from the parser's own actions,
and every key of a space file, fed values that must be refused.

Each case must give exit code 2, exactly one line on stderr naming the value and what is
allowed (or what to do), no traceback, no work started (the places where each command's
work begins raise :class:`WorkStarted`) and no change to the files around it: an existing
search's Tune storage, its SQLite tracking database (checksum) and every other file. A new
option is covered as soon as it is added: its values come from its kind (:data:`KINDS`,
which must name it) or, for numbers, from the range its ``type`` declares.
"""

from __future__ import annotations

import hashlib
import json
import math
import os
import re
import subprocess
import sys
from dataclasses import asdict
from pathlib import Path
from typing import Annotated, Any, Literal, Union, get_args, get_origin

import pytest
import torch
import yaml
from mlflow.tracking import MlflowClient

from search.cli import build_parser, main
from spaces.loader import BaselineSpec, DatasetSpec, ModelSpec, RangeSpec, SearchSpace
from tests.ray_loopback import free_port
from trainables.model_file import save_model

LONG = "x" * 300  # one name longer than a filesystem takes (NAME_MAX = 255 bytes)
SPACE = {
    "task": "node_classification",
    "dataset": {"loader": "planetoid", "name": "Cora", "split": "random", "num_val": 500,
                "num_test": 500},
    "model": {"name": "gcn", "kwargs": {"hidden": 16}},
    "baseline": {"epochs": 30, "lr": 0.01, "weight_decay": 5.0e-4, "seed": 0},
    "objectives": {"val_acc": "max", "size_bytes": "min"},
    "sampler": "tpe",
    "space": {"prune.method": ["global", "none"],
              "prune.sparsity": {"low": 0.3, "high": 0.9, "log": False, "default": 0.5},
              "quant.method": ["fp32", "qat"], "quant.bits": [8],
              "finetune.epochs": {"low": 2, "high": 3}, "finetune.lr": 0.01},
    "warm_start": [{"prune.method": "global", "prune.sparsity": 0.5}],
}
# Words that say what is allowed or what to do; a message without one only complains.
ADVICE = ("allowed", "expected", "give", "choose", "create", "use ", "pass ", "start",
          "set ", "remove", "delete", "leave out", "--help", "did you mean", "put ", "point",
          "pick", "install", "resume", "must", "write it", "quote", "restore", "needs",
          "known: ", "available: ")


class WorkStarted(BaseException):
    """Raised where a command's work begins: a bad value must be refused before it."""


# ---- the values each kind of option must refuse ------------------------------------------

PATHS = {"empty": "", "too-long": "{tmp}/" + LONG, "too-long-parent": "{tmp}/" + LONG + "/x",
         "under-a-file": "{tmp}/a-file/x"}
FOLDER = {**PATHS, "a-file": "{tmp}/a-file", "unwritable": "/proc/gnn-search-x"}
FILE = {**PATHS, "a-folder": "{tmp}/a-folder", "missing-folder": "{tmp}/nowhere/x",
        "unwritable": "/proc/gnn-search-x.csv"}
NAMES = {"empty": "", "slash": "a/b", "dot-dot": "../existing", "space": "a b",
         "too-long": LONG, "newline": "a\nb"}
TRACKING = {
    "empty": "", "scheme": "foo://store", "file-scheme": "file:///{tmp}/mlruns",
    "bare-path": "{tmp}/mlruns", "no-path": "sqlite:///", "folder": "sqlite:///{tmp}/a-folder",
    "missing-folder": "sqlite:///{tmp}/nowhere/mlflow.db", "too-long": "sqlite:///{tmp}/" + LONG,
    "not-a-database": "sqlite:///{tmp}/a-file", "unwritable": "sqlite:////proc/gnn-search.db",
    "unreachable": "http://127.0.0.1:{port}", "credentials": "http://me:s3cret@127.0.0.1:{port}",
    "bad-ipv6": "http://[::1", "no-host": "http://", "bad-port": "http://127.0.0.1:99999",
}
KINDS: dict[str, dict[str, str]] = {
    "space": {**PATHS, "missing": "{tmp}/missing.yaml", "a-folder": "{tmp}/a-folder",
              "binary": "{tmp}/binary.yaml", "utf-16": "{tmp}/utf16.yaml"},
    "folder": FOLDER,
    "store": {**FOLDER, "unknown-scheme": "foo://bucket/x"},
    "out_folder": {**FOLDER, "missing-folder": "{tmp}/nowhere/x"},
    "out_file": FILE,
    "out_new_file": {**FILE, "exists": "{tmp}/a-file", "sidecar-exists": "{tmp}/sidecar.gnnz"},
    "tracking_uri": TRACKING,
    "new_name": {**NAMES, "non-ascii": "é", "over-100": "a" * 101},
    "search_name": {**NAMES, "unknown": "nope"},
    "experiment": {"empty": "", "unknown": "nope", "too-long": LONG},
    "run_id": {"empty": "", "unknown": "nope", "too-long": LONG, "path": "../x"},
    "address": {"empty": "", "no-port": "nowhere", "empty-port": "127.0.0.1:",
                "no-host": ":6379", "port-0": "127.0.0.1:0", "port-high": "127.0.0.1:99999",
                "port-text": "127.0.0.1:x", "client-empty": "ray://", "bad-ipv6": "[::1",
                "unreachable": "127.0.0.1:{port}", "http": "http://127.0.0.1:{port}",
                "auto-none-running": "auto"},
    "objectives": {"empty": "", "comma": ",", "no-direction": "val_acc",
                   "bad-direction": "val_acc:up", "twice": "val_acc:max,val_acc:min",
                   "unknown": "nope:max"},
    "constraint": {"empty": "", "no-op": "val_acc", "no-number": "val_acc>=",
                   "text": "val_acc>=abc", "nan": "val_acc>=nan", "inf": "val_acc<=inf",
                   "unknown": "nope>=0.5", "no-metric": ">=1", "reversed-op": "val_acc=>0.5"},
    "set": {"empty": "", "no-equals": "x", "no-key": "=1", "unknown": "nope=1",
            "text": "prune.sparsity=abc", "nan": "prune.sparsity=nan",
            "inf": "prune.sparsity=inf", "negative": "prune.sparsity=-1",
            "edge": "prune.sparsity=1", "huge": "finetune.epochs=1e30",
            "fraction": "finetune.epochs=1.5", "bits": "quant.bits=3",
            "bool": "prune.method=true"},
    "host": {"empty": "", "words": "not a host", "octet": "256.0.0.1", "ipv6": "::zz",
             "too-long": LONG},
    "allowed_hosts": {"empty": "", "comma": ","},
    "model_file": {**PATHS, "missing": "{tmp}/missing.gnnz", "a-folder": "{tmp}/a-folder",
                   "not-a-model": "{tmp}/a-file"},
    "py_module": {**PATHS, "missing": "{tmp}/missing", "not-a-module": "{tmp}/a-file"},
}
# (command, dest) -> kind; every option that takes a value must be here (or be a number).
OPTION_KINDS = {
    "space": "space", "data_root": "folder", "cache_dir": "folder", "storage": "store",
    "artifacts_destination": "store", "tracking_uri": "tracking_uri",
    "backend_store_uri": "tracking_uri", "name": "new_name", "resume": "search_name",
    "address": "address", "set": "set", "experiment": "experiment",
    "experiments": "experiment", "objectives": "objectives", "constraint": "constraint",
    "run_id": "run_id", "host": "host", "allowed_hosts": "allowed_hosts",
    "py_modules": "py_module",
    ("trial", "out"): "out_folder", ("report", "out"): "out_folder",
    ("pareto", "out"): "out_file", ("export", "out"): "out_new_file",
    ("sync", "name"): "search_name", ("infer", "model"): "model_file",
}
# A valid command line per command: with no bad value it reaches its work (or succeeds).
BASE = {
    "run": ["run", "--space", "{tmp}/space.yaml", "--storage", "{tmp}/ray", "--tracking-uri",
            "{uri}", "--name", "fresh", "--data-root", "{tmp}/data", "--cache-dir",
            "{tmp}/cache", "--concurrency", "1"],
    "resume": ["run", "--resume", "existing", "--storage", "{tmp}/ray"],
    "trial": ["trial", "--space", "{tmp}/space.yaml", "--data-root", "{tmp}/data",
              "--cache-dir", "{tmp}/cache", "--out", "{tmp}/trial-out"],
    "pareto": ["pareto", "--experiment", "existing", "--tracking-uri", "{uri}"],
    "report": ["report", "--experiment", "existing", "--tracking-uri", "{uri}", "--out",
               "{tmp}/report", "--no-log"],
    "export": ["export", "--run-id", "{trial_run}", "--out", "{tmp}/m.gnnz", "--tracking-uri",
               "{uri}"],
    "mlflow-server": ["mlflow-server", "--port", "{port}", "--backend-store-uri",
                      "sqlite:///{tmp}/server.db", "--artifacts-destination",
                      "{tmp}/artifacts"],
    "sync": ["sync", "existing", "--storage", "{tmp}/ray", "--tracking-uri", "{uri}"],
    "compare": ["compare", "--experiments", "existing", "other", "--tracking-uri", "{uri}"],
    "infer": ["infer", "--model", "{tmp}/model.gnnz"],
}
# the options --resume takes (the rest: run's)
RESUME_OPTIONS = ("resume", "address", "storage", "data_root", "cache_dir", "py_modules")


def _subparsers() -> dict[str, Any]:
    return build_parser()._subparsers._group_actions[0].choices


def _numbers(bound) -> dict[str, str]:
    """Values outside a declared numeric range, and values that are no number at all."""
    step = 1 if bound.integer else 0.5
    low, high = (bound.low if bound.low_open else bound.low - step), bound.high + step
    if bound.integer:
        low, high = int(low), int(high)
    cases = {"below": repr(low), "above": repr(high), "huge": "1" + "0" * 30,
             "text": "abc", "empty": "", "nan": "nan", "inf": "inf", "minus-inf": "-inf",
             "overflow": "1e400"}
    if bound.integer:
        cases["fraction"] = "1.5"
    return cases


def _values(command: str, action) -> dict[str, str]:
    if action.choices is not None:
        return {"unknown": "bogus", "empty": "", "case": str(next(iter(action.choices))).upper()}
    if hasattr(action.type, "low"):
        return _numbers(action.type)
    assert action.type is None, (f"{command} {action.option_strings}: a number needs a "
                                 "declared range (search.limits), not type="
                                 f"{action.type!r}")
    kind = OPTION_KINDS.get((command, action.dest)) or OPTION_KINDS.get(action.dest)
    assert kind, f"{command} {action.option_strings or action.dest}: add it to OPTION_KINDS"
    return KINDS[kind]


def _replace(argv: list[str], action, value: str) -> list[str]:
    """``argv`` with ``action``'s value replaced by ``value``: as ``--opt=value`` (so that a
    value starting with ``-`` is a value); an option given several times gets one more, one
    taking several values gets ``value`` as its last."""
    if not action.option_strings:  # sync's NAME, right after the command
        return [argv[0], value, *argv[2:]]
    option = action.option_strings[-1]
    if action.nargs == "+":
        at = argv.index(option) + 2
        return [*argv[:at], value, *argv[at + 1:]]
    out, skip = [], False
    for arg in argv:
        if skip or (arg == option and not isinstance(action.default, list)):
            skip = not skip
            continue
        out.append(arg)
    return [*out, f"{option}={value}"]


def option_cases() -> list[tuple[str, list[str], str]]:
    """(id, command line, the bad value) for every value of every option of every command."""
    cases = []
    for command, parser in _subparsers().items():
        for variant in ("run", "resume") if command == "run" else (command,):
            for action in parser._actions:
                if action.nargs == 0 or action.dest == "help":
                    continue
                if variant == "run" and action.dest == "resume":
                    continue  # the resume variant's, next to the options --resume takes
                if variant == "resume" and action.dest not in RESUME_OPTIONS:
                    continue
                for label, value in _values(command, action).items():
                    name = action.option_strings[-1] if action.option_strings else action.dest
                    cases.append((f"{variant} {name} {label}",
                                  _replace(BASE[variant], action, value), value))
    return cases


# ---- space files --------------------------------------------------------------------------

WRONG = {"true": True, "false": False, "null": None, "int": 7, "float": 1.5, "text": "abc",
         "list": [1], "mapping": {"a": 1}, "nan": math.nan, "inf": math.inf}


def _fits(annotation, value) -> bool:
    """Whether ``value`` (as YAML reads it) has a type ``annotation`` takes, without
    coercion: a bool is no number, a number no text."""
    origin = get_origin(annotation)
    if origin is Annotated:
        return _fits(get_args(annotation)[0], value)
    if annotation is Any:
        return True
    if origin is Union or type(annotation).__name__ == "UnionType":
        return any(_fits(a, value) for a in get_args(annotation))
    if origin is Literal:
        return value in get_args(annotation) and not isinstance(value, bool)
    if annotation is type(None):
        return value is None
    if isinstance(value, bool):
        return annotation is bool
    if annotation is int:
        return isinstance(value, int)
    if annotation is float:
        return isinstance(value, (int, float)) and math.isfinite(value)
    if isinstance(annotation, type) and issubclass(annotation, SearchSpace.__base__):
        return False  # a mapping of its own: its fields are cases of their own
    return isinstance(value, origin or annotation)


def _wrong_types(spec) -> list[tuple[str, str, Any]]:
    """(key, label, value) for every value of :data:`WRONG` a field's type does not take
    (the key as a space file writes it: ``class``, not ``class_``)."""
    return [(info.alias or field, label, value) for field, info in spec.model_fields.items()
            if field != "source" for label, value in WRONG.items()
            if not _fits(info.annotation, value)]  # the key as a file writes it (model.class)


def _with(path: list[str | int], value) -> dict:
    """The base space with the value at ``path`` replaced (or added)."""
    space = json.loads(json.dumps(SPACE))
    node = space
    for part in path[:-1]:
        node = node[part]
    node[path[-1]] = value
    return space


def _flow(value) -> str:
    """One value as YAML writes it inline (``true``, ``null``, ``.nan``, ``[1]``)."""
    return yaml.safe_dump(value, default_flow_style=True, width=1000).removesuffix(
        "...\n").strip()


def _emit(mapping: dict, indent: str = "", twice: str = "") -> str:
    """Block-style YAML of ``mapping``; the scalar at the path ``twice`` (``a/b``) is
    written twice."""
    lines = []
    for key, value in mapping.items():
        first, _, rest = twice.partition("/")
        if isinstance(value, dict) and value:
            lines += [f"{indent}{key}:", _emit(value, indent + "  ", rest if first == key
                                               else "")]
        else:
            lines.append(f"{indent}{key}: {_flow(value)}")
            if twice == key:
                lines.append(lines[-1])
    return "\n".join(lines)


def space_cases() -> list[tuple[str, bytes, tuple[str, ...]]]:
    """(id, file bytes, what the line must name): wrong types per key, duplicated and
    unknown keys at every level, bad encodings."""
    cases = []
    sections = {(): SearchSpace, ("dataset",): DatasetSpec, ("model",): ModelSpec,
                ("baseline",): BaselineSpec, ("space", "prune.sparsity"): RangeSpec}
    for path, spec in sections.items():
        for field, label, value in _wrong_types(spec):
            key = ".".join([*path, field])
            text = _emit(_with([*path, field], value))
            cases.append((f"type {key} {label}", text.encode(), (key, _flow(value))))
    for param in SPACE["space"]:
        for label, value in WRONG.items():
            if label in ("list", "mapping") or (label in ("int", "float") and param in (
                    "prune.sparsity", "finetune.lr", "finetune.epochs")):
                continue
            text = _emit(_with(["space", param], value))
            cases.append((f"type space.{param} {label}", text.encode(), (param, _flow(value))))
    for path in (["objectives", "val_acc"], ["warm_start", 0, "prune.sparsity"]):
        for label, value in WRONG.items():
            key = ".".join(map(str, path))
            cases.append((f"type {key} {label}", _emit(_with(path, value)).encode(),
                          (path[-1], _flow(value))))
    for key in ("task", "dataset/loader", "model/name", "baseline/lr", "objectives/val_acc",
                "space/prune.method", "space/prune.sparsity/low"):
        cases.append((f"twice {key}", _emit(SPACE, twice=key).encode(),
                      (key.rsplit("/", 1)[-1], "twice")))
    for path in ([], ["dataset"], ["model"], ["model", "kwargs"], ["baseline"], ["objectives"],
                 ["space"], ["space", "prune.sparsity"], ["warm_start", 0]):
        text = _emit(_with([*path, "zzz_unknown"], 1))
        cases.append((f"unknown key in {'.'.join(map(str, path)) or 'top'}", text.encode(),
                      ("zzz_unknown",)))
    valid = _emit(SPACE)
    encodings = {"utf-16": valid.encode("utf-16"), "utf-16-no-bom": valid.encode("utf-16-le"),
                 "utf-32": valid.encode("utf-32"), "latin-1": (valid + "\n# café").encode(
                     "latin-1"), "binary": b"\x89PNG\r\n\x1a\n" + bytes(range(256)),
                 "nul": valid.encode()[:40] + b"\x00" + valid.encode()[40:]}
    for label, data in encodings.items():
        cases.append((f"encoding {label}", data, ("not a UTF-8 text file",)))
    return cases


# ---- the sandbox and the checks ------------------------------------------------------------

@pytest.fixture(scope="module")
def sandbox(tmp_path_factory):
    """An existing search (Tune storage, MLflow runs in SQLite) and the files the cases name;
    every command's work replaced by :class:`WorkStarted`."""
    tmp = tmp_path_factory.mktemp("bad-generated")
    uri = f"sqlite:///{tmp / 'mlflow.db'}"
    client = MlflowClient(uri)
    runs = {name: _recorded_search(client, name) for name in ("existing", "other")}
    _tune_storage(tmp, uri, runs["existing"])
    for folder in ("a-folder", "data", "cache"):
        (tmp / folder).mkdir()
    (tmp / "a-file").write_text("not a folder, not a database")
    (tmp / "sidecar.gnnz.json").write_text("{}")
    (tmp / "space.yaml").write_text(_emit(SPACE))
    (tmp / "binary.yaml").write_bytes(b"\x89PNG\r\n\x1a\n" + bytes(range(256)))
    (tmp / "utf16.yaml").write_bytes(_emit(SPACE).encode("utf-16"))
    save_model(tmp / "model.gnnz", {"w": torch.zeros(1)}, meta={  # a trial's file, for infer
        "model": {"name": "gcn", "kwargs": {}}, "num_features": 1433, "num_classes": 7,
        "task": "node_classification", "dataset": {"loader": "planetoid", "name": "Cora"},
        "data_seed": 0})
    values = {"tmp": str(tmp), "uri": uri, "trial_run": runs["existing"][1]}
    with pytest.MonkeyPatch.context() as mp:
        _trip(mp)
        mp.chdir(tmp)
        mp.setenv("GNN_SEARCH_DATA", str(tmp / "data"))
        mp.setenv("GNN_SEARCH_CACHE", str(tmp / "cache"))
        mp.setenv("HTTPS_PROXY", "http://127.0.0.1:9")  # nothing is downloaded
        _no_ray_running(mp)
        yield tmp, values


def _recorded_search(client: MlflowClient, name: str) -> tuple[str, str]:
    """A search's parent run and one finished trial with metrics, as a search logs them."""
    experiment = client.create_experiment(name)
    tags = {"gnn_search.search": name}
    parent = client.create_run(experiment, tags={**tags, "gnn_search.role": "search"})
    client.log_param(parent.info.run_id, "objectives", "val_acc:max,size_bytes:min")
    trial = client.create_run(experiment, tags={**tags, "gnn_search.role": "trial",
                                                "mlflow.parentRunId": parent.info.run_id})
    for key, value in {"val_acc": 0.8, "size_bytes": 1000.0, "latency_ms": 1.0}.items():
        client.log_metric(trial.info.run_id, key, value)
    client.log_param(trial.info.run_id, "prune.method", "none")
    client.set_terminated(trial.info.run_id, "FINISHED")
    return parent.info.run_id, trial.info.run_id


def _tune_storage(tmp: Path, uri: str, runs: tuple[str, str]) -> None:
    """``<tmp>/ray/existing`` as a search leaves it: its settings and space, Tune's files."""
    from search.run import SAVED_SETTINGS, SearchSettings

    folder = tmp / "ray" / "existing"
    (folder / "trial_0").mkdir(parents=True)
    settings = SearchSettings(name="existing", tracking_uri=uri, concurrency=1,
                              data_root=str(tmp / "data"), cache_dir=str(tmp / "cache"))
    saved = {k: getattr(settings, k) for k in SAVED_SETTINGS}
    saved.update(measure=asdict(settings.measure), experiment_id="1", parent_run_id=runs[0],
                 baseline_key="k", space_source=str(tmp / "space.yaml"), params={})
    (folder / "gnn_search.json").write_text(json.dumps(saved))
    (folder / "space.yaml").write_text(_emit(SPACE))
    (folder / "experiment_state-2026-01-01_00-00-00.json").write_text("{}")
    (folder / "trial_0" / "result.json").write_text('{"val_acc": 0.8}\n')


def _no_ray_running(mp: pytest.MonkeyPatch) -> None:
    """``--address auto`` finds no cluster, whatever else runs on this machine."""
    import ray._private.services as services

    mp.delenv("RAY_ADDRESS", raising=False)
    mp.setattr(services, "find_gcs_addresses", lambda: frozenset())
    mp.setattr(services, "find_bootstrap_address", lambda temp_dir: None)


def _trip(mp: pytest.MonkeyPatch) -> None:
    """Where each command's work begins: Ray and the data (run), the data (trial), the
    report, the export's download, the sync's reading of Tune's trials, the server's exec, a
    resumed search's restore."""
    from ray import tune

    import analysis.report
    import search.run
    import trainables.tasks

    def trip(*args, **kwargs):
        raise WorkStarted

    for module, name in ((search.run, "_started"), (trainables.tasks, "build_task"),
                         (analysis.report, "build_report"), (tune, "ExperimentAnalysis"),
                         (os, "execve")):
        mp.setattr(module, name, trip)
    mp.setattr(tune.Tuner, "can_restore", staticmethod(trip))
    mp.setattr(MlflowClient, "download_artifacts", trip)


def _state(tmp: Path) -> dict[str, str]:
    """Every file and folder under the sandbox, files by checksum (the tracking database
    included: a bad command must not write a byte to it)."""
    return {str(p.relative_to(tmp)): hashlib.sha256(p.read_bytes()).hexdigest()
            if p.is_file() else "folder" for p in sorted(tmp.rglob("*"))}


def _call(argv: list[str], capsys) -> tuple[int | str, str]:
    """``main(argv)`` in this process: its exit code (or what stopped it) and stderr."""
    capsys.readouterr()
    try:
        code: int | str = main(argv)
    except WorkStarted:
        code = "work started"
    except SystemExit as err:
        code = f"SystemExit({err.code})"
    except Exception as err:  # a traceback a user would see
        code = f"traceback: {type(err).__name__}: {err}"
    return code, capsys.readouterr().err


def _fill(argv: list[str], values: dict[str, str]) -> list[str]:
    return [a.replace("{port}", str(free_port())).format(**values) for a in argv]


def _check_refused(argv: list[str], sandbox, capsys, names: tuple[str, ...]) -> str:
    tmp, _ = sandbox
    before = _state(tmp)
    code, err = _call(argv, capsys)
    lines = err.strip().splitlines()
    assert code == 2, f"{code}: {err[-1500:]} <- {argv[-1][:200]}"
    assert len(lines) == 1, f"{len(lines)} lines:\n{err[-2000:]}"
    line = lines[0]
    assert line.startswith(f"gnn-search {argv[0]}: error: "), line
    assert "Traceback" not in err, err
    assert any(n in line for n in names), f"the line names none of {names}: {line}"
    assert any(word in line for word in ADVICE), f"nothing allowed or to do: {line}"
    assert _state(tmp) == before, f"{argv}: files changed"
    return line


def _names(value: str, values: dict[str, str]) -> tuple[str, ...]:
    """How a line may name ``value``: as given, quoted, cut short (past the sandbox's
    folder), its path (a URI's), or a quoted part of it (``'val_acc'`` of
    ``val_acc:max,val_acc:min``). A password is named by what it is, never shown."""
    if "@" in value:
        return ("user:password@",)
    short = value.replace(values["tmp"], "")
    names = {value, repr(value), short[:20], value.removeprefix("sqlite:///")}
    names |= {f"'{part}'" for part in re.split(r"[:,=<>]+", value) if len(part) > 1}
    if "=" in value:
        key, _, rest = value.partition("=")
        names |= {f"{key}={rest!r}", f"{key}={rest}"}
    return tuple(n for n in names if n and n != values["tmp"])


@pytest.mark.parametrize("command", list(BASE))
def test_the_base_command_line_is_valid(command, sandbox, capsys):
    """Without a bad value each command reaches its work: every case below is refused for
    its own value, not for something else."""
    _, values = sandbox
    code, err = _call(_fill(BASE[command], values), capsys)
    assert code in ("work started", 0), f"{code}: {err[-2000:]}"


OPTION_CASES = option_cases()
SPACE_CASES = space_cases()


@pytest.mark.parametrize(("case", "argv", "value"), OPTION_CASES,
                         ids=[c for c, _, _ in OPTION_CASES])
def test_every_option_refuses_bad_values(case, argv, value, sandbox, capsys):
    _, values = sandbox
    port = str(free_port())
    filled = [a.replace("{port}", port).format(**values) for a in argv]
    value = value.replace("{port}", port).format(**values)
    line = _check_refused(filled, sandbox, capsys, _names(value, values))
    assert "s3cret" not in line, "a password is never shown"


@pytest.mark.parametrize(("case", "data", "names"), SPACE_CASES,
                         ids=[c for c, _, _ in SPACE_CASES])
def test_every_space_key_refuses_bad_values(case, data, names, sandbox, capsys):
    """The line names the key and shows a wrong value as the file writes it (``true``, not
    ``True`` or ``1``), unless it is about the key itself."""
    tmp, values = sandbox
    path = tmp / "cases" / "space.yaml"
    path.parent.mkdir(exist_ok=True)
    path.write_bytes(data)
    argv = _fill(BASE["trial"], values)
    argv[argv.index("--space") + 1] = str(path)
    line = _check_refused(argv, sandbox, capsys, (names[0].removeprefix("space."),))
    about_the_key = ("unknown key", "does not apply", "missing key", "unknown parameter")
    if len(names) > 1 and not any(words in line for words in about_the_key):
        assert names[1] in line, f"the value is not shown as written ({names[1]}): {line}"


@pytest.mark.slow
def test_as_a_process_too(sandbox):
    """A few cases end to end, through the installed entry point's module."""
    tmp, values = sandbox
    for argv in (["trial", "--space", "{tmp}/binary.yaml"],
                 ["pareto", "--experiment", "existing", "--tracking-uri", "{uri}", "--out",
                  "{tmp}/" + LONG],
                 ["run", "--trials", "0", "--tracking-uri", "{uri}"]):
        before = _state(tmp)
        proc = subprocess.run([sys.executable, "-m", "search.cli", *_fill(argv, values)],
                              capture_output=True, text=True, cwd=tmp, timeout=120,
                              env={**os.environ, "GNN_SEARCH_DATA": str(tmp / "data")})
        assert proc.returncode == 2, proc.stderr[-2000:]
        assert len(proc.stderr.strip().splitlines()) == 1, proc.stderr[-2000:]
        assert "Traceback" not in proc.stderr and _state(tmp) == before
