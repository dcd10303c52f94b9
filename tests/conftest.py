"""Fixtures shared by the suite: a private TSM home per test, a way to run the real `tsm` command
line, deadline-based waits, and a teardown that proves nothing the test started is still alive."""

from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import psutil
import pytest

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from tsm_notebook.client.client import Client  # noqa: E402
from tsm_notebook.core.procs import pid_alive  # noqa: E402

PY = os.path.realpath(sys.executable)


def wait_for(predicate, timeout: float = 10.0, interval: float = 0.01, message: str = "condition"):
    """Poll ``predicate`` until it returns a truthy value or ``timeout`` passes (then fail)."""
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout}s waiting for {message}")
        time.sleep(interval)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def accepts(port: int) -> bool:
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=0.2):
            return True
    except OSError:
        return False


def owned_pids(home: Path) -> list[int]:
    """Every live process started for ``home``: its daemon (``--home``) and children (``TSM_HOME``)."""
    home_s = str(home)
    found = []
    for p in psutil.process_iter(["pid", "cmdline", "status"]):
        try:
            if p.info["status"] == psutil.STATUS_ZOMBIE or p.pid == os.getpid():
                continue
            cmd = p.info["cmdline"] or []
            if "--home" in cmd and home_s in cmd:
                found.append(p.pid)
                continue
            if p.environ().get("TSM_HOME") == home_s:
                found.append(p.pid)
        except (psutil.Error, OSError):
            continue
    return found


class Tsm:
    """A private TSM home with helpers to drive it through the CLI and the client."""

    def __init__(self, home: Path):
        self.home = home
        self.env = dict(os.environ, TSM_HOME=str(home), PYTHONPATH=str(ROOT))
        self.client = Client(home)

    def run(self, *args: str, check: bool = False, timeout: float = 60, **kw) -> subprocess.CompletedProcess:
        """Run the real command line (``python -m tsm_notebook``) against this home."""
        r = subprocess.run([sys.executable, "-m", "tsm_notebook", *args], env=self.env, capture_output=True, text=True,
                           timeout=timeout, stdin=subprocess.DEVNULL, **kw)
        if check and r.returncode != 0:
            raise AssertionError(f"tsm {' '.join(args)} failed ({r.returncode}):\n{r.stdout}\n{r.stderr}")
        return r

    def call(self, cmd: str, **args):
        return self.client.call(cmd, **args)

    def row(self, name: str) -> dict:
        return self.call("describe", target=name)[0]

    def wait_status(self, name: str, status: str, timeout: float = 10.0) -> dict:
        return wait_for(lambda: (lambda r: r if r["status"] == status else None)(self.row(name)), timeout,
                        message=f"{name} to be {status}")

    def daemon_pid(self) -> int | None:
        try:
            import json

            return json.loads((self.home / "daemon.json").read_text())["pid"]
        except (OSError, ValueError, KeyError):
            return None

    def proc_dir(self, name: str) -> Path:
        return self.home / "runtime" / "processes" / name


@pytest.fixture
def tsm():
    """A private TSM home (short path: Unix socket paths are limited to 108 bytes)."""
    home = Path(tempfile.mkdtemp(prefix="tsm-test-", dir="/tmp"))
    t = Tsm(home)
    try:
        yield t
    finally:
        t.client.close()
        try:
            Client(home, autostart=False).kill(timeout=30)
        except Exception:
            pass
        leftover = []
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            leftover = owned_pids(home)
            if not leftover:
                break
            time.sleep(0.05)
        for pid in leftover:
            try:
                os.kill(pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
        shutil.rmtree(home, ignore_errors=True)
        assert not leftover, f"processes left alive by the test: {leftover}"


@pytest.fixture
def port() -> int:
    return free_port()


def spawned(cmd: list[str], **kw) -> subprocess.Popen:
    return subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, **kw)


__all__ = ["wait_for", "free_port", "accepts", "owned_pids", "Tsm", "PY", "pid_alive"]
