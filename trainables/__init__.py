"""The compress-and-fine-tune cycle and everything it uses (no Ray, no MLflow).

``load_compressed(path)`` rebuilds a model written by a trial (or exported with
``gnn-search export``) and returns ``(model, meta)``, ready for inference. It is imported on
first use, so light modules (``trainables.metrics``) load without torch.
"""

from typing import Any

__all__ = ["load_compressed"]


def __getattr__(name: str) -> Any:
    if name == "load_compressed":
        from trainables.cycle import load_compressed

        return load_compressed
    raise AttributeError(f"module 'trainables' has no attribute {name!r}")
