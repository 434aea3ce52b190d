"""The user's code by import path: one rule for model classes and dataset functions."""

from __future__ import annotations

import importlib
import os
import sys
from types import ModuleType


def import_module(module: str) -> ModuleType:
    """``module`` from the Python path, else from the current folder (as ``python -m``
    finds it); the current folder goes last, so it shadows nothing installed."""
    try:
        return importlib.import_module(module)
    except ModuleNotFoundError as err:
        cwd = os.getcwd()
        if cwd in sys.path or not (err.name and module.startswith(err.name)):
            raise
        sys.path.append(cwd)
        return importlib.import_module(module)
