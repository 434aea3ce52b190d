"""The process environment the CLI sets up: loopback traffic never goes through a proxy."""

from __future__ import annotations

import http.server
import os
import subprocess
import sys
import threading

import pytest

from analysis.env import bypass_proxy_for_loopback

DEAD_PROXY = "http://127.0.0.1:9"  # the discard port: nothing listens there


@pytest.mark.parametrize("environ, expected", [
    ({}, None),  # no proxy: nothing to do
    ({"http_proxy": DEAD_PROXY}, "127.0.0.1,localhost,::1"),
    ({"HTTPS_PROXY": DEAD_PROXY, "NO_PROXY": "corp.example"},
     "corp.example,127.0.0.1,localhost,::1"),
    ({"http_proxy": DEAD_PROXY, "no_proxy": "localhost", "NO_PROXY": "10.0.0.1"},
     "localhost,10.0.0.1,127.0.0.1,::1"),
    ({"http_proxy": DEAD_PROXY, "no_proxy": "*"}, "*"),
])
def test_loopback_joins_no_proxy(environ, expected):
    environ = dict(environ)
    bypass_proxy_for_loopback(environ)
    assert environ.get("no_proxy") == expected
    assert environ.get("NO_PROXY") == expected


class _Health(http.server.BaseHTTPRequestHandler):
    def do_GET(self):
        self.send_response(200)
        self.end_headers()
        self.wfile.write(b"OK")

    def log_message(self, *args):
        pass


def test_cli_reaches_a_loopback_server_behind_a_dead_proxy():
    """With every proxy variable pointing at a dead port, the CLI's environment still lets
    the health check (urllib) and MLflow's client library (requests) reach 127.0.0.1."""
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _Health)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    url = f"http://127.0.0.1:{server.server_address[1]}"
    env = {key: value for key, value in os.environ.items()
           if key.lower() not in ("no_proxy", "http_proxy", "https_proxy", "all_proxy")}
    env.update(http_proxy=DEAD_PROXY, https_proxy=DEAD_PROXY, HTTP_PROXY=DEAD_PROXY,
               HTTPS_PROXY=DEAD_PROXY)
    probe = ("import sys, requests\n"
             "from analysis.tracking_store import server_healthy\n"
             "url = sys.argv[1]\n"
             "before = server_healthy(url, timeout=2)\n"
             "from search.env import apply_quiet_env\n"
             "apply_quiet_env()\n"
             "print(before, server_healthy(url, timeout=2),"
             " requests.get(url + '/health', timeout=5).text)\n")
    try:
        out = subprocess.run([sys.executable, "-c", probe, url], capture_output=True,
                             text=True, env=env, timeout=120)
    finally:
        server.shutdown()
    assert out.returncode == 0, out.stderr
    # Without the CLI's environment the dead proxy is used (so this test can fail).
    assert out.stdout.split() == ["False", "True", "OK"]
