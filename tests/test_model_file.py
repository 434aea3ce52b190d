"""Compressed files reload bit-exactly, shrink with sparsity and bits, and refuse corruption."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from trainables.model_file import (
    LAYOUTS,
    StorageError,
    describe,
    load_quantized,
    load_state,
    pack_int4,
    save_model,
    unpack_int4,
)
from trainables.quantization import quantize


def _sparse(shape, sparsity, seed=0):
    gen = torch.Generator().manual_seed(seed)
    w = torch.randn(*shape, generator=gen)
    w[torch.rand(*shape, generator=gen) < sparsity] = 0.0
    return w


def _bits_equal(a: torch.Tensor, b: torch.Tensor) -> bool:
    return a.dtype == b.dtype and a.shape == b.shape and bytes(a.numpy()) == bytes(b.numpy())


@pytest.mark.parametrize("layout", [None, *LAYOUTS])
@pytest.mark.parametrize("bits", [None, 8, 4])
def test_round_trip_is_bit_exact(tmp_path, layout, bits):
    state = {
        "conv.weight": _sparse((3, 33, 7), 0.8),
        "lin.weight": _sparse((20, 11), 0.5, seed=1),
        "bias": torch.randn(7),
        "kernel_size": torch.tensor([2, 3]),
        "flag": torch.tensor([1, 0], dtype=torch.uint8),
        "empty": torch.zeros(0, 4),
    }
    quantized = {}
    if bits:
        quantized = {"conv.weight": quantize(state["conv.weight"], bits, -1),
                     "lin.weight": quantize(state["lin.weight"], bits, 0)}
        for name, qt in quantized.items():
            state[name] = qt.dequantize()
    path = tmp_path / "m.gnnz"
    size = save_model(path, state, quantized, {"note": "x"}, layout=layout)
    assert size == path.stat().st_size
    loaded, meta = load_state(path)
    assert meta == {"note": "x"}
    assert list(loaded) == list(state)
    for name in state:
        assert _bits_equal(loaded[name], state[name]), name


@pytest.mark.parametrize("layout", [None, *LAYOUTS])
@pytest.mark.parametrize("bits", [8, 4])
def test_quantized_tensors_read_back_as_stored(tmp_path, layout, bits):
    weight = _sparse((3, 33, 7), 0.8)
    quantized = {"conv.weight": quantize(weight, bits, -1)}
    state = {"conv.weight": quantized["conv.weight"].dequantize(), "bias": torch.randn(7)}
    save_model(tmp_path / "m.gnnz", state, quantized, layout=layout)
    stored = load_quantized(tmp_path / "m.gnnz")
    assert list(stored) == ["conv.weight"]
    got, want = stored["conv.weight"], quantized["conv.weight"]
    assert (got.axis, got.bits) == (2, bits)  # the axis as quantize normalized it
    assert _bits_equal(got.q, want.q) and _bits_equal(got.scale, want.scale)
    assert _bits_equal(got.dequantize(), load_state(tmp_path / "m.gnnz")[0]["conv.weight"])


def test_smallest_layout_is_chosen(tmp_path):
    dense = save_model(tmp_path / "d", {"w": _sparse((64, 64), 0.9)}, layout="dense")
    best = save_model(tmp_path / "b", {"w": _sparse((64, 64), 0.9)})
    for layout in LAYOUTS:
        assert best <= save_model(tmp_path / layout, {"w": _sparse((64, 64), 0.9)}, layout=layout)
    assert best < dense / 3


def test_size_shrinks_with_sparsity_and_bits(tmp_path):
    sizes = {}
    for sparsity in (0.0, 0.5, 0.9, 0.99):
        w = _sparse((128, 256), sparsity)
        for bits in (None, 8, 4):
            q = {"w": quantize(w, bits, 0)} if bits else {}
            sizes[sparsity, bits] = save_model(tmp_path / "m", {"w": w}, q)
    for bits in (None, 8, 4):
        series = [sizes[s, bits] for s in (0.0, 0.5, 0.9, 0.99)]
        assert series == sorted(series, reverse=True) and len(set(series)) == 4
    # dense: int8 ~4x and int4 ~8x smaller than FP32
    assert 3.8 < sizes[0.0, None] / sizes[0.0, 8] <= 4.0
    assert 7.5 < sizes[0.0, None] / sizes[0.0, 4] <= 8.0


def test_int4_pack_round_trip():
    values = np.arange(-7, 8, dtype=np.int8).repeat(3)
    for count in (len(values), len(values) - 1):
        packed = pack_int4(values[:count])
        assert len(packed) == (count + 1) // 2
        assert np.array_equal(unpack_int4(packed, count), values[:count])


def test_describe_reports_layouts(tmp_path):
    w = _sparse((32, 32), 0.95)
    save_model(tmp_path / "m", {"w": w, "b": torch.ones(32)}, {"w": quantize(w, 4, 0)})
    info = {e["name"]: e for e in describe(tmp_path / "m")}
    assert info["w"]["layout"] != "dense" and info["w"]["bits"] == 4
    assert info["b"]["layout"] == "dense" and info["b"]["bits"] is None


def test_corrupted_and_unknown_files_fail_clearly(tmp_path):
    path = tmp_path / "m.gnnz"
    save_model(path, {"w": torch.randn(10, 10)})
    data = bytearray(path.read_bytes())

    (tmp_path / "pickle.pt").write_bytes(b"\x80\x04\x95" + bytes(50))
    with pytest.raises(StorageError, match="bad magic"):
        load_state(tmp_path / "pickle.pt")

    flipped = bytearray(data)
    flipped[-5] ^= 0xFF
    (tmp_path / "flipped").write_bytes(flipped)
    with pytest.raises(StorageError, match="checksum"):
        load_state(tmp_path / "flipped")

    (tmp_path / "short").write_bytes(data[:-10])
    with pytest.raises(StorageError, match="truncated or corrupted"):
        load_state(tmp_path / "short")

    version = bytearray(data)
    version[4] = 99
    (tmp_path / "v").write_bytes(version)
    with pytest.raises(StorageError, match="unsupported format version 99"):
        load_state(tmp_path / "v")

    with pytest.raises(StorageError, match="cannot read model file"):
        load_state(tmp_path / "missing.gnnz")


    with pytest.raises(ValueError, match="unknown layout 'zip'"):
        save_model(path, {"w": torch.ones(2)}, layout="zip")


class _Payload:
    """Unpickling this runs code: it creates the marker file."""

    def __init__(self, marker):
        self.marker = marker

    def __reduce__(self):
        return (open, (str(self.marker), "w"))


def test_model_files_are_read_without_executing_code(tmp_path):
    """A pickle or a torch.save file that would run code when unpickled is refused as not a
    model file, and its code never runs (the loader reads a JSON header and raw arrays)."""
    import pickle

    from trainables.cycle import load_compressed

    marker = tmp_path / "code-ran"
    (tmp_path / "evil.pkl").write_bytes(pickle.dumps(_Payload(marker)))
    torch.save({"w": _Payload(marker)}, tmp_path / "evil.pt")
    for name in ("evil.pkl", "evil.pt"):
        for load in (load_state, load_compressed):
            with pytest.raises(StorageError, match="not a compressed GNN model file"):
                load(tmp_path / name)
    assert not marker.exists()
    pickle.loads((tmp_path / "evil.pkl").read_bytes()).close()  # the payload is real
    assert marker.exists()


def test_an_edited_header_is_refused_and_version_1_files_still_load(tmp_path):
    """The JSON header is covered by its own checksum (format version 2): a shape edited to
    another of the same length never reaches torch; files written before it (version 1, no
    header checksum) load as they did."""
    import json
    import struct
    import zlib

    path = tmp_path / "m.gnnz"
    weights = {"w": torch.randn(4, 6)}
    save_model(path, weights, meta={"note": "x"})
    data = path.read_bytes()
    assert data[4] == 2
    edited = data.replace(b'"shape":[4,6]', b'"shape":[6,4]')
    assert edited != data and len(edited) == len(data)
    (tmp_path / "edited").write_bytes(edited)
    with pytest.raises(StorageError, match="header is edited, truncated or corrupted"):
        load_state(tmp_path / "edited")
    # the same file as version 1 wrote it: no header checksum, read as before
    header_len = struct.unpack("<I", data[5:9])[0]
    header, payload = data[13:13 + header_len], data[13 + header_len:]
    assert zlib.crc32(header) == struct.unpack("<I", data[9:13])[0]
    assert json.loads(header)["meta"] == {"note": "x"}
    (tmp_path / "v1").write_bytes(b"GNNZ" + struct.pack("<BI", 1, header_len) + header + payload)
    state, meta = load_state(tmp_path / "v1")
    assert _bits_equal(state["w"], weights["w"]) and meta == {"note": "x"}


def test_a_header_that_does_not_fit_its_tensors_is_a_storage_error(tmp_path):
    """A (version 1) file whose header names a model its tensors do not fit is refused as a
    damaged model file, not torch's RuntimeError."""
    from trainables.cycle import load_compressed
    from trainables.models import build_model

    model = build_model("gcn", 8, 3, hidden=4)
    path = tmp_path / "m.gnnz"
    save_model(path, model.state_dict(), meta={"model": {"name": "gcn", "kwargs": {"hidden": 5}},
                                               "num_features": 8, "num_classes": 3})
    with pytest.raises(StorageError, match="its tensors do not fit the model its header names"):
        load_compressed(path)
