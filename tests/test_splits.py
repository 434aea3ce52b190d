"""Split functions and scores: no leakage between folds, scaffolds never straddle splits,
ranking metrics against their definitions."""

from __future__ import annotations

import itertools

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


def _auc_by_pairs(scores, labels):
    pos = [s for s, y in zip(scores, labels, strict=True) if y]
    neg = [s for s, y in zip(scores, labels, strict=True) if not y]
    wins = sum(1.0 if p > n else 0.5 if p == n else 0.0 for p in pos for n in neg)
    return wins / (len(pos) * len(neg))


def _ap_by_thresholds(scores, labels):
    total = sum(labels)
    ap, previous_recall = 0.0, 0.0
    for threshold in sorted(set(scores), reverse=True):
        picked = [y for s, y in zip(scores, labels, strict=True) if s >= threshold]
        recall = sum(picked) / total
        ap += (recall - previous_recall) * sum(picked) / len(picked)
        previous_recall = recall
    return ap


def test_ranking_metrics_match_their_definitions():
    generator = torch.Generator().manual_seed(0)
    for _ in range(50):
        n = int(torch.randint(2, 40, (1,), generator=generator))
        scores = torch.randint(0, 5, (n,), generator=generator).float()  # many ties
        labels = torch.randint(0, 2, (n,), generator=generator)
        if labels.sum() in (0, n):
            continue
        s, y = scores.tolist(), labels.tolist()
        assert roc_auc(scores, labels) == pytest.approx(_auc_by_pairs(s, y))
        assert average_precision(scores, labels) == pytest.approx(_ap_by_thresholds(s, y))
    assert roc_auc(torch.tensor([0.1, 0.2]), torch.tensor([1, 1])) != roc_auc(
        torch.tensor([0.1, 0.2]), torch.tensor([1, 1]))  # NaN with one class
    assert accuracy(torch.tensor([1, 0, 1]), torch.tensor([1, 1, 1])) == pytest.approx(2 / 3)
