"""The memory one inference needs, measured: the bytes the model holds (weights, buffers,
the stored graph inputs and what was derived from them) plus the peak of the tensors the
call itself allocates, tracked op by op as torch returns them (scope tag
``infer_peak_scope``)."""

from __future__ import annotations

import dataclasses
import weakref
from collections.abc import Callable, Iterable
from typing import Any

import torch
from torch import Tensor, nn
from torch.utils._python_dispatch import TorchDispatchMode
from torch.utils._pytree import tree_flatten

SCOPE = "weights+graph_inputs+peak_intermediates"


def _storages(t: Tensor) -> list[tuple[int, int]]:
    """(data pointer, bytes) of each storage behind ``t`` (a sparse tensor has several)."""
    if t.layout == torch.strided:
        storage = t.untyped_storage()
        return [(storage.data_ptr(), storage.nbytes())]
    if t.layout == torch.sparse_csr:
        parts = (t.crow_indices(), t.col_indices(), t.values())
    elif t.layout == torch.sparse_coo:
        parts = (t._indices(), t._values())
    else:
        return []
    return [s for p in parts for s in _storages(p)]


def _tensors(obj: Any) -> Iterable[Tensor]:
    if isinstance(obj, Tensor):
        yield obj
    elif isinstance(obj, nn.Module):
        yield from obj.parameters()
        yield from obj.buffers()
    elif isinstance(obj, dict):
        for value in obj.values():
            yield from _tensors(value)
    elif isinstance(obj, (list, tuple)):
        for value in obj:
            yield from _tensors(value)
    elif dataclasses.is_dataclass(obj):
        for field in dataclasses.fields(obj):
            yield from _tensors(getattr(obj, field.name))


def held_bytes(objects: Iterable[Any]) -> tuple[int, set[int]]:
    """Bytes of the distinct storages behind ``objects``; and their data pointers."""
    seen: dict[int, int] = {}
    for obj in objects:
        for t in _tensors(obj):
            for ptr, nbytes in _storages(t):
                seen[ptr] = nbytes
    return sum(seen.values()), set(seen)


class _PeakTracker(TorchDispatchMode):
    """Live bytes of the storages created while active; their peak."""

    def __init__(self, known: set[int]) -> None:
        super().__init__()
        self.known, self.live, self.current, self.peak = known, {}, 0, 0

    def _release(self, ptr: int) -> None:
        entry = self.live.get(ptr)
        if entry is not None:
            entry[1] -= 1
            if entry[1] == 0:
                self.current -= entry[0]
                del self.live[ptr]

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        out = func(*args, **(kwargs or {}))
        for t in tree_flatten(out)[0]:
            if not isinstance(t, Tensor):
                continue
            for ptr, nbytes in _storages(t):
                if ptr in self.known or nbytes == 0:
                    continue
                if ptr not in self.live:
                    self.live[ptr] = [nbytes, 0]
                    self.current += nbytes
                    self.peak = max(self.peak, self.current)
                self.live[ptr][1] += 1
                weakref.finalize(t, self._release, ptr)
        return out


def infer_peak_mb(run: Callable[[], object], held: Iterable[Any]) -> float:
    """MiB one call of ``run()`` needs: ``held`` (the model and the inputs it keeps) plus the
    peak of what the call allocates."""
    resident, known = held_bytes(held)
    tracker = _PeakTracker(known)
    with torch.inference_mode(), tracker:
        run()
    return (resident + tracker.peak) / 2**20
