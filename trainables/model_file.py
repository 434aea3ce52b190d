"""Compressed model files (the study's "Algorithm 1", done right).

A file is ``GNNZ`` + version byte + header length (u32, little endian) + the header's CRC32
(u32; version 2, so an edited header is refused like a damaged payload) + a JSON header +
one payload of raw little-endian blobs. Version 1 files (no header checksum) still load.
The header lists every tensor with its shape, dtype, chosen layout and blob ranges, plus
free-form ``meta`` (model spec, config). Loading parses JSON and reads arrays with
``numpy.frombuffer``: nothing in a file can execute code.

Per tensor, the writer tries every layout and keeps the smallest:

* ``dense``   all values;
* ``coo``     flat indices of the nonzeros (smallest unsigned type that fits) + their values;
* ``csr``     row pointers + column indices over a 2-D view ``[shape[0], -1]`` + values;
* ``bitmask`` one bit per entry (1 = nonzero) + the nonzero values.

Values are float as stored in the model, or, for quantized tensors, int8 (8 bits) or two
4-bit values per byte, with one float32 scale per output channel. ``size_bytes`` of a
model is the length of this file.
"""

from __future__ import annotations

import json
import os
import struct
import zlib
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import Tensor

from trainables.quantization import QuantizedTensor, dequantize

MAGIC = b"GNNZ"
VERSION = 2  # written; 1 (no header checksum) is still read
READABLE_VERSIONS = (1, 2)
LAYOUTS = ("dense", "coo", "csr", "bitmask")
_DTYPES = {
    "float32": (torch.float32, np.float32),
    "float64": (torch.float64, np.float64),
    "float16": (torch.float16, np.float16),
    "int64": (torch.int64, np.int64),
    "int32": (torch.int32, np.int32),
    "int16": (torch.int16, np.int16),
    "int8": (torch.int8, np.int8),
    "uint8": (torch.uint8, np.uint8),
    "bool": (torch.bool, np.bool_),
}
_DTYPE_NAMES = {torch_dtype: name for name, (torch_dtype, _) in _DTYPES.items()}


class StorageError(ValueError):
    """A model file is unknown, truncated or corrupted."""


def _index_dtype(max_value: int) -> np.dtype:
    for dtype in (np.uint8, np.uint16, np.uint32):
        if max_value <= np.iinfo(dtype).max:
            return np.dtype(dtype)
    return np.dtype(np.uint64)


def pack_int4(values: np.ndarray) -> bytes:
    """Two signed 4-bit values per byte (low nibble first); odd counts get a zero pad."""
    nibbles = (values.astype(np.int16) & 0xF).astype(np.uint8)
    if nibbles.size % 2:
        nibbles = np.append(nibbles, np.uint8(0))
    return (nibbles[0::2] | (nibbles[1::2] << 4)).tobytes()


def unpack_int4(data: bytes, count: int) -> np.ndarray:
    packed = np.frombuffer(data, dtype=np.uint8)
    nibbles = np.empty(packed.size * 2, dtype=np.uint8)
    nibbles[0::2], nibbles[1::2] = packed & 0xF, packed >> 4
    signed = nibbles[:count].astype(np.int8)
    return np.where(signed > 7, signed - 16, signed).astype(np.int8)


def _encode_values(values: np.ndarray, bits: int | None) -> bytes:
    if bits == 4:
        return pack_int4(values)
    return np.ascontiguousarray(values).astype(values.dtype.newbyteorder("<")).tobytes()


def _candidates(flat: np.ndarray, shape: tuple[int, ...], bits: int | None):
    """Every layout's blobs for a flat array (ints when quantized)."""
    numel = flat.size
    nonzero = np.flatnonzero(flat != 0)
    values = flat[nonzero]
    yield "dense", {"values": _encode_values(flat, bits)}, {}
    if numel == 0:
        return
    idx_dtype = _index_dtype(numel - 1)
    yield (
        "coo",
        {"indices": nonzero.astype(idx_dtype).tobytes(), "values": _encode_values(values, bits)},
        {"index_dtype": idx_dtype.name},
    )
    yield (
        "bitmask",
        {"mask": np.packbits(flat != 0).tobytes(), "values": _encode_values(values, bits)},
        {},
    )
    if len(shape) >= 2 and shape[0] > 0 and numel > 0:
        cols = numel // shape[0]
        row_counts = np.bincount(nonzero // cols, minlength=shape[0])
        row_ptr = np.concatenate([[0], np.cumsum(row_counts)])
        ptr_dtype, col_dtype = _index_dtype(len(nonzero)), _index_dtype(max(cols - 1, 0))
        yield (
            "csr",
            {
                "row_ptr": row_ptr.astype(ptr_dtype).tobytes(),
                "col": (nonzero % cols).astype(col_dtype).tobytes(),
                "values": _encode_values(values, bits),
            },
            {"ptr_dtype": ptr_dtype.name, "col_dtype": col_dtype.name},
        )


def _encode_tensor(
    name: str, tensor: Tensor, quantized: QuantizedTensor | None, layout: str | None
) -> tuple[dict[str, Any], dict[str, bytes]]:
    """Header entry and blobs for one tensor, in ``layout`` or the smallest one."""
    tensor = tensor.detach().cpu()
    if tensor.dtype not in _DTYPE_NAMES:
        raise StorageError(f"tensor {name!r} has unsupported dtype {tensor.dtype}")
    entry: dict[str, Any] = {
        "name": name,
        "shape": list(tensor.shape),
        "dtype": _DTYPE_NAMES[tensor.dtype],
    }
    blobs_extra: dict[str, bytes] = {}
    if quantized is not None:
        flat = quantized.q.cpu().numpy().ravel()
        entry["quant"] = {"bits": quantized.bits, "axis": quantized.axis}
        blobs_extra["scale"] = quantized.scale.cpu().numpy().astype("<f4").tobytes()
        bits = quantized.bits
    else:
        flat = tensor.numpy().ravel()
        bits = None
    options = list(_candidates(flat, tuple(tensor.shape), bits))
    if layout is not None:
        options = [o for o in options if o[0] == layout] or options[:1]
    best = min(options, key=lambda o: sum(len(b) for b in o[1].values()))
    entry["layout"] = best[0]
    entry.update(best[2])
    if best[0] != "dense":
        entry["nnz"] = int(np.count_nonzero(flat))
    return entry, {**best[1], **blobs_extra}


def save_model(
    path: str | os.PathLike,
    state: dict[str, Tensor],
    quantized: dict[str, QuantizedTensor] | None = None,
    meta: dict[str, Any] | None = None,
    layout: str | None = None,
) -> int:
    """Write ``state`` (quantized entries as integers + scales); returns the file's bytes.

    ``layout`` forces one layout for every tensor (``"dense"`` gives the FP32 reference file).
    """
    if layout is not None and layout not in LAYOUTS:
        raise ValueError(f"unknown layout {layout!r}; allowed: {', '.join(LAYOUTS)}")
    quantized = quantized or {}
    unknown = set(quantized) - set(state)
    if unknown:
        raise StorageError(f"quantized tensors not in the state dict: {sorted(unknown)}")
    entries, payload, offset = [], bytearray(), 0
    for name, tensor in state.items():
        entry, blobs = _encode_tensor(name, tensor, quantized.get(name), layout)
        entry["blobs"] = {}
        for key, blob in blobs.items():
            entry["blobs"][key] = [offset, len(blob)]
            payload += blob
            offset += len(blob)
        entries.append(entry)
    header = json.dumps(
        {
            "tensors": entries,
            "meta": meta or {},
            "payload_bytes": len(payload),
            "payload_crc32": zlib.crc32(payload),
        },
        separators=(",", ":"),
    ).encode()
    data = (MAGIC + struct.pack("<BII", VERSION, len(header), zlib.crc32(header)) + header
            + bytes(payload))
    Path(path).write_bytes(data)
    return len(data)


def _decode_stored(entry: dict[str, Any], payload: bytes) -> tuple[Tensor, Tensor | None]:
    """A tensor as stored: its values in its shape (int8 for quantized tensors, 4-bit ones
    unpacked) and, when quantized, its per-channel float32 scales (else None)."""
    shape = tuple(entry["shape"])
    numel = int(np.prod(shape)) if shape else 1
    torch_dtype, np_dtype = _DTYPES[entry["dtype"]]
    blobs = {
        k: payload[start : start + length] for k, (start, length) in entry["blobs"].items()
    }
    quant = entry.get("quant")
    value_dtype = np.int8 if quant else np.dtype(np_dtype).newbyteorder("<")
    layout = entry["layout"]
    count = numel if layout == "dense" else int(entry["nnz"])
    if quant and quant["bits"] == 4:
        values = unpack_int4(blobs["values"], count)
    else:
        values = np.frombuffer(blobs["values"], dtype=value_dtype)
    if values.size != count:
        raise StorageError(f"tensor {entry['name']!r}: {values.size} values, expected {count}")
    if layout == "dense":
        flat = values.copy()
    else:
        if layout == "coo":
            positions = np.frombuffer(blobs["indices"], dtype=entry["index_dtype"]).astype(np.int64)
        elif layout == "bitmask":
            bits = np.unpackbits(np.frombuffer(blobs["mask"], dtype=np.uint8), count=numel)
            positions = np.flatnonzero(bits)
        elif layout == "csr":
            row_ptr = np.frombuffer(blobs["row_ptr"], dtype=entry["ptr_dtype"]).astype(np.int64)
            col = np.frombuffer(blobs["col"], dtype=entry["col_dtype"]).astype(np.int64)
            rows = np.repeat(np.arange(len(row_ptr) - 1), np.diff(row_ptr))
            positions = rows * (numel // max(shape[0], 1)) + col
        else:
            raise StorageError(f"tensor {entry['name']!r}: unknown layout {layout!r}")
        if positions.size != count or (count and positions.max() >= numel):
            raise StorageError(f"tensor {entry['name']!r}: indices do not match its shape")
        flat = np.zeros(numel, dtype=values.dtype)
        flat[positions] = values
    tensor = torch.from_numpy(flat.reshape(shape).copy())
    if quant:
        return tensor, torch.from_numpy(np.frombuffer(blobs["scale"], dtype="<f4").copy())
    return tensor.to(torch_dtype), None


def _decode_tensor(entry: dict[str, Any], payload: bytes) -> Tensor:
    values, scale = _decode_stored(entry, payload)
    if scale is None:
        return values
    return dequantize(values, scale, entry["quant"]["axis"]).to(_DTYPES[entry["dtype"]][0])


def read_header(data: bytes, path: str | os.PathLike = "<bytes>") -> tuple[dict[str, Any], bytes]:
    """Validate framing and checksum; return the header and the payload."""
    if len(data) < 9 or data[:4] != MAGIC:
        raise StorageError(f"{path}: not a compressed GNN model file (bad magic)")
    version, header_len = struct.unpack("<BI", data[4:9])
    if version not in READABLE_VERSIONS:
        raise StorageError(f"{path}: unsupported format version {version}; allowed: "
                           f"{', '.join(map(str, READABLE_VERSIONS))}")
    start = 9 if version == 1 else 13
    raw_header = data[start : start + header_len]
    if version >= 2 and (len(data) < 13 or len(raw_header) != header_len
                         or zlib.crc32(raw_header) != struct.unpack("<I", data[9:13])[0]):
        raise StorageError(f"{path}: header is edited, truncated or corrupted (checksum "
                           "mismatch)")
    try:
        header = json.loads(raw_header)
    except (UnicodeDecodeError, json.JSONDecodeError) as err:
        raise StorageError(f"{path}: corrupted header ({err})") from None
    if not isinstance(header, dict) or not isinstance(header.get("tensors"), list):
        raise StorageError(f"{path}: corrupted header (not a tensor table)")
    payload = data[start + header_len :]
    if len(payload) != header.get("payload_bytes") or zlib.crc32(payload) != header.get(
        "payload_crc32"
    ):
        raise StorageError(f"{path}: payload is truncated or corrupted (checksum mismatch)")
    return header, payload


def _read(path: str | os.PathLike) -> tuple[dict[str, Any], bytes]:
    try:
        data = Path(path).read_bytes()
    except OSError as err:
        raise StorageError(f"{path}: cannot read model file ({err.strerror})") from None
    return read_header(data, path)


def load_state(path: str | os.PathLike) -> tuple[dict[str, Tensor], dict[str, Any]]:
    """Read a model file: the exact state dict that was saved, and its ``meta``."""
    header, payload = _read(path)
    try:
        state = {e["name"]: _decode_tensor(e, payload) for e in header["tensors"]}
        meta = dict(header["meta"])
    except StorageError:
        raise
    except (KeyError, TypeError, ValueError, ArithmeticError, AttributeError) as err:
        raise StorageError(f"{path}: malformed tensor entry ({err})") from None
    return state, meta


def load_quantized(path: str | os.PathLike) -> dict[str, QuantizedTensor]:
    """The quantized tensors of a model file as stored: int8 values (4-bit ones unpacked to
    one per byte), float32 scales, axis and bits. ``load_state`` gives them dequantized."""
    header, payload = _read(path)
    quantized = {}
    try:
        for entry in header["tensors"]:
            if entry.get("quant"):
                values, scale = _decode_stored(entry, payload)
                quantized[entry["name"]] = QuantizedTensor(
                    values, scale, int(entry["quant"]["axis"]), int(entry["quant"]["bits"]))
    except StorageError:
        raise
    except (KeyError, TypeError, ValueError, ArithmeticError, AttributeError) as err:
        raise StorageError(f"{path}: malformed tensor entry ({err})") from None
    return quantized


def update_meta(path: str | os.PathLike, **items: Any) -> int:
    """Add ``items`` to a model file's ``meta`` (the payload is unchanged; the file is
    replaced atomically, in the current format version); returns its new length."""
    header, payload = _read(path)
    header = {**header, "meta": {**header.get("meta", {}), **items}}
    raw = json.dumps(header, separators=(",", ":")).encode()
    data = MAGIC + struct.pack("<BII", VERSION, len(raw), zlib.crc32(raw)) + raw + payload
    tmp = Path(f"{path}.tmp")
    tmp.write_bytes(data)
    os.replace(tmp, path)
    return len(data)


def describe(path: str | os.PathLike) -> list[dict[str, Any]]:
    """Per-tensor layout, shape and bytes of a model file (for reports and debugging)."""
    header, _ = read_header(Path(path).read_bytes(), path)
    return [
        {
            "name": e["name"],
            "shape": e["shape"],
            "layout": e["layout"],
            "bits": e.get("quant", {}).get("bits"),
            "bytes": sum(length for _, length in e["blobs"].values()),
        }
        for e in header["tensors"]
    ]
