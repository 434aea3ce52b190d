"""How an error becomes the one line a user reads."""

from __future__ import annotations


def first_line(err: BaseException, with_type: bool = False, limit: int | None = None) -> str:
    """The first non-empty line of ``err``'s message (its type's name when it has none);
    ``with_type`` puts ``TypeName: `` in front; ``limit`` cuts the line to that length."""
    text = str(err.args[0]) if isinstance(err, KeyError) and err.args else str(err)
    lines = [line for line in text.strip().splitlines() if line.strip()]
    line = lines[0].strip() if lines else ("" if with_type else type(err).__name__)
    if with_type:
        line = f"{type(err).__name__}: {line}".rstrip(": ").rstrip()
    return line[:limit] if limit is not None else line
