"""Deployed layers: each computes what its eager layer computes, with a choice of kernels.

A deployed layer offers ``options`` (names such as ``csr_x+spmm``: the transform's kernel,
then the aggregation's), knows which it runs (``kernel``) and which one reproduces the eager
layer op for op (``REFERENCE``). The planner (:mod:`trainables.runtime.plan`) times the
options once and keeps the fastest. Constant inputs of a fixed graph (a transductive task's
features and edges) are converted once and kept, as a deployment stores them
(:class:`GraphInputs`); every other input is converted inside the call.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterator
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from trainables.runtime import kernels as k
from trainables.spline_conv import SplineConv, _aggregate, spline_basis

AGGREGATIONS = ("scatter", "spmm")


class NotDeployable(Exception):
    """A layer the runtime has no deployed form for (it runs eagerly, tag ``eager``)."""


class GraphInputs:
    """The tensors fixed across inferences, and what was derived from them once; and, during
    one call, what was derived from that call's inputs (the adjacency of a batch of new
    graphs is built once and shared by every layer)."""

    def __init__(self, tensors: tuple[Tensor, ...] = ()) -> None:
        self._tensors = {id(t): t for t in tensors}  # kept alive, so ids stay unique
        self._cache: dict[tuple, Any] = {}
        self.replaced: set[int] = set()  # inputs only read through a derived form
        self._call: dict[int, Tensor] = {}
        self._call_cache: dict[tuple, Any] = {}

    @property
    def fixed(self) -> bool:
        return bool(self._tensors)

    @contextlib.contextmanager
    def call(self, args: tuple) -> Iterator[None]:
        """Within the block, derived forms of ``args`` are built once."""
        outer = self._call
        self._call = {**outer, **{id(a): a for a in args if isinstance(a, Tensor)}}
        try:
            yield
        finally:
            self._call = outer
            if not outer:
                self._call_cache.clear()

    def derived(self, t: Tensor, key: tuple, build: Callable[[], Any]) -> Any:
        """``build()``, computed once when ``t`` is a fixed input (or once per call when it
        is an input of the current call), every time otherwise."""
        if id(t) in self._tensors:
            cache, cache_key = self._cache, (id(t), *key)
            if cache_key not in cache:
                self.replaced.add(id(t))
        elif id(t) in self._call:
            cache, cache_key = self._call_cache, (id(t), *key)
        else:
            return build()
        if cache_key not in cache:
            cache[cache_key] = build()
        return cache[cache_key]

    def clear(self) -> None:
        self._cache.clear()
        self.replaced.clear()

    def held(self) -> list[Any]:
        """What the deployment keeps: derived forms, and fixed inputs read directly."""
        kept = [t for i, t in self._tensors.items() if i not in self.replaced]
        return kept + list(self._cache.values())


def int8_weight(values: Tensor, scale: Tensor) -> tuple[Tensor, Tensor]:
    """A stored integer weight laid out [in, out], with its per-output-channel scales."""
    return values.to(torch.int8).contiguous(), scale.float()


class Transform(nn.Module):
    """``act(x) @ W`` (no bias): dense ``mm``, ``csr_x`` (the input as CSR), ``csr_w`` (the
    weight as CSR), ``int8_mm`` (int8 codes times int8 weights, ``torch._int_mm``) or
    ``int8_onednn`` (uint8 codes times int8 weights, oneDNN's quantized linear with the
    dequantization fused; range quantizers only)."""

    def __init__(self, weight_t: Tensor, act: nn.Module | None, inputs: GraphInputs,
                 int8: tuple[Tensor, Tensor] | None = None) -> None:
        super().__init__()
        self.weight_t = weight_t.detach().contiguous()  # [in, out]
        self.act, self.inputs, self.kernel = k.freeze_activation(act), inputs, "mm"
        self.int8 = (k.Int8Weight.build(*int8, self.act)
                     if int8 is not None and self.act is not None else None)
        self.onednn = (k.OneDNNWeight.build(*int8)
                       if self.int8 is not None and isinstance(self.act, k.FrozenRange)
                       and k.has_onednn_qlinear() else None)
        self.weight_csr = (k.to_csr(self.weight_t.t().contiguous())
                           if k.zero_fraction(self.weight_t) >= k.SPARSE_WEIGHT else None)

    def available(self) -> list[str]:
        options = ["mm", "csr_x"]
        if self.weight_csr is not None:
            options.append("csr_w")
        if self.int8 is not None and k.has_int_mm():
            options.append("int8_mm")
        if self.onednn is not None and k.has_onednn_qlinear():
            options.append("int8_onednn")
        return options

    def candidates(self, x: Tensor) -> list[str]:
        """The options worth timing on input ``x`` (CSR input only where it is sparse)."""
        sparse = k.zero_fraction(self._fake(x)) >= k.SPARSE_INPUT
        return [o for o in self.available() if o != "csr_x" or sparse]

    def _fake(self, x: Tensor) -> Tensor:
        if self.act is None:
            return x
        return self.inputs.derived(x, ("fake", id(self.act)), lambda: self.act.fake(x))

    def forward(self, x: Tensor) -> Tensor:
        if self.kernel == "csr_x":
            xs = self.inputs.derived(x, ("csr", id(self.act)),
                                     lambda: k.to_csr(self.act.fake(x) if self.act else x))
            return torch.sparse.mm(xs, self.weight_t)
        if self.kernel == "int8_mm":
            codes = self.inputs.derived(x, ("codes", id(self.act)),
                                        lambda: self.act.codes(x))
            return k.int8_matmul(codes, self.int8)
        if self.kernel == "int8_onednn":
            return k.onednn_matmul(x, self.act, self.onednn)
        xq = self._fake(x)
        if self.kernel == "csr_w":
            return torch.sparse.mm(self.weight_csr, xq.t()).t()
        return xq @ self.weight_t


class DeployedLayer(nn.Module):
    """Options are ``<transform kernel>+<aggregation>``; subclasses define the two halves."""

    REFERENCE = "mm+scatter"
    transform: Transform

    def __init__(self) -> None:
        super().__init__()
        self.aggregation = "scatter"

    @property
    def kernel(self) -> str:
        return f"{self.transform.kernel}+{self.aggregation}"

    def aggregations(self) -> tuple[str, ...]:
        return AGGREGATIONS

    def available(self) -> list[str]:
        return [f"{t}+{a}" for t in self.transform.available() for a in self.aggregations()]

    def candidates(self, x: Tensor, *args: Any) -> list[str]:
        return [f"{t}+{a}" for t in self.transform.candidates(x) for a in self.aggregations()]

    def use(self, option: str) -> None:
        transform, aggregation = option.split("+")
        self.transform.kernel, self.aggregation = transform, aggregation


class DeployedGCNConv(DeployedLayer):
    """PyG's ``GCNConv``: ``A_hat (x W) + b`` (normalization as PyG computes it)."""

    def __init__(self, conv: nn.Module, act: nn.Module | None, int8, inputs: GraphInputs
                 ) -> None:
        super().__init__()
        if conv.aggr != "add" or conv.flow != "source_to_target":
            raise NotDeployable(f"GCNConv with aggr={conv.aggr!r}, flow={conv.flow!r}")
        self.transform = Transform(conv.lin.weight.t(), act, inputs, int8)
        self.bias = None if conv.bias is None else conv.bias.detach()
        self.flags = (conv.normalize, conv.add_self_loops, conv.improved)
        self.inputs = inputs

    def _edges(self, edge_index: Tensor, edge_weight: Tensor | None, n: int):
        normalize, self_loops, improved = self.flags
        if normalize:
            from torch_geometric.nn.conv.gcn_conv import gcn_norm

            edge_index, edge_weight = gcn_norm(edge_index, edge_weight, n, improved,
                                               self_loops, "source_to_target", torch.float32)
        return edge_index[0], edge_index[1], edge_weight

    def _csr(self, edge_index: Tensor, edge_weight: Tensor | None, n: int) -> Tensor:
        src, dst, weight = self._edges(edge_index, edge_weight, n)
        values = torch.ones(src.numel()) if weight is None else weight.float()
        return k.csr_matrix(dst, src, values, (n, n))

    def forward(self, x: Tensor, edge_index: Tensor, edge_weight: Tensor | None = None
                ) -> Tensor:
        h, n = self.transform(x), x.size(0)
        key = ("gcn", self.aggregation, *self.flags, id(edge_weight))
        if self.aggregation == "spmm":
            adjacency = self.inputs.derived(edge_index, key,
                                            lambda: self._csr(edge_index, edge_weight, n))
            out = k.spmm(adjacency, h)
        else:
            src, dst, weight = self.inputs.derived(
                edge_index, key, lambda: self._edges(edge_index, edge_weight, n))
            out = k.scatter_sum(h, src, dst, weight, n)
        return out if self.bias is None else out + self.bias


class DeployedSplineConv(DeployedLayer):
    """Our ``SplineConv``: the kernel weights and the root weight in one transform
    (``x [W_1 .. W_K | R]``), then the B-spline combination as scatter or as one SpMM over a
    ``[N, N*K]`` basis matrix."""

    def __init__(self, conv: SplineConv, act: nn.Module | None, int8, inputs: GraphInputs
                 ) -> None:
        super().__init__()
        self.K, self.out = conv.K, conv.out_channels
        weight = conv.weight.detach().permute(1, 0, 2).reshape(conv.in_channels, -1)
        self.root = conv.lin is not None
        if self.root:
            weight = torch.cat([weight, conv.lin.weight.detach().t()], dim=1)
        self.transform = Transform(weight, act, inputs, int8)
        self.bias = None if conv.bias is None else conv.bias.detach()
        self.kernel_size, self.is_open_spline = conv.kernel_size, conv.is_open_spline
        self.degree, self.aggr, self.inputs = conv.degree, conv.aggr, inputs

    def aggregations(self) -> tuple[str, ...]:
        return AGGREGATIONS if self.aggr in ("mean", "sum", "add") else ("scatter",)

    def _basis(self, edge_index: Tensor, edge_attr: Tensor, n: int):
        basis, weight_index = spline_basis(edge_attr, self.kernel_size, self.is_open_spline,
                                           self.degree)
        rows = edge_index[0].unsqueeze(-1) * self.K + weight_index  # [E, S]
        return basis, rows, edge_index[1]

    def _csr(self, edge_index: Tensor, edge_attr: Tensor, n: int) -> Tensor:
        basis, rows, dst = self._basis(edge_index, edge_attr, n)
        values = basis
        if self.aggr == "mean":
            count = torch.bincount(dst, minlength=n).clamp(min=1).to(basis.dtype)
            values = basis / count[dst].unsqueeze(-1)
        dst_rows = dst.unsqueeze(-1).expand_as(rows)
        return k.csr_matrix(dst_rows.reshape(-1), rows.reshape(-1), values.reshape(-1),
                            (n, n * self.K))

    def forward(self, x: Tensor, edge_index: Tensor, edge_attr: Tensor) -> Tensor:
        h, n = self.transform(x), x.size(0)
        width = self.K * self.out
        transformed = h[:, :width].reshape(n * self.K, self.out)
        key = ("spline", self.aggregation, id(edge_attr))
        if self.aggregation == "spmm":
            basis = self.inputs.derived(edge_index, key,
                                        lambda: self._csr(edge_index, edge_attr, n))
            out = k.spmm(basis, transformed)
        else:
            basis, rows, dst = self.inputs.derived(
                edge_index, key, lambda: self._basis(edge_index, edge_attr, n))
            messages = (transformed[rows] * basis.unsqueeze(-1)).sum(dim=1)
            out = _aggregate(messages, dst, n, self.aggr)
        if self.root:
            out = out + h[:, width:]
        return out if self.bias is None else out + self.bias


def fold_batch_norm(weight: Tensor, bias: Tensor | None, norm: nn.BatchNorm1d
                    ) -> tuple[Tensor, Tensor, Tensor]:
    """A Linear followed by an evaluation-mode BatchNorm as one affine map: the per-output
    factor, the scaled weight [out, in] and the bias."""
    factor = norm.weight.detach() / torch.sqrt(norm.running_var + norm.eps)
    bias = torch.zeros_like(factor) if bias is None else bias.detach()
    return factor, weight.detach() * factor.unsqueeze(-1), (bias - norm.running_mean) * factor \
        + norm.bias.detach()


def _affine_steps(mlp: nn.Sequential) -> list[tuple[str, Any]]:
    """An MLP as steps: ("linear", (index, factor, weight, bias)) with batch norms folded in,
    or ("relu", None). Anything else is not deployable."""
    modules, steps, i = list(mlp), [], 0
    while i < len(modules):
        m = modules[i]
        if isinstance(m, nn.Linear):
            nxt = modules[i + 1] if i + 1 < len(modules) else None
            if isinstance(nxt, nn.BatchNorm1d) and nxt.track_running_stats:
                steps.append(("linear", (i, *fold_batch_norm(m.weight, m.bias, nxt))))
                i += 2
                continue
            bias = torch.zeros(m.out_features) if m.bias is None else m.bias.detach()
            steps.append(("linear", (i, torch.ones(m.out_features), m.weight.detach(), bias)))
        elif isinstance(m, nn.ReLU):
            steps.append(("relu", None))
        elif not isinstance(m, nn.Dropout):
            raise NotDeployable(f"GINConv MLP holds {type(m).__name__}")
        i += 1
    if not steps or steps[0][0] != "linear":
        raise NotDeployable("GINConv MLP does not start with a Linear layer")
    return steps


class DeployedGINConv(DeployedLayer):
    """PyG's ``GINConv`` with an MLP of Linear / BatchNorm / ReLU: batch norms folded into
    the Linear layers; the first Linear either after the aggregation (as the eager layer:
    options ``<aggregation>+mm``) or before it (``<kernel>+<aggregation>``: the same sum,
    as the Linear is linear, and on quantized inputs an integer GEMM)."""

    REFERENCE = "scatter+mm"

    def __init__(self, conv: nn.Module, act: nn.Module | None,
                 int8_for: Callable[[int, Tensor], Any], inputs: GraphInputs) -> None:
        super().__init__()
        if conv.aggr != "add":
            raise NotDeployable(f"GINConv with aggr={conv.aggr!r}")
        steps = _affine_steps(conv.nn)
        index, factor, weight, bias = steps[0][1]
        int8 = int8_for(index, factor)
        self.transform = Transform(weight.t(), act, inputs, int8)
        self.first_bias, self.rest = bias, nn.ModuleList()
        self.rest_steps: list[str] = []
        for kind, args in steps[1:]:
            self.rest_steps.append(kind)
            if kind == "linear":
                self.rest.append(DeployedLinear(args[2], args[3], inputs))
        self.eps, self.inputs, self.order = float(conv.eps), inputs, "agg_first"

    @property
    def kernel(self) -> str:
        if self.order == "agg_first":
            return f"{self.aggregation}+mm"
        return f"{self.transform.kernel}+{self.aggregation}"

    def available(self) -> list[str]:
        return [f"{a}+mm" for a in AGGREGATIONS] + super().available()

    def candidates(self, x: Tensor, *args: Any) -> list[str]:
        return [f"{a}+mm" for a in AGGREGATIONS] + super().candidates(x)

    def use(self, option: str) -> None:
        first, second = option.split("+")
        if first in AGGREGATIONS:
            self.order, self.aggregation, self.transform.kernel = "agg_first", first, "mm"
        else:
            self.order, self.transform.kernel, self.aggregation = "lin_first", first, second

    def _csr(self, edge_index: Tensor, n: int) -> Tensor:
        loops = torch.arange(n)
        rows = torch.cat([edge_index[1], loops])
        cols = torch.cat([edge_index[0], loops])
        values = torch.cat([torch.ones(edge_index.size(1)), torch.full((n,), 1.0 + self.eps)])
        return k.csr_matrix(rows, cols, values, (n, n))

    def _aggregate(self, h: Tensor, edge_index: Tensor) -> Tensor:
        n = h.size(0)
        if self.aggregation == "spmm":
            adjacency = self.inputs.derived(edge_index, ("gin", self.eps),
                                            lambda: self._csr(edge_index, n))
            return k.spmm(adjacency, h)
        summed = k.scatter_sum(h, edge_index[0], edge_index[1], None, n)
        return summed + (1.0 + self.eps) * h

    def forward(self, x: Tensor, edge_index: Tensor, size: Any = None) -> Tensor:
        if self.order == "agg_first":
            h = self._aggregate(self.transform._fake(x), edge_index)
            h = h @ self.transform.weight_t
        else:
            h = self._aggregate(self.transform(x), edge_index)
        h = h + self.first_bias
        linears = iter(self.rest)
        for kind in self.rest_steps:
            h = F.relu(h) if kind == "relu" else next(linears)(h)
        return h


class DeployedLinear(nn.Module):
    """``x W^T + b`` on float inputs: dense ``mm`` or the weight as CSR (``csr_w``)."""

    REFERENCE = "mm"

    def __init__(self, weight: Tensor, bias: Tensor | None, inputs: GraphInputs) -> None:
        super().__init__()
        self.transform = Transform(weight.t(), None, inputs)
        self.bias = None if bias is None else bias.detach()

    @property
    def kernel(self) -> str:
        return self.transform.kernel

    def available(self) -> list[str]:
        return self.transform.available()

    def candidates(self, x: Tensor, *args: Any) -> list[str]:
        # a linear layer of a user's model may see [N, heads, d]: dense only
        return self.transform.candidates(x) if x.dim() == 2 else [self.REFERENCE]

    def use(self, option: str) -> None:
        self.transform.kernel = option

    def forward(self, x: Tensor) -> Tensor:
        out = self.transform(x) if x.dim() == 2 else x @ self.transform.weight_t
        return out if self.bias is None else out + self.bias
