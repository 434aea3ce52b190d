"""HGP-SL pooling (Zhang et al., 2019): node selection by information score, then structure
learning on the kept nodes with sparse attention.

Written from the paper's equations: the information score of a node is the L1 norm of
``(I - D^-1/2 A D^-1/2) x`` (how little its neighbours already say about it); the top
``ratio`` of each graph's nodes are kept; candidate edges among them are pairs within
``hops`` hops in the graph before pooling (the paper's sampled variant, which keeps the cost
linear in the edges), plus each node itself; each candidate's weight is
``sparsemax_j(leaky_relu(a . [x_i || x_j]) + lamb * A_ij)``, and candidates with weight 0 are
dropped. Each node's weights sum to 1, so the convolutions after a pooling use them as they
are (no added self-loops, no further normalization), as the authors' code does.
"""

from __future__ import annotations

import warnings

import torch
import torch.nn.functional as F
from torch import Tensor, nn
from torch_geometric.nn.pool.select.topk import topk
from torch_geometric.utils import coalesce, remove_self_loops


def information_score(x: Tensor, edge_index: Tensor, edge_weight: Tensor | None) -> Tensor:
    """Per node: ``|| x_i - sum_j A_ij x_j / sqrt(d_i d_j) ||_1``, with ``d`` the weighted
    degree (after a pooling, the learned edge weights)."""
    edge_index, edge_weight = remove_self_loops(edge_index, edge_weight)
    row, col = edge_index
    w = edge_weight if edge_weight is not None else x.new_ones(row.numel())
    deg = torch.zeros(x.size(0), dtype=x.dtype, device=x.device).index_add_(0, row, w)
    inv_sqrt = deg.pow(-0.5).masked_fill(deg <= 0, 0.0)
    norm = w * inv_sqrt[row] * inv_sqrt[col]
    neighbours = torch.zeros_like(x).index_add_(0, row, x[col] * norm.unsqueeze(-1))
    return (x - neighbours).abs().sum(dim=-1)


def segment_sparsemax(scores: Tensor, segment: Tensor, num_segments: int) -> Tensor:
    """Sparsemax of ``scores`` within each segment (entries sharing ``segment``)."""
    # order by segment, then by score descending inside each segment
    order = scores.argsort(descending=True, stable=True)
    order = order[segment[order].argsort(stable=True)]
    s, seg = scores[order], segment[order]
    counts = torch.bincount(seg, minlength=num_segments)
    starts = counts.cumsum(0) - counts
    rank = torch.arange(s.numel(), device=s.device) - starts[seg] + 1  # 1-based within segment
    cumsum = s.double().cumsum(0)  # double: segments are read off one running sum
    within = (cumsum - (cumsum - s)[starts[seg]]).to(s.dtype)
    support = (1 + rank * s) > within
    size = torch.zeros(num_segments, dtype=torch.long, device=s.device).index_add_(
        0, seg, support.long())
    last = (starts + size - 1).clamp(min=0)
    tau = (within[last] - 1) / size.clamp(min=1)
    out = torch.empty_like(scores)
    out[order] = torch.clamp(s - tau[seg], min=0)
    return out


def _hop_pairs(edge_index: Tensor, num_nodes: int, hops: int) -> Tensor:
    """Pairs (i, j), i != j, within ``hops`` hops."""
    eye = torch.arange(num_nodes, device=edge_index.device)
    loops = torch.stack([eye, eye])
    adj = torch.sparse_coo_tensor(torch.cat([edge_index, loops], 1),
                                  torch.ones(edge_index.size(1) + num_nodes),
                                  (num_nodes, num_nodes), check_invariants=False).coalesce()
    reach = adj
    with warnings.catch_warnings():  # torch notes that its sparse CSR support is in beta
        warnings.simplefilter("ignore", UserWarning)
        for _ in range(hops - 1):
            reach = torch.sparse.mm(reach, adj).coalesce()
    pairs, _ = remove_self_loops(reach.indices())
    return pairs


class HGPSLPool(nn.Module):
    """Keep the most informative ``ratio`` of each graph's nodes and learn their edges."""

    def __init__(self, channels: int, ratio: float = 0.5, hops: int = 3, lamb: float = 1.0,
                 negative_slope: float = 0.2) -> None:
        super().__init__()
        self.ratio, self.hops, self.lamb, self.negative_slope = ratio, hops, lamb, negative_slope
        self.att = nn.Parameter(torch.empty(2 * channels))
        nn.init.normal_(self.att, std=(2 * channels) ** -0.5)

    def forward(self, x: Tensor, edge_index: Tensor, edge_weight: Tensor | None,
                batch: Tensor) -> tuple[Tensor, Tensor, Tensor, Tensor]:
        num_nodes = x.size(0)
        score = information_score(x, edge_index, edge_weight)
        perm = topk(score, self.ratio, batch)
        keep = torch.full((num_nodes,), -1, dtype=torch.long, device=x.device)
        keep[perm] = torch.arange(perm.numel(), device=x.device)
        x, batch = x[perm], batch[perm]

        pairs = _hop_pairs(edge_index, num_nodes, self.hops)
        pairs = keep[pairs]
        pairs = pairs[:, (pairs >= 0).all(dim=0)]
        # the existing (induced) edges, as the prior lamb * A_ij
        induced = keep[edge_index]
        mask = (induced >= 0).all(dim=0) & (induced[0] != induced[1])
        w = edge_weight[mask] if edge_weight is not None else x.new_ones(int(mask.sum()))
        # each node is also a candidate of its own (prior 0): attention decides how much a
        # node keeps of itself, and every node's weights sum to 1
        eye = torch.arange(x.size(0), device=x.device).expand(2, -1)
        prior_index = torch.cat([induced[:, mask], pairs, eye], dim=1)
        prior_value = torch.cat([w, x.new_zeros(pairs.size(1) + x.size(0))])
        pairs, prior = coalesce(prior_index, prior_value, x.size(0), reduce="sum")

        half = self.att.numel() // 2
        logits = (x @ self.att[:half])[pairs[0]] + (x @ self.att[half:])[pairs[1]]
        logits = F.leaky_relu(logits, self.negative_slope) + self.lamb * prior
        weight = segment_sparsemax(logits, pairs[0], x.size(0))
        kept = weight > 0
        return x, pairs[:, kept], weight[kept], batch
