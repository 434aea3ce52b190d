"""Ray clusters and the MLflow tracking server: check, connect, serve.

A search's driver (Tune's loop and all MLflow logging) runs where ``gnn-search run`` runs;
trials run on any node and talk only to Ray. Code reaches the nodes through Ray's runtime
environment (``working_dir`` = this checkout, or the installed packages as ``py_modules``),
so nodes need the dependencies but not this project. Ray's token authentication stays on:
every node and driver needs the cluster's token (README, "Security").
"""

from __future__ import annotations

import importlib.util
import ipaddress
import json
import logging
import os
import socket
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any, NamedTuple
from urllib.parse import urlsplit

from analysis.tracking_store import check_tracking_uri
from search import limits
from search.env import QUIET_ENV
from trainables.errors import first_line
from trainables.paths import check_folder, check_length

ADDRESS_HELP = "auto, HOST:PORT (a cluster's GCS) or ray://HOST:PORT (Ray Client)"
PACKAGES = ("search", "spaces", "trainables", "analysis")
# Never shipped to the cluster: environments, caches, local results (gitignore syntax).
WORKING_DIR_EXCLUDES = [
    ".venv/", ".git/", "**/__pycache__/", "*.egg-info/", ".pytest_cache/", ".ruff_cache/",
    "mlflow.db", "mlartifacts/", "mlruns/", "ray_results/", "gnn-search-trial/", "bench/out/",
    "*.gnnz", "*.pt", "emissions.csv",
]
# Process settings that are not worth shipping: this one only matters where Ray starts.
_DRIVER_ONLY_ENV = {"RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER"}


def project_root() -> Path | None:
    """This checkout (the folder holding ``pyproject.toml`` and the packages), or None when
    the project is installed as a wheel."""
    root = Path(__file__).resolve().parents[1]
    if (root / "pyproject.toml").is_file() and all((root / p).is_dir() for p in PACKAGES):
        return root
    return None


def _job_runtime_env() -> dict[str, Any]:
    """The runtime environment of the Ray job this driver runs in (``ray job submit``)."""
    text = os.environ.get("RAY_JOB_CONFIG_JSON_ENV_VAR")
    if not text:
        return {}
    return json.loads(text).get("runtime_env") or {}


def runtime_env(cluster: bool, user_code: Sequence[str] = ()) -> dict[str, Any]:
    """What trials need besides the installed dependencies: quiet settings, on a cluster
    the project's code, and the user's code (``user_code``: folders or files, see
    :func:`user_code`) as ``py_modules``. Fields a submitted job already sets are left to
    the job (Ray refuses to merge a field set twice)."""
    job = _job_runtime_env()
    job_vars = job.get("env_vars") or {}
    env: dict[str, Any] = {}
    env_vars = {k: os.environ[k] for k in QUIET_ENV
                if k in os.environ and k not in _DRIVER_ONLY_ENV and k not in job_vars}
    if env_vars:
        env["env_vars"] = env_vars
    if cluster and not {"working_dir", "py_modules"} & set(job):
        root = project_root()
        if root is not None:
            env["working_dir"] = str(root)
            if "excludes" not in job:
                env["excludes"] = WORKING_DIR_EXCLUDES
        else:
            import importlib

            env["py_modules"] = [importlib.import_module(p) for p in PACKAGES]
    if user_code and "py_modules" not in job:
        env["py_modules"] = [*env.get("py_modules", []), *user_code]
    return env


def check_py_module(path: str) -> str:
    """A ``--py-modules`` PATH: an existing package folder, module file or wheel; returns it
    absolute."""
    if not path:
        raise ValueError("--py-modules '' is empty; allowed: a package folder, a module file "
                         "(.py) or a wheel (.whl)")
    check_length(path, "--py-modules")
    p = Path(path).expanduser()
    try:
        if p.is_dir() or (p.is_file() and p.suffix in (".py", ".whl")):
            return str(p.resolve())
        what = "a file that is not .py or .whl" if p.is_file() else "not found"
    except OSError as err:
        what = err.strerror or type(err).__name__
    raise ValueError(f"--py-modules {path}: {what}; allowed: a package folder, a module file "
                     "(.py) or a wheel (.whl) for Ray to ship to every node")


def _source_of(module: str) -> Path | None:
    """The folder of top-level package ``module`` (or its file), where Python finds it."""
    try:
        spec = importlib.util.find_spec(module)
    except (ImportError, ValueError):
        return None
    if spec is None:
        return None
    if spec.submodule_search_locations:
        return Path(next(iter(spec.submodule_search_locations)))
    return Path(spec.origin) if spec.origin and spec.origin.endswith(".py") else None


def user_code(import_paths: Sequence[str], given: Sequence[str], cluster: bool) -> list[str]:
    """The user's code trials import, to ship as ``py_modules``: the ``--py-modules`` paths
    (``given``), and the top-level package of each import path the space names
    (``model.class``, ``dataset.function``, a plugin's class) unless it is installed in
    site-packages (a dependency every node installs, as torch_geometric) or, on a cluster,
    inside the project's working_dir (shipped already). A source folder (``pip install
    -e``, the current folder, PYTHONPATH) is shipped."""
    shipped = [str(Path(p).resolve()) for p in given]
    root = project_root() if cluster else None
    for path in import_paths:
        top = path.partition(":")[0].split(".")[0]
        if top in PACKAGES or top in sys.stdlib_module_names:
            continue
        source = _source_of(top)
        if source is None:
            continue
        installed = any(part in ("site-packages", "dist-packages") for part in source.parts)
        if installed or (root is not None and root in source.parents):
            continue
        if not any(source == Path(s) or Path(s) in source.parents for s in shipped):
            shipped.append(str(source))
    return shipped


def check_address(address: str) -> None:
    """``--address`` is well formed and answers within a few seconds; ``auto`` must find a
    running cluster (RAY_ADDRESS, the last ``ray start`` here, or a Ray running here)."""
    if address == "auto":
        _reachable(find_auto_address(), "auto")
        return
    if address.startswith("ray://"):
        from ray._private.utils import get_ray_client_dependency_error

        if get_ray_client_dependency_error() is not None:
            raise ValueError(f"--address {address} needs Ray Client: pip install "
                             "'ray[client]==2.60.0', or run on the head node with --address auto")
    _reachable(address, address)


def find_auto_address() -> str:
    """The cluster ``--address auto`` joins, found as Ray finds it; a one-line error naming
    the option and what to do when there is none."""
    from ray._private.services import canonicalize_bootstrap_address_or_die

    try:
        return canonicalize_bootstrap_address_or_die("auto")
    except (ConnectionError, ValueError) as err:
        reason = first_line(err)
        if "multiple" not in reason:  # Ray's own words name its CLI's --address flag
            reason = "none runs here and RAY_ADDRESS is not set"
        raise ConnectionError(
            f"--address auto found no Ray cluster to join ({reason}); start one with `ray "
            "start --head` (or set RAY_ADDRESS=HOST:PORT), or leave out --address to run "
            "here") from None


def _reachable(address: str, given: str) -> None:
    """``address`` (``HOST:PORT`` or ``ray://HOST:PORT``) is well formed and its port
    answers; ``given`` is what the user wrote, for the message."""
    target = address.removeprefix("ray://")
    host, sep, port = target.rpartition(":")
    if ("://" in target or not sep or not host or not port.isdigit()
            or not 0 < int(port) < 65536 or host.startswith("[") != host.endswith("]")):
        raise ValueError(f"--address {given!r} is not a Ray address; allowed: {ADDRESS_HELP}")
    try:
        with socket.create_connection((host.strip("[]"), int(port)), timeout=3):
            pass
    except OSError as err:
        reason = err.strerror or type(err).__name__
        found = "" if given == address else f" (found by --address {given})"
        raise ConnectionError(
            f"cannot reach the Ray cluster at {address}{found} ({reason}); start it (`ray up "
            "ray_cluster.yaml` or `ray start --head`), or leave out --address to run here"
        ) from None


def _known_excludes(record: logging.LogRecord) -> bool:
    """Drop Ray's warning that it now leaves out ``.git``/``.venv`` when packaging the
    working_dir: :data:`WORKING_DIR_EXCLUDES` always left them out."""
    return not str(record.msg).startswith("Directory %r is now ignored by default")


class Joined(NamedTuple):
    """The Ray cluster a search runs on: its GCS address, its alive nodes and CPUs."""

    address: str
    nodes: int
    cpus: int


def _refused_token(address: str | None) -> ConnectionError:
    return ConnectionError(
        f"the Ray cluster at {address} refused this driver's token; use the cluster's "
        "token (~/.ray/auth_token, RAY_AUTH_TOKEN_PATH or RAY_AUTH_TOKEN; README, "
        "'Security')")


def node_gpus(address: str) -> list[float]:
    """The GPUs of each alive node of the cluster at ``address``, read by a short session
    that ships no code (so a refusal touches nothing)."""
    import ray
    from ray.exceptions import AuthenticationError

    try:
        ray.init(address=address, logging_level="WARNING", log_to_driver=False)
    except AuthenticationError:
        raise _refused_token(address) from None
    except (ConnectionError, RuntimeError, TimeoutError) as err:
        reason = first_line(err)
        raise ConnectionError(f"cannot connect to the Ray cluster at {address}: {reason}") from None
    try:
        return [float(node.get("Resources", {}).get("GPU", 0.0)) for node in ray.nodes()
                if node.get("Alive")]
    finally:
        ray.shutdown()


def check_gpus(gpus_per_trial: float, node_gpus: list[float], where: str) -> None:
    """``--gpus-per-trial``: one node (``where``: "the Ray cluster at HOST:PORT", "this
    machine") must have that many GPUs, or no trial could ever start."""
    most = max(node_gpus, default=0.0)
    if most <= 0:
        raise ValueError(f"--gpus-per-trial {gpus_per_trial:g}: {where} has no GPUs; leave "
                         "out --gpus-per-trial (trials run on CPUs), or run where GPU nodes "
                         "are (ray_cluster.yaml: gpu_worker; README, 'GPUs')")
    if gpus_per_trial > most:
        raise ValueError(f"--gpus-per-trial {gpus_per_trial:g} exceeds the {most:g} GPUs of "
                         f"the largest node of {where}; allowed: (0, {most:g}]")


def connect(address: str | None, object_store_bytes: int,
            user_modules: Sequence[str] = ()) -> Joined:
    """Join the cluster at ``address`` (None: start Ray on this machine, on 127.0.0.1
    only); ``user_modules``: the user's code for every worker (:func:`user_code`)."""
    import ray
    from ray.exceptions import AuthenticationError

    env = runtime_env(cluster=address is not None, user_code=user_modules)
    logging.getLogger("ray._private.worker").addFilter(_known_excludes)
    try:
        if address:
            ray.init(address=address, runtime_env=env, logging_level="WARNING")
        else:
            ray.init(_node_ip_address="127.0.0.1", object_store_memory=object_store_bytes,
                     include_dashboard=False, runtime_env=env, logging_level="WARNING")
    except AuthenticationError:
        raise _refused_token(address) from None
    except (ConnectionError, RuntimeError, TimeoutError) as err:
        reason = first_line(err)
        raise ConnectionError(f"cannot connect to the Ray cluster at {address}: {reason}") from None
    nodes = sum(1 for node in ray.nodes() if node.get("Alive"))
    return Joined(ray.get_runtime_context().gcs_address, nodes,
                  int(ray.cluster_resources().get("CPU", 0)))


def is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


# Where an MLflow server keeps artifacts besides a folder (its artifact repositories).
ARTIFACT_SCHEMES = ("file", "s3", "gs", "wasbs", "abfss", "hdfs", "ftp", "sftp")


def check_artifacts_destination(destination: str) -> None:
    """``--artifacts-destination``: a folder that exists or can be created, and can be
    written in, or the URI of a store MLflow keeps artifacts in."""
    scheme = urlsplit(destination).scheme if "://" in destination else ""
    if scheme and scheme not in ARTIFACT_SCHEMES:
        raise ValueError(f"--artifacts-destination {destination!r}: scheme {scheme!r} is not "
                         "an artifact store MLflow serves; allowed: a folder, or "
                         + ", ".join(f"{s}://" for s in ARTIFACT_SCHEMES))
    if scheme in ("", "file"):
        folder = urlsplit(destination).path if scheme else destination
        check_folder(Path(folder).expanduser().resolve(), "--artifacts-destination",
                     write=True)


def mlflow_server_command(backend_store_uri: str, artifacts_destination: str, host: str,
                          port: int, workers: int, allowed_hosts: str | None) -> list[str]:
    """A lean tracking server: SQLite (or any SQL) backend, artifacts served through it (so
    a driver on any node uploads models over HTTP), one worker."""
    command = [sys.executable, "-m", "mlflow", "server",
               "--backend-store-uri", backend_store_uri,
               "--serve-artifacts", "--artifacts-destination", artifacts_destination,
               "--host", host, "--port", str(port), "--workers", str(workers)]
    if allowed_hosts:
        command += ["--allowed-hosts", allowed_hosts]
    return command


def serve_mlflow(backend_store_uri: str | None, artifacts_destination: str | None, host: str,
                 port: int, workers: int, allowed_hosts: str | None) -> None:
    """Check the settings, then replace this process with the MLflow server."""
    limits.PORT.check(port)
    limits.WORKERS.check(workers)
    if allowed_hosts is not None and not all(h.strip() for h in allowed_hosts.split(",")):
        raise ValueError(f"--allowed-hosts {allowed_hosts!r} has an empty entry; give hosts "
                         "separated by commas, e.g. mlflow.lan:5000,10.0.0.5:5000")
    backend = backend_store_uri or f"sqlite:///{(Path.cwd() / 'mlflow.db').resolve()}"
    check_tracking_uri(backend, "--backend-store-uri")
    artifacts = artifacts_destination or str((Path.cwd() / "mlartifacts").resolve())
    check_artifacts_destination(artifacts)
    try:
        with socket.socket(socket.AF_INET6 if ":" in host else socket.AF_INET) as probe:
            probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)  # as the server does
            probe.bind((host, port))
    except OSError as err:
        raise ValueError(f"cannot listen on {host}:{port} ({err.strerror}); pick another "
                         "--port (or --host)") from None
    if not is_loopback(host):
        print(f"warning: MLflow listens on {host}:{port}: anyone who can reach it can read and "
              "write every run (the server has no authentication); prefer the default "
              "127.0.0.1 and an SSH tunnel", file=sys.stderr)
    print(f"MLflow tracking server on http://{host}:{port} (runs: {backend}; artifacts: "
          f"{artifacts}). Searches log to it with --tracking-uri "
          f"http://{'127.0.0.1' if is_loopback(host) else host}:{port}", flush=True)
    command = mlflow_server_command(backend, artifacts, host, port, workers, allowed_hosts)
    env = {**os.environ, "MLFLOW_SERVER_ENABLE_JOB_EXECUTION": "false",
           "MLFLOW_DISABLE_TELEMETRY": "true"}
    os.execve(command[0], command, env)  # signals (Ctrl-C, SIGTERM) reach the server itself
