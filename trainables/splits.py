"""Index splits of graph collections: stratified, stratified k-fold, Murcko scaffold.

Each returns index tensors (train, val, test); none draws from a global random state.
"""

from __future__ import annotations

from collections import defaultdict

import torch
from torch import Tensor


def _check_ratios(val_ratio: float, test_ratio: float) -> None:
    if not (0 < val_ratio < 1 and 0 <= test_ratio < 1 and val_ratio + test_ratio < 1):
        raise ValueError(f"val_ratio={val_ratio} and test_ratio={test_ratio} must be in (0, 1) "
                         "and leave room for training data")


def _per_class(labels: Tensor, seed: int) -> list[Tensor]:
    """Indices of each class, each shuffled with its own seeded generator."""
    generator = torch.Generator().manual_seed(seed)
    out = []
    for cls in labels.unique(sorted=True):
        idx = (labels == cls).nonzero().flatten()
        out.append(idx[torch.randperm(idx.numel(), generator=generator)])
    return out


def stratified_split(
    labels: Tensor, val_ratio: float, test_ratio: float, seed: int
) -> tuple[Tensor, Tensor, Tensor]:
    """Random split keeping each class's share in train, val and test."""
    _check_ratios(val_ratio, test_ratio)
    parts: tuple[list, list, list] = ([], [], [])
    for idx in _per_class(labels.flatten(), seed):
        n_test = round(idx.numel() * test_ratio)
        n_val = round(idx.numel() * val_ratio)
        parts[2].append(idx[:n_test])
        parts[1].append(idx[n_test:n_test + n_val])
        parts[0].append(idx[n_test + n_val:])
    return tuple(torch.cat(p).sort().values for p in parts)  # type: ignore[return-value]


def stratified_kfold(
    labels: Tensor, folds: int, val_ratio: float, seed: int
) -> list[tuple[Tensor, Tensor, Tensor]]:
    """``folds`` (train, val, test) splits: the test sets partition the data, class shares
    kept; val is a stratified ``val_ratio`` of the rest, for model selection (Errica et al.)."""
    if folds < 2:
        raise ValueError(f"folds must be >= 2, got {folds}")
    labels = labels.flatten()
    fold_of = torch.empty(labels.numel(), dtype=torch.long)
    offset = 0
    for idx in _per_class(labels, seed):
        # deal each class round-robin, continuing where the previous class stopped
        fold_of[idx] = (torch.arange(idx.numel()) + offset) % folds
        offset += idx.numel()
    splits = []
    for k in range(folds):
        test = (fold_of == k).nonzero().flatten()
        rest = (fold_of != k).nonzero().flatten()
        train_pos, val_pos, _ = stratified_split(labels[rest], val_ratio, 0.0, seed + k)
        splits.append((rest[train_pos], rest[val_pos], test))
    return splits


def murcko_scaffold(smiles: str) -> str:
    """The Bemis-Murcko scaffold of a molecule (RDKit), chirality kept; '' for acyclic."""
    from rdkit import Chem, RDLogger
    from rdkit.Chem.Scaffolds import MurckoScaffold

    RDLogger.DisableLog("rdApp.*")
    mol = Chem.MolFromSmiles(smiles)
    if mol is None:
        raise ValueError(f"RDKit cannot parse SMILES {smiles!r}")
    return MurckoScaffold.MurckoScaffoldSmiles(mol=mol, includeChirality=True)


def scaffold_split(
    smiles: list[str], val_ratio: float, test_ratio: float
) -> tuple[Tensor, Tensor, Tensor]:
    """Deterministic scaffold split: molecules grouped by Murcko scaffold, groups largest
    first into train until it is full, then val, then test, so no scaffold straddles two
    sets and val/test hold the rarest scaffolds (the DeepChem / MoleculeNet protocol, which
    OGB's split also follows)."""
    _check_ratios(val_ratio, test_ratio)
    groups: dict[str, list[int]] = defaultdict(list)
    for i, s in enumerate(smiles):
        groups[murcko_scaffold(s)].append(i)
    # DeepChem's order: larger groups first; among equal sizes, the later molecule first
    ordered = sorted(groups.values(), key=lambda g: (len(g), g[0]), reverse=True)
    n = len(smiles)
    train_cut, val_cut = (1 - val_ratio - test_ratio) * n, (1 - test_ratio) * n
    train: list[int] = []
    val: list[int] = []
    test: list[int] = []
    for group in ordered:
        if len(train) + len(group) <= train_cut:
            train += group
        elif len(train) + len(val) + len(group) <= val_cut:
            val += group
        else:
            test += group
    return tuple(torch.tensor(sorted(p), dtype=torch.long) for p in (train, val, test))  # type: ignore[return-value]
