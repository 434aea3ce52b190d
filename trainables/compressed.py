"""A model rebuilt from its compressed file: the eager form (the modules it was trained as,
weights dequantized), which evaluation and the reference latency use."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from torch import nn

from trainables.errors import first_line
from trainables.model_file import StorageError, load_state
from trainables.models import build_model, model_class, model_label
from trainables.quantization import attach_activation_quant
from trainables.structured import replay_removal


def load_compressed(path: str | Path) -> tuple[nn.Module, dict[str, Any]]:
    """Rebuild a model from a compressed file written by :func:`run_cycle`."""
    state, meta = load_state(path)
    spec = meta.get("model")
    if isinstance(spec, dict) and ("class" in spec or "name" in spec):
        try:  # a user's class is imported by its recorded path; nothing runs from the file
            model_class(spec)
        except ValueError as err:
            raise StorageError(f"{path}: its model {model_label(spec)!r} cannot be loaded "
                               f"({err})") from None
    try:
        model = build_model(meta["model"], meta["num_features"], meta["num_classes"])
        if meta.get("structured"):  # removed channels, replayed on the original model
            replay_removal(model, meta["structured"])
        if meta.get("activation_quant"):
            attach_activation_quant(model, meta["activation_quant"], frozen=True)
        model.load_state_dict(state)
    except (KeyError, TypeError, ValueError, RuntimeError, AttributeError) as err:  # lies
        raise StorageError(f"{path}: its tensors do not fit the model its header names "
                           f"({first_line(err, with_type=True, limit=300)})") from None
    return model.eval(), meta
