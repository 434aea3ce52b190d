"""A real two-node Ray cluster on this machine, on 127.0.0.1 only, for tests.

``ray start --head`` and a second ``ray start --address`` with their own token, temp dir and
ports, so other Ray instances on the machine are never touched. Each node's processes carry
an environment mark; stopping or killing a node signals exactly those processes and their
children (never ``ray stop``, which would stop every Ray on the machine).

Ray 2.60 resolves ``--node-ip-address=127.0.0.1`` to the machine's external address for a
worker node unless ``RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER=0``, and with that setting it refuses
to start a worker node at all. The worker is therefore started by Ray's own ``ray start``
command with one function replaced: the one that rewrites a loopback address.
"""

from __future__ import annotations

import contextlib
import os
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path

import psutil

MARK = "GNN_SEARCH_TEST_NODE"
RAY = str(Path(sys.executable).with_name("ray"))
_WORKER_START = (
    "import sys\n"
    "import ray._private.services as services\n"
    "services.resolve_ip_for_localhost = lambda host: host  # keep 127.0.0.1\n"
    "from ray.scripts.scripts import main\n"
    "sys.argv = ['ray', *sys.argv[1:]]\n"
    "main()\n"
)
# Lost nodes are noticed in ~2 s instead of Ray's default ~30 s.
FAST_HEALTH_CHECKS = {"RAY_health_check_initial_delay_ms": "1000",
                      "RAY_health_check_period_ms": "500",
                      "RAY_health_check_timeout_ms": "1000",
                      "RAY_health_check_failure_threshold": "3"}


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _node_ports() -> list[str]:
    return [f"--node-manager-port={free_port()}", f"--object-manager-port={free_port()}",
            f"--metrics-export-port={free_port()}",
            f"--dashboard-agent-listen-port={free_port()}",
            f"--dashboard-agent-grpc-port={free_port()}",
            f"--runtime-env-agent-port={free_port()}"]


class LoopbackCluster:
    """Head and worker node, one CPU each (so concurrent trials land on both). With
    ``dashboard`` the head serves Ray's dashboard and job API on 127.0.0.1
    (``dashboard_url``: what ``ray job submit --address`` takes)."""

    def __init__(self, cpus_per_node: int = 1, dashboard: bool = False) -> None:
        self.cpus = cpus_per_node
        self.dashboard_port = free_port()
        self.dashboard = dashboard
        self.dashboard_url = f"http://127.0.0.1:{self.dashboard_port}"
        self.root = Path(tempfile.mkdtemp(prefix="gnnray-"))  # short: Ray's socket paths
        self.token_path = self.root / "auth_token"
        self.token_path.write_text(secrets.token_hex(32))
        self.port = free_port()
        self.address = f"127.0.0.1:{self.port}"
        self.mark = uuid.uuid4().hex[:12]
        self.env = {
            **os.environ,
            "RAY_AUTH_MODE": "token",  # token authentication stays on, with a test token
            "RAY_AUTH_TOKEN_PATH": str(self.token_path),
            "RAY_USAGE_STATS_ENABLED": "0",
            "RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER": "0",  # loopback addresses stay loopback
            **FAST_HEALTH_CHECKS,
        }

    def _start(self, command: list[str], role: str) -> None:
        env = {**self.env, MARK: f"{self.mark}-{role}"}
        if role == "worker":
            env.pop("RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER")  # else Ray refuses a worker node
        proc = subprocess.run(command, env=env, capture_output=True, text=True, timeout=180)
        if proc.returncode != 0:
            raise RuntimeError(f"ray start ({role}) failed:\n{proc.stdout[-3000:]}"
                               f"\n{proc.stderr[-3000:]}")

    def start_head(self) -> None:
        self._start([RAY, "start", "--head", "--node-ip-address=127.0.0.1",
                     f"--port={self.port}", f"--num-cpus={self.cpus}",
                     f"--include-dashboard={str(self.dashboard).lower()}",
                     "--dashboard-host=127.0.0.1", f"--dashboard-port={self.dashboard_port}",
                     "--object-store-memory=200000000", f"--temp-dir={self.root / 'ray'}",
                     "--disable-usage-stats", *_node_ports()], "head")

    def start_worker(self) -> None:
        self._start([sys.executable, "-c", _WORKER_START, "start", f"--address={self.address}",
                     "--node-ip-address=127.0.0.1", f"--num-cpus={self.cpus}",
                     "--object-store-memory=200000000", "--disable-usage-stats",
                     *_node_ports()], "worker")

    def processes(self, role: str | None = None) -> list[psutil.Process]:
        """This cluster's processes (one node's when ``role`` is given), children included."""
        wanted = {f"{self.mark}-{r}" for r in ([role] if role else ["head", "worker"])}
        found: dict[int, psutil.Process] = {}
        for proc in psutil.process_iter():
            try:
                if proc.environ().get(MARK) in wanted:
                    found[proc.pid] = proc
                    for child in proc.children(recursive=True):
                        found[child.pid] = child
            except (psutil.Error, OSError):
                continue
        return list(found.values())

    def node_id(self, role: str) -> str:
        """The node id Ray gave a node (its raylet's ``--node_id``)."""
        for proc in self.processes(role):
            try:
                if proc.name() == "raylet":
                    for arg in proc.cmdline():
                        if arg.startswith("--node_id="):
                            return arg.split("=", 1)[1]
            except psutil.Error:
                continue
        raise LookupError(f"no raylet for the {role} node")

    def kill(self, role: str, sig: int = signal.SIGKILL) -> None:
        """Signal every process of one node (SIGKILL: the node dies as in a crash)."""
        procs = self.processes(role)
        for proc in procs:
            with contextlib.suppress(psutil.Error):
                proc.send_signal(sig)
        psutil.wait_procs(procs, timeout=20)

    def stop(self) -> None:
        for role in ("worker", "head"):
            procs = self.processes(role)
            for proc in procs:
                with contextlib.suppress(psutil.Error):
                    proc.terminate()
            _, alive = psutil.wait_procs(procs, timeout=5)
            for proc in alive:
                with contextlib.suppress(psutil.Error):
                    proc.kill()
        shutil.rmtree(self.root, ignore_errors=True)

    def wait_for_cpus(self, cpus: int, timeout: float = 60) -> None:
        """Until the cluster reports ``cpus`` alive CPUs (``ray status`` with the token)."""
        deadline = time.time() + timeout
        while time.time() < deadline:
            proc = subprocess.run([RAY, "status", f"--address={self.address}"],
                                  env=self.env, capture_output=True, text=True, timeout=60)
            if f"/{float(cpus)} CPU" in proc.stdout:
                return
            time.sleep(1)
        raise TimeoutError(f"the cluster did not reach {cpus} CPUs:\n{proc.stdout[-2000:]}")
