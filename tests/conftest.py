"""Fixtures shared by the suite: a private TSM home per test, a way to run the real `tsm` command
line, a fresh IPython shell per test with a HOME of its own, deadline-based waits, and a teardown
that proves nothing the test started is still alive: no process, no `tsm-*` thread."""

from __future__ import annotations

import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import psutil
import pytest

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from tsm_notebook.client.client import Client  # noqa: E402
from tsm_notebook.core import marker  # noqa: E402
from tsm_notebook.core.cgroups import Cgroups  # noqa: E402
from tsm_notebook.core.procs import pid_alive  # noqa: E402

PY = os.path.realpath(sys.executable)

# A suite started as a background job of a script inherits SIGINT ignored, and so would every
# command it runs: the tests that interrupt `tsm logs -f` or monit would see nothing happen.
if signal.getsignal(signal.SIGINT) is signal.SIG_IGN:
    signal.signal(signal.SIGINT, signal.default_int_handler)


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


@pytest.fixture
def foreign():
    """A process of ours that no tsm home marks (as another tool's would be)."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("TSM_")}
    p = subprocess.Popen(["sleep", "600"], env=env, start_new_session=True)
    yield p
    p.kill()
    p.wait()


def one_line_usage_error(excinfo: pytest.ExceptionInfo) -> str:
    """The message of a raised UsageError, checked to be one non-empty line."""
    message = str(excinfo.value)
    assert message and "\n" not in message
    return message


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
    """Every live process started for ``home``: its daemon (``--home``), the processes carrying
    its marker (``TSM_HOME``), and those that hid the marker (a program that rewrites its
    environment, as redis-server does, or one started with ``env -i``): the members of the
    home's run cgroups (where the machine has them) and the leaders ``meta.json`` records, found
    with the engine's own checks (:mod:`tsm_notebook.core.cgroups`, :func:`marker.recorded_leader`)."""
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
    hidden = set(Cgroups(home_s, create=False).survivors()) | set(recorded_leaders(home))
    return found + sorted(pid for pid in hidden - set(found) if pid != os.getpid() and pid_alive(pid))


def recorded_leaders(home: Path) -> list[int]:
    """The live leaders the home's ``meta.json`` files record (their start time checked)."""
    found = []
    for meta_file in sorted((home / "runtime" / "processes").glob("*/meta.json")):
        try:
            meta = json.loads(meta_file.read_text())
            pid, ctime, tsm_id = meta.get("pid"), meta.get("pid_create_time"), meta.get("tsm_id")
        except (OSError, ValueError, AttributeError):
            continue
        if isinstance(tsm_id, int) and marker.recorded_leader(pid, ctime, str(home), tsm_id):
            found.append(pid)
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


# The log writer's compression pool is module-wide by design: its idle threads serve every writer.
SHARED_THREADS = ("tsm-log-gzip",)


def tsm_threads() -> set[threading.Thread]:
    """The live threads of this process that the package started (named ``tsm-*``), but the shared pool."""
    return {t for t in threading.enumerate()
            if t.is_alive() and t.name.startswith("tsm-") and not t.name.startswith(SHARED_THREADS)}


def threads_left(before: set[threading.Thread], timeout: float = 10.0) -> list[str]:
    """Names of ``tsm-*`` threads started since ``before`` still alive after ``timeout`` seconds."""
    deadline = time.monotonic() + timeout
    while True:
        left = sorted(t.name for t in tsm_threads() - before)
        if not left or time.monotonic() > deadline:
            return left
        time.sleep(0.05)


@pytest.fixture
def tsm():
    """A private TSM home (short path: Unix socket paths are limited to 108 bytes).

    Teardown kills the home's daemon, then proves that no process of the home and no ``tsm-*``
    thread the test started in this process (a panel's refresh, a log view) is still alive."""
    home = Path(tempfile.mkdtemp(prefix="tsm-test-", dir="/tmp"))
    t = Tsm(home)
    threads_before = tsm_threads()
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
        threads = threads_left(threads_before)
        assert not threads, f"threads left alive by the test: {threads}"


@pytest.fixture(autouse=True)
def _private_ipython_dir(tmp_path_factory, monkeypatch) -> None:
    """Every test's kernels and shells keep their IPython history in a directory of the test's
    own (inherited by every kernel and command it starts), never in the user's."""
    monkeypatch.setenv("IPYTHONDIR", str(tmp_path_factory.mktemp("ipython")))


@pytest.fixture
def user_home(tmp_path_factory, monkeypatch) -> Path:
    """A HOME and an IPython directory of the test's own: nothing reaches the user's real ones."""
    home = tmp_path_factory.mktemp("home")
    monkeypatch.setenv("HOME", str(home))
    monkeypatch.setenv("IPYTHONDIR", str(home / ".ipython"))
    return home


@pytest.fixture
def shell(tsm, user_home, monkeypatch):
    """A fresh IPython ``InteractiveShell`` for this test alone, history in memory, its default
    TSM home the test's; the extension is not loaded. Cleared at teardown, before ``tsm``'s."""
    from IPython.core.interactiveshell import InteractiveShell
    from traitlets.config import Config

    monkeypatch.setenv("TSM_HOME", str(tsm.home))
    InteractiveShell.clear_instance()
    cfg = Config()
    cfg.HistoryManager.hist_file = ":memory:"
    sh = InteractiveShell.instance(config=cfg)
    assert Path(sh.profile_dir.location).is_relative_to(user_home)  # not the user's profile
    try:
        yield sh
    finally:
        try:
            sh.history_manager.end_session()
            if sh.history_manager.save_thread is not None:
                sh.history_manager.save_thread.stop()
        finally:
            InteractiveShell.clear_instance()


@pytest.fixture
def port() -> int:
    return free_port()


def spawned(cmd: list[str], **kw) -> subprocess.Popen:
    return subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, **kw)


class Hosts:
    """Servers a and b (and any extra [hosts] entries) for the local home of ``tsm``: real sshd
    on 127.0.0.2 and 127.0.0.3, each with its own remote TSM home (see tests/sshd.py). With
    ``private``, those servers' homes are on a tmpfs only they see (another machine's disk)."""

    def __init__(self, tsm, base: Path, private: tuple[str, ...] = ()):
        from sshd import Sshd, keygen

        self.tsm, self.base = tsm, base
        key = keygen(base / "user_key")
        self.servers = {n: Sshd(base, n, addr, key, private_home=n in private)
                        for n, addr in (("a", "127.0.0.2"), ("b", "127.0.0.3"))}
        self.entries = {n: s.host_entry() for n, s in self.servers.items()}
        self.remote_homes = [s.remote_home for s in self.servers.values()]
        tsm.env["TSM_SSH_CONTROL_DIR"] = str(base / "cm")
        os.environ["TSM_SSH_CONTROL_DIR"] = str(base / "cm")  # the in-process frames share the masters
        for s in self.servers.values():
            s.start()
        self.write()

    def add(self, name: str, entry: dict, remote_home: Path | None = None) -> None:
        self.entries[name] = entry
        if remote_home is not None:
            self.remote_homes.append(remote_home)
        self.write()

    def write(self) -> None:
        from sshd import toml_hosts

        (self.tsm.home / "config.toml").write_text(toml_hosts(self.entries))

    def close(self) -> None:
        from tsm_notebook.client.remote import RemoteClient, close_master, configured_hosts
        from tsm_notebook.core.paths import Home

        masters = []
        try:
            configured = configured_hosts(Home(self.tsm.home))
            for name, s in self.servers.items():
                if s.private_home and s.proc is not None and name in configured and owned_pids(s.remote_home):
                    try:  # its socket is on its own disk: reached the way the tests reach it
                        RemoteClient(configured[name]).kill(timeout=30)
                        wait_for(lambda: not owned_pids(s.remote_home), 10, message=f"{name}'s daemon to exit")
                    except Exception:
                        pass
            for host in configured.values():
                masters.append(close_master(host))
        finally:
            for home in self.remote_homes:
                try:
                    Client(home, autostart=False).kill(timeout=30)
                except Exception:
                    pass
            for s in self.servers.values():
                s.stop()
            os.environ.pop("TSM_SSH_CONTROL_DIR", None)
        left = [p for home in self.remote_homes for p in owned_pids(home)]
        what = []
        for pid in left:
            try:
                what.append(" ".join(psutil.Process(pid).cmdline()))
            except psutil.Error:
                pass
            os.kill(pid, signal.SIGKILL)
        assert not left, f"remote daemons or children left alive: {left}: {what}"
        wait_for(lambda: not [p for p in masters if p and pid_alive(p)], 10, message="the ssh masters to exit")


def _hosts(tsm, private: tuple[str, ...] = ()):
    base = Path(tempfile.mkdtemp(prefix="tsmh-", dir="/tmp"))
    h = None
    try:
        h = Hosts(tsm, base, private)
        yield h
    finally:
        if h is not None:
            h.close()
        shutil.rmtree(base, ignore_errors=True)


@pytest.fixture
def hosts(tsm):
    """Two "hosts" (sshd on loopback, a remote home each); teardown proves both homes are empty of
    processes and the ssh masters gone."""
    yield from _hosts(tsm)


@pytest.fixture
def private_hosts(tsm):
    """:func:`hosts` whose remote homes are each on a disk only its server sees."""
    yield from _hosts(tsm, ("a", "b"))


__all__ = ["wait_for", "one_line_usage_error", "free_port", "accepts", "owned_pids", "Tsm", "PY", "pid_alive", "tsm_threads", "threads_left", "Hosts"]
