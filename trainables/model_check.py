"""A model checked on a task's real data before a search starts: built with the task's
feature and class counts, one forward (eval mode, no gradients) on the inputs the task
passes, its output's shape compared with what the task reads.

Built-in models are known to fit the tasks their task specs list; a user's class (or a
plugin's) is checked here, where the data is loaded but nothing else has started. Every
failure is a one-line ValueError naming the class, what it got and what was expected.
"""

from __future__ import annotations

import inspect
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import torch
from torch import Tensor

from trainables.errors import first_line, shown
from trainables.models import ModelSpec, build_model, check_kwargs, model_label


@dataclass(frozen=True)
class Forward:
    """What a task calls a model with and reads from it: ``args`` name the positional
    arguments of ``forward``; ``expected(inputs, num_classes)`` is the output shape (None
    where any size is fine) and ``what`` says what the output is."""

    args: tuple[str, ...]
    expected: Callable[[tuple[Tensor, ...], int | None], tuple[int | None, ...]]
    what: str


FORWARD: dict[str, Forward] = {  # one entry per task of trainables.tasks.TASKS
    "node_classification": Forward(
        ("x", "edge_index", "edge_attr"), lambda inputs, c: (inputs[0].size(0), c),
        "[num_nodes, num_classes] logits"),
    "link_prediction": Forward(
        ("x", "edge_index"), lambda inputs, c: (inputs[0].size(0), None),
        "[num_nodes, d] node embeddings"),
    "graph_classification": Forward(
        ("x", "edge_index", "batch"), lambda inputs, c: (int(inputs[2].max()) + 1, c),
        "[num_graphs, num_classes] logits"),
}


def _shape(shape: tuple[int | None, ...]) -> str:
    return "[" + ", ".join("d" if n is None else str(n) for n in shape) + "]"


def _passes(forward: Forward, inputs: tuple[Tensor, ...]) -> str:
    return "forward(" + ", ".join(f"{name} {_shape(tuple(t.shape))}"
                                  for name, t in zip(forward.args, inputs, strict=True)) + ")"


def _plain(signature: inspect.Signature) -> str:
    """``(x, edge_index, edge_attr=None)``: names and defaults, without annotations."""
    empty = inspect.Parameter.empty
    return str(signature.replace(
        parameters=[p.replace(annotation=empty) for p in signature.parameters.values()],
        return_annotation=empty))


def _build(spec: ModelSpec, task) -> torch.nn.Module:
    """The model at the task's sizes; a constructor that refuses is named with the argument."""
    label, kwargs = model_label(spec), dict(spec.get("kwargs", {}))
    check_kwargs(spec, kwargs)
    sizes = f"num_features={task.num_features}, num_classes={shown(task.num_classes)}"
    try:
        return build_model(spec, task.num_features, task.num_classes)
    except Exception as err:
        culprit = _culprit(spec, task, kwargs)
        raise ValueError(f"model.kwargs: model {label!r} cannot be built with {sizes}"
                         f"{', ' + culprit if culprit else ''} ({first_line(err, with_type=True)}"
                         "); give it arguments its constructor accepts") from None


def _culprit(spec: ModelSpec, task, kwargs: dict[str, Any]) -> str:
    """The kwarg a constructor refuses: the first that fails alone, else all of them."""
    for key, value in kwargs.items():
        try:
            build_model({**spec, "kwargs": {key: value}}, task.num_features, task.num_classes)
        except Exception:
            return f"{key}={shown(value)}"
    return ", ".join(f"{k}={shown(v)}" for k, v in kwargs.items())


def check_model_on_task(spec: ModelSpec, task_name: str, task) -> None:
    """Build ``spec`` for ``task`` (a built task: its ``num_features``, ``num_classes`` and
    ``example_inputs()``) and run one forward; a ValueError in one line where it does not
    fit. The global random state is left as it was (the baseline's seed decides)."""
    forward = FORWARD[task_name]
    label = model_label(spec)
    inputs = tuple(task.example_inputs())
    passes = _passes(forward, inputs)
    with torch.random.fork_rng(devices=[]):
        model = _build(spec, task)
        try:
            signature = inspect.signature(model.forward)
        except (TypeError, ValueError):
            signature = None
        if signature is not None:
            try:
                signature.bind(*inputs)
            except TypeError:
                raise ValueError(f"model {label!r}: forward{_plain(signature)} does not take "
                                 f"what task {task_name!r} passes: {passes}") from None
        model.eval()
        try:
            with torch.no_grad():
                out = model(*inputs)
        except Exception as err:
            raise ValueError(f"model {label!r}: forward failed on task {task_name!r}'s data "
                             f"({first_line(err, with_type=True, limit=300)}); the task passes "
                             f"{passes}") from None
    expected = forward.expected(inputs, task.num_classes)
    if not isinstance(out, Tensor):
        raise ValueError(f"model {label!r}: forward returned {type(out).__name__} on task "
                         f"{task_name!r}'s data; expected a Tensor of shape "
                         f"{_shape(expected)} ({forward.what})")
    got = tuple(out.shape)
    if len(got) != len(expected) or any(e is not None and g != e
                                        for g, e in zip(got, expected, strict=False)):
        raise ValueError(f"model {label!r}: forward returned shape {_shape(got)} on task "
                         f"{task_name!r}'s data; expected {_shape(expected)} ({forward.what})")
