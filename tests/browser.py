"""Open a page in headless Chromium (the Debian ``chromium`` package, installed by .ci/run): its DOM, console
messages and a screenshot. Tests that need it skip with the reason only when Chromium is absent outside CI."""

from __future__ import annotations

import os
import shutil
import subprocess
import tempfile
from dataclasses import dataclass
from pathlib import Path

import pytest

FLAGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
         "--disable-background-networking", "--disable-component-update", "--disable-sync",
         "--enable-logging=stderr", "--v=0"]


@dataclass(frozen=True)
class Rendered:
    dom: str
    console: list[str]
    """Console messages and failed loads the page produced (Chromium's CONSOLE / net error log lines)."""


def chromium() -> str:
    found = shutil.which("chromium") or shutil.which("chromium-browser")
    if found is None:
        if os.environ.get("CI"):
            pytest.fail("chromium is not installed but CI is set: .ci/run installs it before make test")
        pytest.skip("chromium is not installed (apt-get install chromium; .ci/run does it in CI)")
    return found


def render(page: Path, *, screenshot: Path | None = None) -> Rendered:
    """The page's DOM after load, its console messages, and optionally a 1200 x 3000 screenshot."""
    binary = chromium()
    with tempfile.TemporaryDirectory(prefix="omicsdw-chromium-") as profile:
        args = [binary, *FLAGS, f"--user-data-dir={profile}"]
        done = subprocess.run([*args, "--dump-dom", page.resolve().as_uri()], capture_output=True, text=True,
                              timeout=120, check=True)
        if screenshot is not None:
            subprocess.run([*args, "--window-size=1200,3000", f"--screenshot={screenshot}",
                            page.resolve().as_uri()], capture_output=True, timeout=120, check=True)
    console = [line for line in done.stderr.splitlines()
               if ":CONSOLE(" in line or "ERR_FILE_NOT_FOUND" in line or "net::ERR" in line]
    return Rendered(done.stdout, console)
