"""Shared helpers for benchmarks: machine description and writing to bench/RESULTS.md."""

from __future__ import annotations

import argparse
import os
import platform
import time
from pathlib import Path

import torch

RESULTS = Path(__file__).with_name("RESULTS.md")


def machine() -> str:
    cpu = platform.processor() or platform.machine()
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    return (f"{cpu}, {os.cpu_count()} cores, torch {torch.__version__}, "
            f"{torch.get_num_threads()} torch threads")


def append_result(title: str, body: str) -> None:
    """Append a dated section to bench/RESULTS.md."""
    stamp = time.strftime("%Y-%m-%d")
    with RESULTS.open("a") as f:
        f.write(f"\n## {title} ({stamp})\n\nMachine: {machine()}\n\n{body.strip()}\n")


def append_lines(*lines: str) -> None:
    """Append lines to the last section of bench/RESULTS.md (a table row as it is measured,
    so an interrupted run keeps what it finished)."""
    with RESULTS.open("a") as f:
        f.write("".join(f"{line}\n" for line in lines))


def parse_args(doc: str, quick_help: str, extra=None) -> argparse.Namespace:
    """The options every benchmark takes: --quick, --data-root, --cache-dir, --no-write;
    ``extra(parser)`` adds a benchmark's own."""
    parser = argparse.ArgumentParser(description=doc.splitlines()[0])
    if extra is not None:
        extra(parser)
    parser.add_argument("--quick", action="store_true", help=quick_help)
    parser.add_argument("--data-root", help="dataset root (default: $GNN_SEARCH_DATA)")
    parser.add_argument("--cache-dir", help="baseline cache (default: $GNN_SEARCH_CACHE)")
    parser.add_argument("--no-write", action="store_true", help="do not touch RESULTS.md")
    return parser.parse_args()


def cora(args: argparse.Namespace):
    """The bundled ``cora_node`` space, its task (data + split) and its cached FP32 baseline:
    what ``make run`` searches, so benchmark figures describe the service's default."""
    return bundled(args, "cora_node")


def bundled(args: argparse.Namespace, name: str):
    """A bundled space file, its task (data + split) and its cached FP32 baseline."""
    from search.run import SearchSettings, prepare
    from spaces import load_space

    space = load_space(name)
    task, baseline, _ = prepare(space, SearchSettings(
        name="bench", data_root=args.data_root, cache_dir=args.cache_dir, progress=False))
    return space, task, baseline
