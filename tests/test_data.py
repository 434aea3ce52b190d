"""Datasets load from the data root; a missing one says where and what; splits are sound."""

from __future__ import annotations

import urllib.error

import pytest
import torch

from trainables import data
from trainables.data import DatasetMissingError, load_dataset, random_node_split, target_indegree


def test_cora_loads_with_published_shape(data_root):
    ds = load_dataset("planetoid", "Cora", data_root)
    graph = ds[0]
    assert (graph.num_nodes, graph.num_edges, ds.num_features, ds.num_classes) == (
        2708, 10556, 1433, 7)
    assert int(graph.train_mask.sum()) == 140 and int(graph.test_mask.sum()) == 1000


def test_missing_dataset_names_folder_and_files(tmp_path, monkeypatch):
    def offline(*args, **kwargs):
        raise urllib.error.URLError("no network")

    monkeypatch.setattr("torch_geometric.datasets.Planetoid.download", offline)
    with pytest.raises(DatasetMissingError) as info:
        load_dataset("planetoid", "Cora", tmp_path)
    message = str(info.value)
    assert str(tmp_path / "Cora" / "raw") in message
    assert "ind.cora.x" in message and "ind.cora.test.index" in message
    assert "--data-root" in message and "GNN_SEARCH_DATA" in message


def test_unknown_loader_and_name():
    with pytest.raises(ValueError, match="unknown dataset loader 'ogb'; allowed: planetoid"):
        load_dataset("ogb", "arxiv")
    with pytest.raises(ValueError, match="unknown planetoid dataset 'Kora'; allowed: Cora"):
        load_dataset("planetoid", "Kora")


def test_data_root_resolution(monkeypatch, tmp_path):
    monkeypatch.setenv(data.DATA_ENV, str(tmp_path))
    assert data.resolve_data_root() == tmp_path
    assert data.resolve_data_root(tmp_path / "x") == tmp_path / "x"
    monkeypatch.delenv(data.DATA_ENV)
    assert data.resolve_data_root() == data.DEFAULT_DATA_ROOT


def test_random_split_is_disjoint_complete_and_seeded():
    train, val, test = random_node_split(2708, 500, 500, seed=3)
    assert int(val.sum()) == 500 and int(test.sum()) == 500 and int(train.sum()) == 1708
    assert not (train & val).any() and not (train & test).any() and not (val & test).any()
    again = random_node_split(2708, 500, 500, seed=3)
    other = random_node_split(2708, 500, 500, seed=4)
    assert torch.equal(val, again[1]) and not torch.equal(val, other[1])
    with pytest.raises(ValueError, match="leave training nodes"):
        random_node_split(100, 50, 50, seed=0)


def test_pseudo_coordinates_are_normalized_in_degrees(data_root):
    graph = load_dataset("planetoid", "Cora", data_root)[0]
    pseudo = target_indegree(graph)
    assert pseudo.shape == (graph.num_edges, 1)
    assert float(pseudo.min()) > 0 and float(pseudo.max()) == 1.0


@pytest.mark.slow
def test_proteins_and_bbbp_load_with_published_counts(data_root):
    proteins = load_dataset("tu", "PROTEINS", data_root)
    assert len(proteins) == 1113 and proteins.num_classes == 2 and proteins.num_features == 3
    bbbp = load_dataset("moleculenet", "BBBP", data_root)
    assert len(bbbp) == 2039 and bbbp.num_node_features == 9
    assert int(bbbp.y.sum()) == 1560


class _Payload:
    """Unpickling this creates a file: proof that loading a pickle runs its code."""

    def __init__(self, marker):
        self.marker = marker

    def __reduce__(self):
        return (open, (str(self.marker), "w"))


def test_planetoid_pickles_that_differ_from_the_known_ones_are_refused(data_root, tmp_path,
                                                                      monkeypatch):
    """A crafted ``ind.cora.x`` would run code as PyG unpickles it: the raw files are checked
    against their known SHA-256 first, and the code never runs."""
    import pickle
    import shutil

    root = tmp_path / "data"
    shutil.copytree(data_root / "Cora" / "raw", root / "Cora" / "raw")
    marker = tmp_path / "payload-ran"
    (root / "Cora" / "raw" / "ind.cora.x").write_bytes(pickle.dumps(_Payload(marker)))
    monkeypatch.delenv(data.TRUST_ENV, raising=False)
    with pytest.raises(data.UntrustedDataError) as info:
        load_dataset("planetoid", "Cora", root)
    message = str(info.value)
    assert "ind.cora.x is not the known Cora file" in message
    assert f"{data.TRUST_ENV}=1" in message and "run code when loaded" in message
    assert not marker.exists() and not (root / "Cora" / "processed").exists()
    # the payload is real: the same bytes do run code when unpickled
    pickle.loads((root / "Cora" / "raw" / "ind.cora.x").read_bytes())
    assert marker.exists()


def test_known_digests_match_the_vendored_files_and_trust_opts_out(data_root, tmp_path,
                                                                   monkeypatch):
    import shutil

    for file in data.KNOWN_SHA256["Cora"]:
        assert (data_root / "Cora" / "raw" / file).is_file()
    data.check_known_digests(data_root / "Cora" / "raw", "Cora")  # the vendored ones pass
    raw = tmp_path / "Cora" / "raw"
    shutil.copytree(data_root / "Cora" / "raw", raw)
    with (raw / "ind.cora.y").open("ab") as f:
        f.write(b"\n")  # still a valid pickle (trailing bytes are ignored), no longer known
    monkeypatch.delenv(data.TRUST_ENV, raising=False)
    with pytest.raises(data.UntrustedDataError, match="ind.cora.y is not the known"):
        data.check_known_digests(raw, "Cora")
    monkeypatch.setenv(data.TRUST_ENV, "1")
    assert load_dataset("planetoid", "Cora", tmp_path)[0].num_nodes == 2708


def test_a_damaged_raw_file_is_one_line_naming_the_folder(data_root, tmp_path):
    import shutil

    raw = tmp_path / "PROTEINS" / "raw"
    shutil.copytree(data_root / "PROTEINS" / "raw", raw)
    (raw / "PROTEINS_A.txt").write_text("1, 2\nnot, numbers\n")
    with pytest.raises(data.DatasetDamagedError) as info:
        load_dataset("tu", "PROTEINS", tmp_path)
    message = str(info.value)
    assert len(message.splitlines()) == 1
    assert f"dataset 'PROTEINS' in {raw} could not be read (" in message
    assert "put the original raw files there and delete" in message
    assert str(tmp_path / "PROTEINS" / "processed") in message
