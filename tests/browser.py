"""Headless Chromium for tests: Debian's package, installed by .ci/run where missing."""

from __future__ import annotations

import re
import shutil
import subprocess
import tempfile

import pytest

FLAGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
         "--disable-background-networking", "--disable-component-update", "--disable-sync",
         "--enable-unsafe-swiftshader", "--enable-logging=stderr", "--v=0"]
# Browser-level notices about software WebGL are not page errors.
_IGNORED = re.compile(r"WebGL|GL Driver|swiftshader", re.IGNORECASE)


def chromium() -> str:
    path = shutil.which("chromium") or shutil.which("chromium-browser")
    if path is None:  # .ci/run tried `apt-get install chromium` before the tests
        pytest.skip("chromium is not installed and could not be installed here: "
                    "`apt-get install chromium` enables the browser tests")
    return path


def run(url: str, *extra: str, timeout: int = 120) -> tuple[str, list[str]]:
    """Load ``url``; return stdout and the page's console messages (minus WebGL notices)."""
    with tempfile.TemporaryDirectory() as profile:
        proc = subprocess.run([chromium(), *FLAGS, f"--user-data-dir={profile}", *extra, url],
                              capture_output=True, text=True, timeout=timeout)
    console = [line for line in proc.stderr.splitlines()
               if ":CONSOLE" in line and not _IGNORED.search(line)]
    return proc.stdout, console
