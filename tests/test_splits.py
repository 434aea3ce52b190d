"""Split functions and scores: no leakage between folds, scaffolds never straddle splits,
ranking metrics against scikit-learn."""

from __future__ import annotations

import itertools

import numpy as np
import pytest
import torch

from trainables.scores import accuracy, average_precision, roc_auc
from trainables.splits import (
    murcko_scaffold,
    scaffold_split,
    stratified_kfold,
    stratified_split,
)

LABELS = torch.tensor([0] * 60 + [1] * 30 + [2] * 13)


def test_stratified_split_partitions_and_keeps_class_shares():
    train, val, test = stratified_split(LABELS, 0.1, 0.2, seed=3)
    everything = torch.cat([train, val, test])
    assert everything.sort().values.tolist() == list(range(len(LABELS)))  # disjoint, complete
    for part, ratio in ((val, 0.1), (test, 0.2)):
        for cls, count in ((0, 60), (1, 30), (2, 13)):
            assert int((LABELS[part] == cls).sum()) == round(count * ratio)
    assert stratified_split(LABELS, 0.1, 0.2, seed=3)[0].equal(train)  # seeded
    assert not stratified_split(LABELS, 0.1, 0.2, seed=4)[0].equal(train)


def test_kfold_test_sets_partition_the_data_and_never_leak():
    folds = stratified_kfold(LABELS, 10, 0.1, seed=0)
    assert len(folds) == 10
    tests = torch.cat([test for _, _, test in folds])
    assert tests.sort().values.tolist() == list(range(len(LABELS)))  # each item tested once
    for train, val, test in folds:
        sets = [set(train.tolist()), set(val.tolist()), set(test.tolist())]
        for a, b in itertools.combinations(sets, 2):
            assert not a & b  # no graph in two roles within a fold
        assert set().union(*sets) == set(range(len(LABELS)))
        # stratified: every class in every test fold, shares within one item of the ideal
        for cls, count in ((0, 60), (1, 30), (2, 13)):
            assert abs(int((LABELS[test] == cls).sum()) - count / 10) <= 1


@pytest.mark.parametrize("bad", [dict(val_ratio=0.0, test_ratio=0.1),
                                 dict(val_ratio=0.5, test_ratio=0.5)])
def test_split_ratios_are_checked(bad):
    with pytest.raises(ValueError, match="val_ratio"):
        stratified_split(LABELS, **bad, seed=0)


def test_scaffold_groups_never_straddle_splits(data_root):
    from trainables.data import load_dataset

    smiles = [d.smiles for d in load_dataset("moleculenet", "BBBP", data_root)]
    train, val, test = scaffold_split(smiles, 0.1, 0.1)
    assert len(train) + len(val) + len(test) == len(smiles)
    scaffolds = [{murcko_scaffold(smiles[i]) for i in part.tolist()} for part in (train, val, test)]
    for a, b in itertools.combinations(scaffolds, 2):
        assert not a & b
    assert abs(len(train) - 0.8 * len(smiles)) < 0.02 * len(smiles)
    assert scaffold_split(smiles, 0.1, 0.1)[2].equal(test)  # deterministic
    # the largest scaffold group (benzene) is in training; val/test hold rarer scaffolds
    assert "c1ccccc1" in scaffolds[0]


def test_scaffold_of_bad_smiles_is_a_clear_error():
    with pytest.raises(ValueError, match="cannot parse SMILES 'not-a-molecule'"):
        murcko_scaffold("not-a-molecule")


def _random_binary(generator, tied: bool) -> tuple[torch.Tensor, torch.Tensor]:
    """Scores and labels with both classes present; ``tied``: five distinct scores only."""
    while True:
        n = int(torch.randint(2, 60, (1,), generator=generator))
        labels = torch.randint(0, 2, (n,), generator=generator)
        if 0 < int(labels.sum()) < n:
            break
    if tied:
        return torch.randint(0, 5, (n,), generator=generator).float(), labels
    return torch.rand(n, generator=generator), labels


@pytest.mark.parametrize("tied", [True, False], ids=["tied", "untied"])
def test_ranking_metrics_match_scikit_learn(tied):
    from sklearn.metrics import average_precision_score, roc_auc_score

    generator = torch.Generator().manual_seed(int(tied))
    for _ in range(50):
        scores, labels = _random_binary(generator, tied)
        y, s = labels.numpy(), scores.double().numpy()
        assert roc_auc(scores, labels) == pytest.approx(roc_auc_score(y, s), abs=1e-12)
        assert average_precision(scores, labels) == pytest.approx(
            average_precision_score(y, s), abs=1e-12)
        # bool labels and a column of scores mean the same
        assert roc_auc(scores[:, None], labels.bool()) == roc_auc(scores, labels)


def test_ranking_metrics_on_a_known_example():
    # scikit-learn's documented example: one negative outranks one positive
    scores, labels = torch.tensor([0.1, 0.4, 0.35, 0.8]), torch.tensor([0, 0, 1, 1])
    assert roc_auc(scores, labels) == pytest.approx(0.75)
    assert average_precision(scores, labels) == pytest.approx(5 / 6)
    assert roc_auc(-scores, labels) == pytest.approx(0.25)  # scores, not labels, come first


def test_ranking_metrics_where_a_class_is_absent():
    scores = torch.tensor([0.1, 0.2, 0.7])
    for labels in (torch.tensor([1, 1, 1]), torch.tensor([0, 0, 0])):
        assert np.isnan(roc_auc(scores, labels))
    assert np.isnan(average_precision(scores, torch.tensor([0, 0, 0])))  # no positive
    assert average_precision(scores, torch.tensor([1, 1, 1])) == 1.0  # every positive found
    with pytest.raises(ValueError, match="3 scores for 2 labels"):
        roc_auc(scores, torch.tensor([0, 1]))


def test_accuracy():
    assert accuracy(torch.tensor([1, 0, 1]), torch.tensor([1, 1, 1])) == pytest.approx(2 / 3)
    assert np.isnan(accuracy(torch.tensor([]), torch.tensor([])))
