"""``gnn-search export --format safetensors``: a trial's model as a safetensors file that plain
PyTorch Geometric + safetensors load, without this project.

Tensors keep the model's state-dict names (PyG's and torch's own), dense. Quantized weights
are either the float32 values they dequantize to (``float``, the default: the file goes
straight into ``load_state_dict``), or the stored integers (``int8``): int8 ``<name>`` and
float32 ``<name>.scale``, one scale per output channel along the ``axis`` the metadata
records; float weight = int8 value * scale (the scale shaped to size 1 on every other axis).
4-bit weights are int8 values in [-7, 7]. Activation quantizers (``act_quant.*``) are this
project's, not PyG layers: they are left out (the loaded model computes its activations in
float) and ``__metadata__`` carries their spec. Light at import: ``analysis.cli`` reads the
constants.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from torch import Tensor

    from trainables.quantization import QuantizedTensor

EXPORT_FORMATS = ("gnnz", "safetensors")
WEIGHTS = ("float", "int8")
# Models built from PyG and torch layers only. spline's SplineConv carries PyG's names and
# shapes, so it loads into torch_geometric.nn.SplineConv (which needs torch-spline-conv);
# hgpsl's pooling is this project's own layer.
PYG_MODELS = ("spline", "gcn", "ness", "gae", "gin", "graph_gcn")
ACT_QUANT_PREFIX = "act_quant."
SCALE_SUFFIX = ".scale"
DEQUANTIZE = ("float32 weight = <name>.to(float32) * <name>.scale.view(shape), shape = 1 on "
              "every axis but quantized[<name>].axis (-1 there); values are in "
              "[-(2^(bits-1)-1), 2^(bits-1)-1], 4-bit ones unpacked to one int8 each")
LEFT_OUT = ("activation quantizers (act_quant.*) are not PyG layers and are not in this file: "
            "a model loaded from it computes activations in float; activation_quant is their "
            "spec, as the trial ran them")


def check_exportable(model: dict[str, Any] | str) -> None:
    """Refuse, in one line, a built-in model not built from PyG and torch layers only. A
    user's class (``class``, or a plugin's name) is the user's own code: the file loads into
    it."""
    name = model if isinstance(model, str) else (None if "class" in model else model.get("name"))
    if name is None:
        return
    from trainables.models import MODELS

    if name in MODELS and name not in PYG_MODELS:
        raise ValueError(f"--format safetensors: model {name!r} is not built from PyG "
                         f"and torch layers only; allowed: {', '.join(PYG_MODELS)}")


def safetensors_tensors(state: dict[str, Tensor], quantized: dict[str, QuantizedTensor],
                        weights: str) -> dict[str, Tensor]:
    """The file's tensors: ``state`` without activation quantizers; with ``int8``, each
    quantized weight as its int8 values plus ``<name>.scale``."""
    import torch

    if weights not in WEIGHTS:
        raise ValueError(f"unknown weights {weights!r}; allowed: {', '.join(WEIGHTS)}")
    tensors = {}
    for name, tensor in state.items():
        if name.startswith(ACT_QUANT_PREFIX):
            continue
        if weights == "int8" and name in quantized:
            if name + SCALE_SUFFIX in state:
                raise ValueError(f"tensor {name + SCALE_SUFFIX!r} is in the model: it cannot "
                                 f"also hold the scales of {name!r}; use --weights float")
            tensors[name] = quantized[name].q.to(torch.int8).contiguous()
            tensors[name + SCALE_SUFFIX] = quantized[name].scale.to(torch.float32).contiguous()
        else:
            tensors[name] = tensor.detach().contiguous()
    return tensors


def safetensors_metadata(meta: dict[str, Any], quantized: dict[str, QuantizedTensor],
                         weights: str, left_out: list[str]) -> dict[str, str]:
    """``__metadata__`` (text only): the model to build, what is quantized and how, and what
    the file leaves out."""
    import torch_geometric

    from trainables.models import build_model, class_path, is_builtin, model_label

    spec = meta["model"]
    kwargs = spec.get("kwargs", {})
    architecture = build_model(spec, meta["num_features"], meta["num_classes"])
    where = ("gnn-search's trainables/models.py" if is_builtin(spec)
             else class_path(type(architecture)).partition(":")[0])
    if meta.get("structured"):  # channels removed from the model ``kwargs`` build
        from trainables.structured import replay_removal

        replay_removal(architecture, meta["structured"])
    return {
        "format": "pt",
        "producer": "gnn-search export --format safetensors",
        "model": model_label(spec),
        "kwargs": json.dumps(kwargs, sort_keys=True),
        "num_features": json.dumps(meta["num_features"]),
        "num_classes": json.dumps(meta["num_classes"]),
        "architecture": repr(architecture),
        "forward": f"{type(architecture).__name__}.forward in {where}",
        "torch_geometric": torch_geometric.__version__,
        "weights": weights,
        "quantized": json.dumps({n: {"bits": q.bits, "axis": q.axis}
                                 for n, q in quantized.items()}, sort_keys=True),
        "dequantize": DEQUANTIZE if weights == "int8" else
        "already done: quantized weights are the float32 values their integers dequantize to",
        "activation_quant": json.dumps(meta.get("activation_quant"), sort_keys=True),
        "structured_removed": json.dumps((meta.get("structured") or {}).get("removed", {})),
        "left_out": json.dumps(left_out),
        "left_out_note": LEFT_OUT,
        "config": json.dumps(meta.get("config", {}), sort_keys=True),
    }


def write_safetensors(model_file: str | Path, out: str | Path, weights: str = "float") -> Path:
    """Write the compressed ``model_file`` as safetensors to ``out``; a model that is not
    built from PyG and torch layers only is refused before anything is written."""
    from safetensors.torch import save_file

    from trainables.model_file import load_quantized, load_state

    state, meta = load_state(model_file)
    check_exportable(meta["model"])
    quantized = load_quantized(model_file)
    tensors = safetensors_tensors(state, quantized, weights)
    left_out = [name for name in state if name.startswith(ACT_QUANT_PREFIX)]
    save_file(tensors, str(out), metadata=safetensors_metadata(meta, quantized, weights,
                                                               left_out))
    return Path(out)
