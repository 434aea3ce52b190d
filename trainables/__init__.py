"""The compress-and-fine-tune cycle and everything it uses (no Ray, no MLflow).

``load_compressed(path)`` rebuilds a model written by a trial (or exported with
``gnn-search export``) and returns ``(model, meta)``, ready for inference.
"""

from trainables.cycle import load_compressed

__all__ = ["load_compressed"]
