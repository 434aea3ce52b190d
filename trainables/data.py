"""Datasets: where they live, how they load, and how they are split.

Datasets load with PyTorch Geometric's own classes from a data root (``--data-root``, else
``$GNN_SEARCH_DATA``, else ``~/.cache/gnn-search/datasets``). PyG downloads a missing dataset
when it can; when it cannot, :class:`DatasetMissingError` names the folder and the raw files
it expected, instead of a traceback from inside PyG. Raw files that are Python pickles
(Planetoid's) are checked against the digests the project knows before they load.
"""

from __future__ import annotations

import hashlib
import os
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from torch_geometric.data import Data, InMemoryDataset

from trainables.errors import first_line

DATA_ENV = "GNN_SEARCH_DATA"
DEFAULT_DATA_ROOT = Path.home() / ".cache" / "gnn-search" / "datasets"


TRUST_ENV = "GNN_SEARCH_TRUST_DATA"  # "1": load raw files whose digests are not the known ones

# SHA-256 of raw files the project knows (the vendored copies, which are byte-identical to
# Planetoid's published ones). Planetoid's raw files are Python pickles: loading one runs
# whatever code it holds, so files that differ from these are refused unless trusted.
KNOWN_SHA256: dict[str, dict[str, str]] = {
    "Cora": {
        "ind.cora.allx": "9419ba2f26f5c35243db64aba110e0f35a04851609e0dc5433450676ca6b8543",
        "ind.cora.ally": "2b998f5cc7fedc86e7f97ca2498f47a1ffc1462c29e2d578b23bf3f62b6e7d71",
        "ind.cora.graph": "58f13302f39dde8852dad6fe6d15b89b077b6d7f837626bce671ef80344b383d",
        "ind.cora.test.index":
            "297ce89af2b51a6a194181c7dbe1796c6a1cf9cd9349a88383b1b1e227867875",
        "ind.cora.tx": "b9afbaa4a400df991f6f02ef677e1e44da55ffc04801fd02f9e673987829226a",
        "ind.cora.ty": "41f5ac76596a1699cc33f53084a2419e92961c42bb75f36fc38e616d348532ad",
        "ind.cora.x": "23cfa55d91c6f624233f5eb7b6e3f141f1bd2b2ae39608a63cf5d084bb27baab",
        "ind.cora.y": "94465c14eb53e04ca262198dcbb2521ee8af60fb3f3d546cd6ca24a511b0e7d1",
    },
}


class DatasetMissingError(RuntimeError):
    """A dataset is not on disk and could not be downloaded."""


class DatasetDamagedError(ValueError):
    """A dataset's files are there but cannot be read."""


class UntrustedDataError(ValueError):
    """Raw files that run code when loaded (pickles) differ from the known ones."""


def check_known_digests(raw_dir: Path, name: str) -> None:
    """Refuse raw files of a dataset whose SHA-256 the project knows and that differ from it
    (a crafted pickle runs code when loaded), unless ``$GNN_SEARCH_TRUST_DATA`` is ``1``."""
    if os.environ.get(TRUST_ENV) == "1":
        return
    for file, digest in KNOWN_SHA256.get(name, {}).items():
        path = raw_dir / file
        if path.is_file() and hashlib.sha256(path.read_bytes()).hexdigest() != digest:
            raise UntrustedDataError(
                f"{path} is not the known {name} file (its SHA-256 differs); these raw files "
                f"are Python pickles, which run code when loaded: put the original files "
                f"there, or set {TRUST_ENV}=1 to load data you trust anyway")


def resolve_data_root(data_root: str | os.PathLike | None = None) -> Path:
    """The data root: the argument, else ``$GNN_SEARCH_DATA``, else the per-user cache."""
    chosen = data_root or os.environ.get(DATA_ENV) or DEFAULT_DATA_ROOT
    return Path(chosen).expanduser().resolve()


@dataclass(frozen=True)
class DatasetLoader:
    """How to build one kind of PyG dataset and which raw files it needs."""

    folder: Callable[[str], str]  # dataset name -> folder under the root holding raw/
    raw_files: Callable[[str], list[str]]  # dataset name -> required raw file names
    build: Callable[..., InMemoryDataset]  # (root, name, **options) -> dataset
    names: tuple[str, ...]  # names PyG's class accepts
    pickled: bool = False  # raw files are Python pickles (loading them can run code)


def _planetoid(root: Path, name: str) -> InMemoryDataset:
    from torch_geometric.datasets import Planetoid

    return Planetoid(str(root), name)


def _tu(root: Path, name: str, node_attributes: bool = False) -> InMemoryDataset:
    from torch_geometric.datasets import TUDataset

    # node_attributes: the continuous ones too (PROTEINS: one), before the one-hot labels
    return TUDataset(str(root), name, use_node_attr=node_attributes)


def _moleculenet(root: Path, name: str) -> InMemoryDataset:
    from torch_geometric.datasets import MoleculeNet

    return MoleculeNet(str(root), name)


LOADERS: dict[str, DatasetLoader] = {
    "planetoid": DatasetLoader(
        folder=lambda name: name,
        raw_files=lambda name: [
            f"ind.{name.lower()}.{part}"
            for part in ("x", "tx", "allx", "y", "ty", "ally", "graph", "test.index")
        ],
        build=_planetoid,
        names=("Cora", "CiteSeer", "PubMed"),
        pickled=True,
    ),
    "tu": DatasetLoader(
        folder=lambda name: name,
        raw_files=lambda name: [
            f"{name}_{part}.txt" for part in ("A", "graph_indicator", "graph_labels")
        ],
        build=_tu,
        names=(),  # any TU collection name
    ),
    "moleculenet": DatasetLoader(
        folder=lambda name: name.lower(),
        raw_files=lambda name: [f"{name.upper()}.csv" if name.lower() == "bbbp" else "*.csv"],
        build=_moleculenet,
        names=("BBBP", "ESOL", "FreeSolv", "Lipo", "PCBA", "MUV", "HIV", "BACE", "Tox21",
               "ToxCast", "SIDER", "ClinTox"),
    ),
}


def load_dataset(loader: str, name: str, data_root: str | os.PathLike | None = None,
                 **options: Any):
    """Load dataset ``name`` with ``loader`` (one of :data:`LOADERS`) from the data root;
    ``options`` go to the loader's builder (``tu``: ``node_attributes``)."""
    if loader not in LOADERS:
        raise ValueError(f"unknown dataset loader {loader!r}; allowed: {', '.join(LOADERS)}")
    spec = LOADERS[loader]
    if spec.names and name not in spec.names:
        raise ValueError(
            f"unknown {loader} dataset {name!r}; allowed: {', '.join(spec.names)}"
        )
    root = resolve_data_root(data_root)
    raw_dir = root / spec.folder(name) / "raw"
    missing = [f for f in spec.raw_files(name) if not any(raw_dir.glob(f))]
    if spec.pickled:
        check_known_digests(raw_dir, name)
    try:
        return spec.build(root, name, **options)
    except Exception as err:  # PyG's download failed (offline) or raw files are unreadable
        if not missing:
            processed = root / spec.folder(name) / "processed"
            raise DatasetDamagedError(
                f"dataset {name!r} in {raw_dir} could not be read "
                f"({first_line(err, with_type=True, limit=300)}); its files may be damaged: "
                f"put the original raw files there and delete {processed}, or point "
                f"--data-root / ${DATA_ENV} elsewhere") from None
        raise DatasetMissingError(
            f"dataset {name!r} is not in {raw_dir} and could not be downloaded ({err}). "
            f"Put its raw files there ({', '.join(spec.raw_files(name))}), or point "
            f"--data-root / ${DATA_ENV} at a folder that holds {spec.folder(name)}/raw/."
        ) from None


def random_node_split(
    num_nodes: int, num_val: int, num_test: int, seed: int
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Seeded random node masks: ``num_val`` val, ``num_test`` test, the rest train."""
    if num_val < 1 or num_test < 1 or num_val + num_test >= num_nodes:
        raise ValueError(
            f"num_val={num_val} and num_test={num_test} must be >= 1 and leave training nodes "
            f"out of {num_nodes}"
        )
    order = torch.randperm(num_nodes, generator=torch.Generator().manual_seed(seed))
    masks = [torch.zeros(num_nodes, dtype=torch.bool) for _ in range(3)]
    masks[1][order[:num_val]] = True
    masks[2][order[num_val : num_val + num_test]] = True
    masks[0][order[num_val + num_test :]] = True
    return masks[0], masks[1], masks[2]


def target_indegree(data: Data) -> torch.Tensor:
    """Degree-based pseudo-coordinates for SplineConv: in-degree of each edge's target / max."""
    deg = torch.bincount(data.edge_index[1], minlength=data.num_nodes).to(torch.float)
    return (deg[data.edge_index[1]] / deg.max()).unsqueeze(-1)
