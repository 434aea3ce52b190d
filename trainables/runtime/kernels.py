"""The kernels a deployed layer chooses from: dense and CSR products, integer GEMMs, and
sparse-adjacency aggregation. Pure functions over tensors.

Integer GEMMs reproduce the fake-quantized evaluation exactly in integers: a range
quantizer's codes ``q`` (``0..2^b-1`` with zero point ``z``) enter ``torch._int_mm`` as int8
(shifted by 128 at 8 bits, the shift folded back through the weights' column sums); A2Q's
per-node codes are already signed int8. The int32 products are scaled once by the activation
and per-channel weight scales.
"""

from __future__ import annotations

import functools
import warnings
from dataclasses import dataclass

import torch
from torch import Tensor

from trainables.quantization import NodeActQuant, RangeActQuant

# torch warns about beta CSR support and unchecked invariants on every construction; the
# tensors built here are valid by construction.
warnings.filterwarnings("ignore", message="Sparse CSR tensor support is in beta")
warnings.filterwarnings("ignore", message="Sparse invariant checks are implicitly disabled")
# quantize_per_tensor is the fused CPU kernel used below for 8-bit codes; torch announces its
# eventual removal, and the runtime falls back to plain ops where it is gone (has_fused_quant).
warnings.filterwarnings("ignore", message="torch.quantize_per_tensor, torch.quantize_per_channel")

SPARSE_INPUT = 0.5  # inputs with at least this fraction of zeros get the CSR candidate
SPARSE_WEIGHT = 0.5  # weights with at least this fraction of zeros get the CSR candidate


@functools.cache
def has_int_mm() -> bool:
    """Whether this torch build runs ``torch._int_mm`` on the CPU (oneDNN)."""
    if not hasattr(torch, "_int_mm"):
        return False
    try:
        a = torch.ones(17, 8, dtype=torch.int8)
        return bool(torch._int_mm(a, a.t().contiguous()).sum() == 17 * 17 * 8)
    except RuntimeError:
        return False


@functools.cache
def has_onednn_qlinear() -> bool:
    """Whether this torch build has oneDNN's quantized linear (uint8 x int8, float output,
    dequantization fused into the GEMM), as Inductor's x86 int8 path uses it."""
    try:
        packed = torch.ops.onednn.qlinear_prepack(torch.ones(2, 8, dtype=torch.int8), None)
        out = torch.ops.onednn.qlinear_pointwise(
            torch.full((17, 8), 3, dtype=torch.uint8), 1.0, 1, packed, torch.ones(2),
            torch.zeros(2, dtype=torch.int32), None, 1.0, 0, torch.float32, "none", [], "")
        return bool((out == 16.0).all())
    except (AttributeError, RuntimeError):
        return False


@functools.cache
def has_fused_quant() -> bool:
    """Whether torch still has the fused ``quantize_per_tensor`` kernel (8-bit codes in one
    pass, about 2x faster than the same rounding in plain ops)."""
    try:
        x = torch.tensor([[0.0, 0.5, 1.0]])
        q = torch.quantize_per_tensor(x, 1 / 255, 0, torch.quint8).int_repr()
        return q.tolist() == [[0, 128, 255]] or q.tolist() == [[0, 127, 255]]
    except (AttributeError, RuntimeError):
        return False


def zero_fraction(t: Tensor) -> float:
    return 1.0 - float(torch.count_nonzero(t)) / max(t.numel(), 1)


def _int32_indices(csr: Tensor) -> Tensor:
    """The same CSR tensor with int32 indices, which the sparse GEMM takes without a
    conversion per call (15% faster on Cora's adjacency)."""
    if csr.numel() >= 2**31 or csr.values().numel() >= 2**31:
        return csr
    return torch.sparse_csr_tensor(csr.crow_indices().to(torch.int32),
                                   csr.col_indices().to(torch.int32), csr.values(), csr.shape,
                                   check_invariants=False)


def to_csr(t: Tensor) -> Tensor:
    """A dense 2-D tensor as CSR (float values as they are)."""
    return _int32_indices(t.to_sparse_csr())


def csr_matrix(rows: Tensor, cols: Tensor, values: Tensor, shape: tuple[int, int]) -> Tensor:
    """CSR of a COO triple, entries kept as given (duplicates are summed by the product, as
    scatter-add sums them). Rows are ordered by one stable argsort, none when already in
    order (no coalescing sort: on a PROTEINS batch that was 18% of a GIN inference)."""
    if rows.numel() > 1 and not bool((rows[1:] >= rows[:-1]).all()):
        order = torch.argsort(rows, stable=True)
        rows, cols, values = rows[order], cols[order], values[order]
    counts = torch.bincount(rows, minlength=shape[0])
    crow = torch.zeros(shape[0] + 1, dtype=torch.int64)
    torch.cumsum(counts, 0, out=crow[1:])
    csr = torch.sparse_csr_tensor(crow, cols, values, shape, check_invariants=False)
    return _int32_indices(csr)


def spmm(adjacency: Tensor, h: Tensor) -> Tensor:
    """CSR adjacency times dense features."""
    return torch.sparse.mm(adjacency, h)


def scatter_sum(h: Tensor, src: Tensor, dst: Tensor, weight: Tensor | None,
                num_nodes: int) -> Tensor:
    """sum over edges (src -> dst) of ``weight * h[src]``, what PyG's propagate computes."""
    messages = h.index_select(0, src)
    if weight is not None:
        messages = messages * weight.unsqueeze(-1)
    return h.new_zeros(num_nodes, h.size(1)).index_add_(0, dst, messages)


# ---- activations --------------------------------------------------------------------------


@dataclass(frozen=True)
class Codes:
    """Activations as int8 codes: value = (codes + offset) * row_scale (per node, or one)."""

    codes: Tensor  # int8 [N, in]
    offset: int  # added to every code (minus the zero point, plus the int8 shift)
    row_scale: Tensor | None  # float32 [N, 1]; None: the scale is folded into the weights


class FrozenRange:
    """A range quantizer's evaluation with its scale and zero point read once. Computes the
    values ``fake_quantize_per_tensor_affine`` gives (``(clamp(round(x / s) + z) - z) * s``,
    float32 throughout) in plain vectorized ops: torch's fused op is about 10x slower on
    the CPU. Integer codes are the same rounding, shifted into int8."""

    def __init__(self, quantizer: RangeActQuant) -> None:
        self.levels = 2**quantizer.bits - 1
        scale = (torch.clamp(quantizer.hi - quantizer.lo, min=1e-8) / self.levels).reshape(1)
        scale = scale.float()
        self.scale = float(scale)
        self.inverse = float(torch.ones(1) / scale)  # 1/s in float32, as the fused op takes it
        self.zero = int(torch.round(-quantizer.lo / scale).to(torch.int32))
        self.shift = 128 if self.levels > 127 else 0  # 8 bits: 0..255 -> -128..127
        self.offset = self.shift - self.zero  # value = (code + offset) * scale

    def _q(self, x: Tensor, shift: int) -> Tensor:
        q = torch.round(x * self.inverse)
        return q.add_(self.zero - shift).clamp_(-shift, self.levels - shift)

    @property
    def fused(self) -> bool:
        return self.levels == 255 and has_fused_quant()

    def fake(self, x: Tensor) -> Tensor:
        if self.fused:
            return torch.quantize_per_tensor(x, self.scale, self.zero, torch.quint8).dequantize()
        return self._q(x, self.zero).mul_(self.scale)

    def unsigned_codes(self, x: Tensor) -> Tensor:
        """uint8 codes ``0..2^b-1`` (zero point ``self.zero``), for oneDNN."""
        if self.fused:
            return torch.quantize_per_tensor(x, self.scale, self.zero, torch.quint8).int_repr()
        return self._q(x, 0).to(torch.uint8)

    def codes(self, x: Tensor) -> Codes:
        if self.fused:
            q = torch.quantize_per_tensor(x, self.scale, self.zero - 128, torch.qint8)
            return Codes(q.int_repr(), self.offset, None)
        return Codes(self._q(x, self.shift).to(torch.int8), self.offset, None)


class FrozenNode:
    """A frozen A2Q quantizer: per-node steps and bit-widths, as tensors read once."""

    def __init__(self, quantizer: NodeActQuant) -> None:
        bits = quantizer.node_bits().float()
        self.qmax = (2 ** (bits - 1) - 1).unsqueeze(-1)
        self.qmin = -self.qmax - 1
        self.step = torch.exp(quantizer.log_step.float()).unsqueeze(-1)
        self.scale, self.offset = 1.0, 0  # per-node steps scale the rows
        self.num_nodes = bits.numel()

    def _q(self, x: Tensor) -> Tensor:
        if x.size(0) != self.num_nodes:
            raise ValueError(f"a2q learned bit-widths for {self.num_nodes} nodes; this graph "
                             f"has {x.size(0)} (a2q here is transductive)")
        return torch.maximum(torch.minimum(torch.round(x / self.step), self.qmax), self.qmin)

    def fake(self, x: Tensor) -> Tensor:
        return self._q(x) * self.step

    def codes(self, x: Tensor) -> Codes:
        return Codes(self._q(x).to(torch.int8), 0, self.step)


def freeze_activation(quantizer) -> FrozenRange | FrozenNode | None:
    """The evaluation-time form of an activation quantizer (None: float activations)."""
    if quantizer is None:
        return None
    if isinstance(quantizer, RangeActQuant):
        return FrozenRange(quantizer)
    if isinstance(quantizer, NodeActQuant):
        return FrozenNode(quantizer)
    raise TypeError(f"no deployed form for activation quantizer {type(quantizer).__name__}")


@dataclass(frozen=True)
class Int8Weight:
    """An int8 weight [in, out] with what the GEMM's epilogue needs precomputed."""

    values: Tensor  # int8 [in, out]
    scale: Tensor  # float32 [1, out]: activation scale x weight scale (per-node: weight only)
    shift: Tensor  # float32 [1, out]: offset x column sums x scale

    @classmethod
    def build(cls, values: Tensor, weight_scale: Tensor, act) -> Int8Weight:
        values = values.to(torch.int8).contiguous()
        scale = (weight_scale.float() * act.scale).reshape(1, -1)
        offset = act.offset
        column_sums = values.sum(dim=0, dtype=torch.int64).to(torch.float64)
        shift = (offset * column_sums * scale.double()).float().reshape(1, -1)
        return cls(values, scale, shift)


@dataclass(frozen=True)
class OneDNNWeight:
    """An int8 weight packed for oneDNN's quantized linear, with per-channel scales."""

    packed: Tensor
    scale: Tensor  # float32 [out]
    zero: Tensor  # int32 [out], all 0 (symmetric weights)

    @classmethod
    def build(cls, values: Tensor, weight_scale: Tensor) -> OneDNNWeight:
        """From int8 values laid out [in, out] and per-output-channel scales."""
        out = values.size(1)
        packed = torch.ops.onednn.qlinear_prepack(values.t().contiguous(), None)
        return cls(packed, weight_scale.float().contiguous(), torch.zeros(out, dtype=torch.int32))


def onednn_matmul(x: Tensor, act: FrozenRange, weight: OneDNNWeight) -> Tensor:
    """The activation's uint8 codes times the int8 weight in one oneDNN call, float out."""
    return torch.ops.onednn.qlinear_pointwise(
        act.unsigned_codes(x), act.scale, act.zero, weight.packed, weight.scale, weight.zero,
        None, 1.0, 0, torch.float32, "none", [], "")


def int8_matmul(codes: Codes, weight: Int8Weight) -> Tensor:
    """(codes + offset) * row_scale @ (weight values * scales), as one int8 GEMM (int32
    accumulators) and one fused multiply-add."""
    acc = torch._int_mm(codes.codes, weight.values).to(torch.float32)
    out = torch.addcmul(weight.shift, acc, weight.scale)
    return out if codes.row_scale is None else out * codes.row_scale
