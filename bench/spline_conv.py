"""SplineConv speed: a Cora training epoch with our layer vs PyG's reference kernel.

Target (foundation issue): >= 100x faster per training epoch. Both models hold the same
weights and run in this process, one after the other; the headline is their ratio.

    python bench/spline_conv.py [--quick] [--data-root DIR] [--no-write]
"""

from __future__ import annotations

import statistics
import sys
import time
import warnings
from pathlib import Path

import torch
import torch.nn.functional as F

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench.common import append_result, parse_args
from spaces import load_space
from trainables.models import SplineNet
from trainables.tasks import build_task


def reference_model(model: SplineNet) -> SplineNet:
    """The same network and weights with PyG's SplineConv (torch-spline-conv kernel)."""
    from torch_geometric.nn import SplineConv as Reference

    ref = SplineNet(model.conv1.in_channels, model.conv2.out_channels)
    for name in ("conv1", "conv2"):
        ours = getattr(model, name)
        layer = Reference(ours.in_channels, ours.out_channels, dim=1, kernel_size=2)
        layer.load_state_dict(ours.state_dict())
        setattr(ref, name, layer)
    return ref


def epoch_times(model, task, epochs: int) -> list[float]:
    optimizer = torch.optim.Adam(model.parameters(), lr=0.01)
    times = []
    for _ in range(epochs):
        start = time.perf_counter()
        model.train()
        optimizer.zero_grad()
        out = model(task.x, task.edge_index, task.edge_attr)
        F.cross_entropy(out[task.train_mask], task.y[task.train_mask]).backward()
        optimizer.step()
        times.append(time.perf_counter() - start)
    return times


def layer_times(layer, task, repeats: int) -> list[float]:
    """Forward + backward of one layer on Cora's features (the first layer: 1433 -> 16)."""
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        layer(task.x, task.edge_index, task.edge_attr).sum().backward()
        times.append(time.perf_counter() - start)
    return times


def main() -> None:
    args = parse_args(__doc__, "fewer epochs (< 1 minute)")
    warnings.filterwarnings("ignore")
    space = load_space("cora_node")  # the data and split `make run` searches
    task = build_task(space.task, space.dataset.as_dict(), args.data_root, seed=0)
    torch.manual_seed(0)
    ours = SplineNet(task.num_features, task.num_classes)
    ref = reference_model(ours)
    ours.eval(), ref.eval()
    with torch.no_grad():
        a = ours(task.x, task.edge_index, task.edge_attr)
        b = ref(task.x, task.edge_index, task.edge_attr)
    rel_err = float((a - b).norm() / b.norm())

    ref_epochs, our_epochs = (2, 20) if args.quick else (5, 100)
    epoch_times(ours, task, 3)  # warm-up
    epoch_times(ref, task, 1)
    ref_t = statistics.median(epoch_times(ref, task, ref_epochs))
    our_t = statistics.median(epoch_times(ours, task, our_epochs))
    speedup = ref_t / our_t
    layer_times(ours.conv1, task, 3)
    ref_layer = statistics.median(layer_times(ref.conv1, task, ref_epochs))
    our_layer = statistics.median(layer_times(ours.conv1, task, our_epochs))
    body = (
        "| layer | median training epoch | epochs timed |\n|---|---|---|\n"
        f"| PyG SplineConv (torch-spline-conv 1.2.2) | {ref_t * 1e3:.1f} ms | {ref_epochs} |\n"
        f"| trainables.spline_conv (pure PyTorch) | {our_t * 1e3:.2f} ms | {our_epochs} |\n\n"
        f"First layer alone (1433 -> 16, forward + backward): reference "
        f"{ref_layer * 1e3:.0f} ms, ours {our_layer * 1e3:.2f} ms "
        f"({ref_layer / our_layer:.0f}x).\n\n"
        f"Speed-up: **{speedup:.0f}x** (target >= 100x). Output relative error: {rel_err:.1e}. "
        f"Mode: {'quick' if args.quick else 'full'}."
    )
    print(body)
    if not args.no_write:
        append_result("SplineConv: Cora training epoch (bench/spline_conv.py)", body)
    print(f"speedup_x={speedup:.1f}")


if __name__ == "__main__":
    main()
