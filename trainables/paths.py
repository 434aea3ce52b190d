"""Paths a user gives, checked before any work: one a filesystem cannot take (a name over
``NAME_MAX`` bytes), a file where a folder must be, a folder that cannot be written or
created. Each is a one-line ``ValueError`` naming the option and the path, never an
``OSError`` from deep inside a library. Light at import (no torch): the analysis commands
use it too.
"""

from __future__ import annotations

import os
import uuid
from pathlib import Path

NAME_MAX = 255  # bytes in one name of a path (Linux, macOS)
PATH_MAX = 4096  # bytes in a whole path (Linux)


def check_length(path: str | os.PathLike, option: str) -> None:
    """Every name in ``path`` and the whole path are short enough for a filesystem."""
    text = os.fspath(path)
    for name in Path(text).parts:
        size = len(os.fsencode(name))
        if size > NAME_MAX:
            raise ValueError(f"{option} {text}: the name {name[:20]}... is {size} bytes long; "
                             f"allowed: at most {NAME_MAX} bytes per name")
    if len(os.fsencode(text)) > PATH_MAX:
        raise ValueError(f"{option} {text[:40]}... is {len(os.fsencode(text))} bytes long; "
                         f"allowed: at most {PATH_MAX}")


def nearest_existing(path: Path) -> Path:
    """``path`` or the closest folder above it that exists."""
    while not path.exists() and path != path.parent:
        path = path.parent
    return path


def probe_writable(folder: Path, option: str, path: str | os.PathLike) -> None:
    """A file can be created (and is removed again) in the existing ``folder``."""
    probe = folder / f".gnn-search-probe-{uuid.uuid4().hex[:8]}"
    try:
        probe.write_bytes(b"")
        probe.unlink()
    except OSError as err:
        raise ValueError(f"{option} {path} is not writable ({err.strerror or err} in "
                         f"{folder}); choose another path") from None


def check_folder(path: Path, option: str, write: bool = False) -> Path:
    """``path`` can be a folder: a name a filesystem takes, no file in its place or above
    it, and, when it is missing, a folder above it in which it can be created; ``write``:
    it (or, when missing, that folder above) can be written in too."""
    check_length(path, option)
    blocking = next((p for p in (path, *path.parents) if p.exists() and not p.is_dir()), None)
    if blocking is not None:
        raise ValueError(f"{option} {path}: {blocking} is a file, not a folder; give a folder")
    if write or not path.exists():
        probe_writable(nearest_existing(path), option, path)
    return path
