"""Where Tune keeps a search: a local or shared folder, or an object-store URI.

Tune writes each search under ``<storage>/<name>``: its experiment state, the Optuna study,
and one folder per trial with the trial's results and its model (the final checkpoint). A
search also keeps ``gnn_search.json`` (its settings, for ``--resume`` and ``sync``) and
``space.yaml`` (the space file as it was) there. On a multi-node cluster the storage must
be reachable from every node: a shared filesystem (NFS) path or a URI such as
``s3://bucket/prefix`` (pyarrow filesystems, as Tune uses them).
"""

from __future__ import annotations

import os
import re
import uuid
from pathlib import Path

import pyarrow.fs

from trainables.errors import first_line
from trainables.paths import check_length

SEARCH_FILE = "gnn_search.json"  # the search's settings, read by --resume and sync
SPACE_FILE = "space.yaml"  # the space file the search started with
URI_SCHEMES = "file://, s3://, gs://, hdfs://, abfs://"
NAME_PATTERN = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]*")  # a search's name: one folder's
NAME_MAX = 100  # characters: a path component holds 255 bytes, and Tune appends to the name


def check_name(name: str) -> None:
    """The name of an existing search (``--resume``, ``sync``) before any path is made of it."""
    if not NAME_PATTERN.fullmatch(name or ""):
        raise ValueError(f"search name {name!r} is not allowed; use letters, digits, '.', '_' "
                         "and '-' (the --name it ran with)")
    if len(name) > NAME_MAX:
        raise ValueError(f"search name {name[:20]}... is {len(name)} characters long; allowed: "
                         f"at most {NAME_MAX} (the --name it ran with)")


def is_uri(storage: str | os.PathLike) -> bool:
    return "://" in str(storage)


def normalize_storage(storage: str | os.PathLike) -> str:
    """An absolute folder or a URI that pyarrow can open; a one-line error otherwise."""
    text = str(storage)
    if not text.strip():
        raise ValueError("--storage is empty; give a folder or a URI such as s3://bucket/prefix")
    if not is_uri(text):
        check_length(text, "--storage")
        return str(Path(text).expanduser().resolve())
    try:
        pyarrow.fs.FileSystem.from_uri(text)
    except (pyarrow.ArrowInvalid, pyarrow.ArrowNotImplementedError, ValueError) as err:
        reason = first_line(err)
        raise ValueError(f"--storage {text!r} is not a storage location Tune can use ({reason}); "
                         f"allowed: a folder or a URI ({URI_SCHEMES})") from None
    return text.rstrip("/")


def filesystem(storage: str) -> tuple[pyarrow.fs.FileSystem, str]:
    """The pyarrow filesystem and the path inside it for a normalized storage location."""
    if is_uri(storage):
        return pyarrow.fs.FileSystem.from_uri(storage)
    return pyarrow.fs.LocalFileSystem(), storage


def experiment_path(storage: str, name: str) -> str:
    """``<storage>/<name>`` as Tune names it (a URI stays a URI)."""
    return f"{storage.rstrip('/')}/{name}"


def check_writable(storage: str) -> None:
    """Create the storage folder if needed and write and delete a probe file in it."""
    fs, path = filesystem(storage)
    probe = f"{path.rstrip('/')}/.gnn-search-probe-{uuid.uuid4().hex[:8]}"
    try:
        fs.create_dir(path, recursive=True)
        with fs.open_output_stream(probe) as out:
            out.write(b"ok")
        fs.delete_file(probe)
    except (OSError, pyarrow.ArrowException) as err:
        reason = getattr(err, "strerror", None) or first_line(err)
        raise ValueError(f"--storage {storage} is not writable ({reason}); give a writable "
                         f"folder or a URI ({URI_SCHEMES})") from None


def exists(storage: str, *parts: str) -> bool:
    fs, path = filesystem(storage)
    target = "/".join([path.rstrip("/"), *parts])
    return fs.get_file_info(target).type != pyarrow.fs.FileType.NotFound


def has_trials(storage: str, name: str) -> bool:
    """Whether search ``name`` started a trial (Tune made its folder, ``trial_<id>``)."""
    fs, path = filesystem(storage)
    selector = pyarrow.fs.FileSelector(experiment_path(path, name), allow_not_found=True)
    return any(info.base_name.startswith("trial_") for info in fs.get_file_info(selector))


def remove(storage: str, name: str) -> None:
    """Delete ``<storage>/<name>`` and everything in it (a search that never started)."""
    fs, path = filesystem(storage)
    if exists(storage, name):
        fs.delete_dir(experiment_path(path, name))


def write_text(storage: str, name: str, filename: str, text: str) -> None:
    """Write ``<storage>/<name>/<filename>`` (the experiment folder is created if needed)."""
    fs, path = filesystem(storage)
    folder = f"{path.rstrip('/')}/{name}"
    fs.create_dir(folder, recursive=True)
    with fs.open_output_stream(f"{folder}/{filename}") as out:
        out.write(text.encode())


def read_text(storage: str, name: str, filename: str) -> str:
    fs, path = filesystem(storage)
    with fs.open_input_stream(f"{path.rstrip('/')}/{name}/{filename}") as f:
        return f.readall().decode()


def read_lines(fs: pyarrow.fs.FileSystem, path: str) -> list[str]:
    """Lines of a text file in a pyarrow filesystem; [] when it does not exist."""
    if fs.get_file_info(path).type == pyarrow.fs.FileType.NotFound:
        return []
    with fs.open_input_stream(path) as f:
        return f.readall().decode(errors="replace").splitlines()
