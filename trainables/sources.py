"""Where a task's data comes from, and what a task may expect of it.

A space file's ``dataset:`` names one source:

- a built-in loader and a name (``{loader: planetoid, name: Cora}``, see
  :data:`trainables.data.LOADERS`);
- any ``torch_geometric.datasets`` class (``{loader: pyg, class: Amazon, name: Photo}``,
  ``kwargs`` for its other constructor arguments), rooted at ``<data root>/<class>``;
- a user function by import path (``{function: "my_pkg.data:load", kwargs: {...}}``), called
  ``fn(**kwargs)``, plus ``root=<data root>`` when it declares a ``root`` parameter. It
  returns one :class:`~torch_geometric.data.Data` (node classification, link prediction) or
  a PyG dataset / list of ``Data`` (graph classification).

What came back is checked before any training (:func:`one_graph`, :func:`graph_list`): the
wrong type, a graph without features or labels, graphs whose feature counts differ are
one-line :class:`DatasetSourceError` naming the source and what the task expects.
"""

from __future__ import annotations

import difflib
import inspect
import os
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch
from torch import Tensor
from torch_geometric.data import Data
from torch_geometric.data import Dataset as PygDataset

from trainables import data as data_mod
from trainables.errors import first_line
from trainables.imports import import_module

PYG = "pyg"  # the loader of any torch_geometric.datasets class
SOURCE_KEYS = ("function", "kwargs", "class")  # besides loader and name
PICKLED_CLASSES = ("Planetoid",)  # PyG classes whose raw files are pickles (digests checked)


class DatasetSourceError(ValueError):
    """A dataset function or PyG class that cannot give the task the data it needs."""


def describe(dataset: dict[str, Any]) -> str:
    """The source in a few words, for messages and logs: the name, function or class."""
    if "function" in dataset:
        return str(dataset["function"])
    parts = [dataset.get("class"), dataset.get("name")]
    return "/".join(str(p) for p in parts if p) or "?"


# ---- which source, checked from the space file alone ----------------------------------------


def check_source(dataset: dict[str, Any]) -> None:
    """One source, fully named: a function (imported here), a pyg class (looked up), or a
    built-in loader with a name. A one-line ValueError says what is missing or too much."""
    if "function" in dataset:
        both = [k for k in ("loader", "name", "class") if k in dataset]
        if both:
            raise ValueError(f"dataset.function cannot be given with dataset.{both[0]}: data "
                             "comes from a function or from a loader; remove one")
        resolve_function(dataset["function"])
        return
    loader = dataset.get("loader")
    if loader is None:
        raise ValueError("dataset needs a source: a loader (" + ", ".join(
            (*data_mod.LOADERS, PYG)) + ") with a name, or a function 'package.module:function'")
    if loader == PYG:
        if "class" not in dataset:
            raise ValueError("dataset.loader pyg needs class: a torch_geometric.datasets "
                             "class, e.g. {loader: pyg, class: Amazon, name: Photo}")
        pyg_class(dataset["class"])
        return
    for key in ("class", "kwargs"):
        if key in dataset:
            raise ValueError(f"dataset.{key} applies only to loader: pyg or to a function "
                             f"(this loader: {loader}); remove it")
    if "name" not in dataset:
        raise ValueError(f"dataset: missing key 'name'; loader {loader} needs the dataset's "
                         "name, e.g. {loader: planetoid, name: Cora}")


def resolve_function(path: str) -> Callable[..., Any]:
    """The callable ``package.module:function`` names; a one-line error if it is not one."""
    module, sep, name = str(path).partition(":")
    if not sep or not module or not name:
        raise ValueError(f"dataset.function {path!r} is not an import path; expected "
                         "'package.module:function'")
    try:
        obj = import_module(module)
    except Exception as err:  # the module itself may raise anything while it imports
        raise ValueError(f"dataset.function {path!r} cannot be imported "
                         f"({first_line(err, with_type=True)}); give a module on the Python "
                         "path or in the current folder, as 'package.module:function'") from None
    for part in name.split("."):
        if not hasattr(obj, part):
            raise ValueError(f"dataset.function {path!r}: module {module!r} has no {part!r}; "
                             "give 'package.module:function'")
        obj = getattr(obj, part)
    if not callable(obj):
        raise ValueError(f"dataset.function {path!r} is a {type(obj).__name__}, not a "
                         "function; give 'package.module:function'")
    return obj


def _dataset_classes() -> list[str]:
    import torch_geometric.datasets as pyg_datasets

    return [n for n in pyg_datasets.__all__ if isinstance(getattr(pyg_datasets, n, None), type)
            and issubclass(getattr(pyg_datasets, n), PygDataset)]


def pyg_class(name: str) -> type[PygDataset]:
    """``torch_geometric.datasets.<name>``; an unknown name is one line with close matches."""
    import torch_geometric.datasets as pyg_datasets

    known = _dataset_classes()
    if name not in known:
        close = difflib.get_close_matches(str(name), known, n=3, cutoff=0.5)
        hint = (f"did you mean {', '.join(close)}?" if close else
                "see torch_geometric.datasets, e.g. Planetoid, Amazon, TUDataset")
        raise ValueError(f"dataset.class {name!r} is not a torch_geometric.datasets class; "
                         f"{hint}")
    return getattr(pyg_datasets, name)


# ---- loading -------------------------------------------------------------------------------


def load_source(dataset: dict[str, Any], data_root: str | os.PathLike | None,
                **options: Any) -> Any:
    """What the source gives, unchecked: a built-in or pyg dataset, or what the function
    returned. ``options`` go to a built-in loader (``tu``: ``node_attributes``)."""
    root = data_mod.resolve_data_root(data_root)
    if "function" in dataset:
        return call_function(dataset["function"], dataset.get("kwargs") or {}, root)
    if dataset.get("loader") == PYG:
        return load_pyg(dataset["class"], dataset.get("name"), dataset.get("kwargs") or {}, root)
    return data_mod.load_dataset(dataset["loader"], dataset["name"], root, **options)


def call_function(path: str, kwargs: dict[str, Any], root: Path) -> Any:
    """``fn(**kwargs)``, with ``root=`` when ``fn`` declares it; what it raises becomes one
    line naming it."""
    fn = resolve_function(path)
    try:
        declares_root = "root" in inspect.signature(fn).parameters
    except (TypeError, ValueError):  # a builtin without a signature
        declares_root = False
    args = {**kwargs, "root": root} if declares_root and "root" not in kwargs else kwargs
    try:
        return fn(**args)
    except Exception as err:
        raise DatasetSourceError(f"dataset.function {path} raised "
                                 f"{first_line(err, with_type=True, limit=300)}; fix the "
                                 "function or its dataset.kwargs") from None


class _Located(Exception):
    """Raised by :func:`_where` instead of downloading or processing anything."""

    def __init__(self, raw_dir: str, raw_files: list[str]) -> None:
        super().__init__(raw_dir)
        self.raw_dir, self.raw_files = raw_dir, raw_files


def _where(cls: type[PygDataset], args: dict[str, Any]) -> tuple[Path | None, list[str]]:
    """The raw folder and raw file names ``cls(**args)`` reads, found without downloading
    or processing (a subclass stops its constructor where PyG would start either); ``None``
    for a class that reads no files (``FakeDataset``)."""

    def stop(self) -> None:
        names = self.raw_file_names
        raise _Located(self.raw_dir, [names] if isinstance(names, str) else list(names))

    probe = type(f"_Where{cls.__name__}", (cls,), {"_download": stop, "_process": stop})
    try:
        probe(**args)
    except _Located as found:
        return Path(found.raw_dir), found.raw_files
    except Exception as err:
        raise ValueError(f"dataset: {_call(cls, args)} cannot be built "
                         f"({first_line(err, with_type=True, limit=200)}); check dataset.name "
                         "and dataset.kwargs against its documentation") from None
    return None, []


def _call(cls: type, args: dict[str, Any]) -> str:
    shown_args = ", ".join(f"{k}={v!r}" for k, v in args.items() if k != "root")
    return f"torch_geometric.datasets.{cls.__name__}({shown_args})"


def load_pyg(class_name: str, name: str | None, kwargs: dict[str, Any], root: Path):
    """``torch_geometric.datasets.<class_name>(root=<root>/<class_name>, name=..., **kwargs)``
    (``root`` and ``name`` only if the class takes them); raw files missing and not
    downloadable: :class:`~trainables.data.DatasetMissingError` naming the folder and the
    files the class reads."""
    cls = pyg_class(class_name)
    takes = inspect.signature(cls.__init__).parameters
    if name is not None and "name" not in takes:
        raise ValueError(f"dataset.name: torch_geometric.datasets.{class_name} takes no name; "
                         f"remove it (its arguments: {', '.join(list(takes)[1:])})")
    args = {**({"root": str(root / class_name)} if "root" in takes else {}),
            **({"name": name} if name is not None else {}), **kwargs}
    raw_dir, raw_files = _where(cls, args)
    if raw_dir is None:
        return cls(**args)
    if class_name in PICKLED_CLASSES and name is not None:
        data_mod.check_known_digests(raw_dir, name)
    missing = [f for f in raw_files if not (raw_dir / f).exists()]
    what = describe({"class": class_name, "name": name})
    try:
        return cls(**args)
    except Exception as err:  # offline download, unreadable files
        if not missing:
            raise data_mod.DatasetDamagedError(
                f"dataset {what} in {raw_dir} could not be read "
                f"({first_line(err, with_type=True, limit=300)}); its files may be damaged: "
                f"put the original raw files there and delete {raw_dir.parent / 'processed'}, "
                f"or point --data-root / ${data_mod.DATA_ENV} elsewhere") from None
        raise data_mod.DatasetMissingError(
            f"dataset {what} is not in {raw_dir} and could not be downloaded "
            f"({first_line(err, limit=200)}). Put its raw files there "
            f"({', '.join(raw_files)}), or point --data-root / ${data_mod.DATA_ENV} at a "
            f"folder that holds {_relative(raw_dir, root)}/.") from None


def _relative(path: Path, root: Path) -> str:
    try:
        return str(path.relative_to(root))
    except ValueError:
        return str(path)


# ---- what a task may expect ----------------------------------------------------------------


def _is_graph_list(obj: Any) -> bool:
    return isinstance(obj, (PygDataset, list, tuple))


def _gave(dataset: dict[str, Any]) -> str:
    """How messages say where the object came from."""
    if "function" in dataset:
        return f"dataset.function {dataset['function']} returned"
    return f"dataset {describe(dataset)} gave"


def _type_name(obj: Any) -> str:
    return f"{type(obj).__module__}.{type(obj).__qualname__}".removeprefix("builtins.")


def one_graph(obj: Any, dataset: dict[str, Any], task: str, labels: bool) -> Data:
    """The single graph of a node-level task, checked: features ``x`` (float), ``edge_index``
    and, when ``labels``, one integer class per node in ``y``."""
    where = describe(dataset)
    if isinstance(obj, PygDataset):  # a pyg class's, or a function's dataset of one graph
        if len(obj) != 1:
            raise DatasetSourceError(f"dataset {where} holds {len(obj)} graphs; task {task!r} "
                                     "needs one graph")
        obj = obj[0]
    if not isinstance(obj, Data):
        raise DatasetSourceError(f"{_gave(dataset)} {_type_name(obj)}; task {task!r} expects "
                                 "one torch_geometric.data.Data graph")
    _check_graph(obj, f"the graph of {where}")
    if labels:
        y = _labels(obj, f"the graph of {where}", task)
        if y.numel() != obj.num_nodes:
            raise DatasetSourceError(f"the graph of {where} has {y.numel()} labels (y) for "
                                     f"{obj.num_nodes} nodes; task {task!r} needs one per node")
        obj.y = y.view(-1)
    obj.x, obj.edge_index = obj.x.float(), obj.edge_index.long()
    return obj


def graph_list(obj: Any, dataset: dict[str, Any], task: str) -> list[Any]:
    """The graphs of a graph-level task, as given (a dataset or a list), after checks: each a
    ``Data`` with features, edges and one label, all with the same number of features."""
    where = describe(dataset)
    if not _is_graph_list(obj):
        raise DatasetSourceError(f"{_gave(dataset)} {_type_name(obj)}; task {task!r} expects a "
                                 "PyG dataset or a list of torch_geometric.data.Data graphs")
    if len(obj) == 0:
        raise DatasetSourceError(f"dataset {where} holds no graphs; task {task!r} needs some")
    graphs, first = list(obj), None
    for i, graph in enumerate(graphs):
        if not isinstance(graph, Data):
            raise DatasetSourceError(f"dataset {where}: graph {i} is {_type_name(graph)}; "
                                     f"task {task!r} expects torch_geometric.data.Data graphs")
        _check_graph(graph, f"dataset {where}: graph {i}")
        y = _labels(graph, f"dataset {where}: graph {i}", task)
        if y.numel() != 1:
            raise DatasetSourceError(f"dataset {where}: graph {i} has {y.numel()} labels (y); "
                                     f"task {task!r} needs one label per graph")
        if first is None:
            first = graph.x.size(1)
        elif graph.x.size(1) != first:
            raise DatasetSourceError(f"dataset {where}: graph {i} has {graph.x.size(1)} node "
                                     f"features, graph 0 has {first}; every graph needs the "
                                     "same features")
    return graphs


def _check_graph(graph: Data, what: str) -> None:
    x, edges = graph.x, graph.edge_index
    if not isinstance(x, Tensor) or x.dim() != 2:
        raise DatasetSourceError(f"{what} has no node features (x of shape [nodes, features]"
                                 f", got {_shape(x)}); give every node a feature vector")
    if not isinstance(edges, Tensor) or edges.dim() != 2 or edges.size(0) != 2 or (
            edges.is_floating_point()):
        raise DatasetSourceError(f"{what} has no edge_index of node numbers, shape [2, edges] "
                                 f"(got {_shape(edges)}, {getattr(edges, 'dtype', None)})")
    if edges.numel() and (int(edges.min()) < 0 or int(edges.max()) >= x.size(0)):
        raise DatasetSourceError(f"{what}: edge_index names node {int(edges.max())} of "
                                 f"{x.size(0)} (x has one row per node, numbered from 0)")


def _labels(graph: Data, what: str, task: str) -> Tensor:
    y = graph.y
    if not isinstance(y, Tensor):
        raise DatasetSourceError(f"{what} has no labels (y); task {task!r} needs an integer "
                                 "class in y")
    fractional = y.is_floating_point() and not bool((y == y.round()).all())
    if fractional or (y.numel() and int(y.min()) < 0):
        raise DatasetSourceError(f"{what}: labels (y) must be classes 0, 1, 2, ...; task "
                                 f"{task!r} needs integer classes")
    return y.long()


def _shape(value: Any) -> str:
    if isinstance(value, Tensor):
        return f"shape {list(value.shape)}"
    return "none" if value is None else _type_name(value)


def node_masks(graph: Data, where: str) -> tuple[Tensor, Tensor, Tensor]:
    """The graph's own train/val/test masks (split: public); a graph without them is told to
    use split: random."""
    masks = [getattr(graph, f"{s}_mask", None) for s in ("train", "val", "test")]
    if not all(isinstance(m, Tensor) and m.dtype == torch.bool and m.numel() == graph.num_nodes
               for m in masks):
        raise DatasetSourceError(f"split 'public' needs the graph's own train_mask, val_mask "
                                 f"and test_mask (one bool per node); the graph of {where} has "
                                 "none: use split: random with num_val and num_test")
    return masks[0], masks[1], masks[2]


def normalize_features(graph: Data, where: str) -> Data:
    """Each row of ``x`` divided by its sum, so that it sums to one (Kipf & Welling's
    ``preprocess_features``; an all-zero row stays zero). Features must be >= 0. On 0/1
    features such as Cora's this is exactly PyG's ``NormalizeFeatures``, which also shifts
    the whole tensor by its minimum and leaves rows summing below one unscaled."""
    x = graph.x.float()
    if x.numel() and float(x.min()) < 0:
        raise DatasetSourceError(f"normalize_features needs features >= 0; {where} has "
                                 f"{float(x.min()):g}; remove normalize_features or make the "
                                 "features non-negative")
    graph.x = x / x.sum(dim=1, keepdim=True).clamp(min=1e-12)
    return graph
