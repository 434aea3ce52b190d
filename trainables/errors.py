"""How an error becomes the one line a user reads (every package prints errors through it)."""

from __future__ import annotations

import math
from typing import Any


def first_line(err: BaseException, with_type: bool = False, limit: int | None = None) -> str:
    """The first non-empty line of ``err``'s message (its type's name when it has none);
    ``with_type`` puts ``TypeName: `` in front; ``limit`` cuts the line to that length."""
    text = str(err.args[0]) if isinstance(err, KeyError) and err.args else str(err)
    lines = [line for line in text.strip().splitlines() if line.strip()]
    line = lines[0].strip() if lines else ("" if with_type else type(err).__name__)
    if with_type:
        line = f"{type(err).__name__}: {line}".rstrip(": ").rstrip()
    return line[:limit] if limit is not None else line


def last_line(error: BaseException | str | None, default: str = "unknown error",
              limit: int = 4000) -> str:
    """The last non-empty line of an error or a traceback's text (where Python puts the
    exception's message); ``default`` when there is none."""
    text = str(error or "").strip()
    lines = [line for line in text.splitlines() if line.strip()]
    return lines[-1][:limit] if lines else default


def shown(value: Any) -> str:
    """A value as a YAML file writes it, for messages about a space file or a setting:
    ``true``, ``null``, ``.nan``, ``[4, 8]``, ``{low: 0.3}``; text quoted (``'global'``).
    Python's spelling (``True``, ``None``, ``nan``) is not what the user wrote."""
    if isinstance(value, bool):
        return "true" if value else "false"
    if value is None:
        return "null"
    if isinstance(value, float) and not math.isfinite(value):
        return ".nan" if math.isnan(value) else (".inf" if value > 0 else "-.inf")
    if isinstance(value, (list, tuple)):
        return "[" + ", ".join(shown(v) for v in value) + "]"
    if isinstance(value, dict):
        return "{" + ", ".join(f"{k}: {shown(v)}" for k, v in value.items()) + "}"
    return repr(value)
