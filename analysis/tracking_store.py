"""Whether a tracking URI names a store MLflow can use here: checked before a search starts
and before an analysis command reads a run, so that a bad one is one line naming it and
what is allowed, never MLflow's or SQLAlchemy's traceback (or minutes of retries).

Light at import: SQLAlchemy is imported only to try a database server.
"""

from __future__ import annotations

import urllib.error
import urllib.request
from pathlib import Path
from urllib.parse import urlsplit

from trainables.errors import first_line
from trainables.paths import check_length, probe_writable

# SQLAlchemy databases MLflow keeps runs in (besides SQLite), with the driver's option that
# bounds the connection attempt in seconds.
DATABASE_SCHEMES = {"postgresql": "connect_timeout", "mysql": "connect_timeout",
                    "mssql": "timeout"}
TRACKING_URIS = ("sqlite:////abs/path/mlflow.db, http(s)://HOST:PORT, or a database "
                 "(postgresql://, mysql://, mssql://)")
SQLITE_MAGIC = b"SQLite format 3\x00"  # the first 16 bytes of every SQLite database file


def check_tracking_uri(uri: str, option: str = "--tracking-uri", reading: bool = False) -> None:
    """The tracking store is usable: a well-formed URI with a scheme MLflow stores runs in,
    no credentials in it, a server that answers ``/health``, an SQLite file that is an SQLite
    database (or, unless ``reading``, can be created), a database that answers; ``option``
    names it in errors."""
    try:
        parts = urlsplit(uri)
        parts.port  # noqa: B018 - a port that is no number or out of range raises here
    except ValueError as err:
        raise ValueError(f"{option} {uri!r} is not a URI ({first_line(err)}); allowed: "
                         f"{TRACKING_URIS}") from None
    if parts.username or parts.password:
        raise ValueError(f"{option} must not carry credentials (user:password@...); set "
                         "MLFLOW_TRACKING_USERNAME/MLFLOW_TRACKING_PASSWORD or "
                         "MLFLOW_TRACKING_TOKEN instead")
    if parts.scheme in ("http", "https"):
        if not parts.hostname:
            raise ValueError(f"{option} {uri!r} names no host; allowed: {TRACKING_URIS}")
        if not server_healthy(uri):
            raise ConnectionError(
                f"MLflow tracking server {uri} is unreachable (no answer from /health); "
                f"start one with `gnn-search mlflow-server` or pass another {option}")
    elif parts.scheme == "sqlite":
        _check_sqlite(uri, option, reading)
    elif parts.scheme.split("+")[0] in DATABASE_SCHEMES:
        _check_database(uri, option)
    else:
        raise ValueError(f"{option} {uri!r}: scheme {parts.scheme!r} is not a tracking "
                         f"store MLflow can use here; allowed: {TRACKING_URIS}")


def _check_sqlite(uri: str, option: str, reading: bool) -> None:
    """An SQLite file: one (``reading``: an existing one), not a folder, not a file of
    another kind, in a folder that exists and can be written in."""
    database = uri.removeprefix("sqlite:///")
    if database == ":memory:" and not reading:
        return
    if not database:
        raise ValueError(f"{option} {uri!r} names no file; allowed: "
                         "sqlite:////abs/path/mlflow.db, or http://HOST:PORT")
    path = Path(database)
    check_length(path, option)
    if path.is_dir():
        raise ValueError(f"{option} {uri}: {database} is a folder; allowed: "
                         "sqlite:////abs/path/mlflow.db (a file), or http://HOST:PORT")
    if reading and not path.is_file():
        raise ValueError(f"no MLflow database at {path} ({option} {uri}); pass the search's "
                         f"{option}")
    if path.is_file():
        with path.open("rb") as f:
            head = f.read(len(SQLITE_MAGIC))
        if head and head != SQLITE_MAGIC:
            raise ValueError(f"{option} {uri}: {path} is not an SQLite database; give the "
                             "search's mlflow.db, or the name of a new file")
        return
    if not path.parent.is_dir():
        raise ValueError(f"{option} {uri}: folder {path.parent} does not exist; allowed: "
                         "sqlite:////abs/path/mlflow.db in an existing folder, or "
                         "http://HOST:PORT")
    probe_writable(path.parent, option, uri)


def _check_database(uri: str, option: str) -> None:
    """A database tracking store answers within seconds (not after MLflow's minutes of
    retries), and its Python driver is installed."""
    import sqlalchemy

    timeout = {DATABASE_SCHEMES[urlsplit(uri).scheme.split("+")[0]]: 5}
    try:
        engine = sqlalchemy.create_engine(uri, connect_args=timeout)
        with engine.connect():
            pass
    except ModuleNotFoundError as err:
        raise ValueError(f"{option} {urlsplit(uri).scheme}://...: its database driver "
                         f"is not installed ({first_line(err)}); install it, or use "
                         f"{TRACKING_URIS}") from None
    except Exception as err:  # the driver's own connection errors: one line
        raise ConnectionError(f"{option} {urlsplit(uri).scheme}://...: the database "
                              f"does not answer ({first_line(err)}); start it, or use "
                              f"{TRACKING_URIS}") from None


def server_healthy(uri: str, timeout: float = 5.0) -> bool:
    """Whether an MLflow server answers ``GET /health`` with OK."""
    try:
        with urllib.request.urlopen(f"{uri.rstrip('/')}/health", timeout=timeout) as response:
            return response.read().decode().strip() == "OK"
    except (OSError, urllib.error.URLError, ValueError):
        return False
