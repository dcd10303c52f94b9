"""The benchmark driver for tsm_notebook itself, through its real ``tsm`` command line.

Everything a user would type is timed as the ``tsm`` command (``<venv>/bin/tsm``, else
``python -m tsm_notebook``) run against a scratch ``TSM_HOME``: ``tsm ping`` brings the daemon up
cold, ``tsm start --name N [--port P] -- ARGV`` starts one process, ``tsm ls`` is the status
command, ``tsm stop NAME|all``, ``tsm delete all``, and ``tsm kill`` shuts everything down. Defaults
are kept: SIGTERM then SIGKILL after ``kill_timeout`` 1.6 s, a start returns once the child has
been alive for the launch window (250 ms) or its declared port accepts, logs rotate at 10 MB and
are gzipped in the background.

Three things do not go through the command line, each for the reason given:

* ``pid``/``pids``/``online`` send the ``ls`` request of ``tsm ls --json`` over the daemon's socket
  with an open :class:`tsm_notebook.client.Client`, without an interpreter start-up per look (the
  PM2 driver reads pid files and the supervisor driver asks XML-RPC for the same reason).
* ``start_many`` (500 processes) writes them into the home's ``dump.json`` and runs
  ``tsm resurrect``, tsm's bulk start: it launches them concurrently, so their launch windows
  overlap (PM2 starts an ecosystem file, supervisor a conf.d file).
* ``status_in_process`` times ``tsm_notebook.processes()`` (a DataFrame, pandas already imported)
  and a bare ``Client.call("ls")``: the status as a notebook sees it.

The log flood gets ``--log-retain 1000`` so the 10 MB rotation keeps every rotated file: the
default retention (10 files) would delete lines by policy, which is not a capture loss.
"""

from __future__ import annotations

import compileall
import json
import os
import shutil
import sys
import tempfile
import time
from collections.abc import Iterable
from pathlib import Path
from typing import Any

from bench.driver import Driver
from bench.measure import wait_gone, wait_until, wall

import tsm_notebook
from tsm_notebook.client import commands
from tsm_notebook.client.client import Client
from tsm_notebook.core.procs import pid_alive

#: Seconds allowed for the daemon to come up, or to exit after ``tsm kill``.
DAEMON_TIMEOUT = 30.0
#: Seconds allowed for one ``tsm`` command (``stop all`` of 500 included).
COMMAND_TIMEOUT = 300.0
#: Longest ``$TSM_HOME/daemon.sock`` path kept under the workdir (AF_UNIX allows 107 bytes).
MAX_SOCKET_PATH = 100
#: Rotated log files kept by the flood processes (``--log-retain``): enough for 2,000,000 lines.
FLOOD_LOG_RETAIN = 1000


def tsm_command() -> list[str]:
    """argv prefix of the ``tsm`` command line: the venv's ``tsm`` script, else ``python -m tsm_notebook``."""
    script = Path(sys.executable).parent / "tsm"
    if script.is_file() and os.access(script, os.X_OK):
        return [str(script)]
    return [sys.executable, "-m", "tsm_notebook"]


class TsmDriver(Driver):
    """tsm_notebook driven through ``tsm`` with its own ``TSM_HOME`` (see the module docstring)."""

    name = "tsm"
    version = tsm_notebook.__version__

    def __init__(self, *, log_max_size: str | None = None, tree: Path | None = None) -> None:
        """Nothing is created until :meth:`setup`. ``log_max_size`` (a ``--log-max-size`` value such
        as ``"64K"``) makes the flood's logs rotate sooner than the 10 MB default: a test's seam.

        ``tree`` runs another checkout's package instead (``python -m tsm_notebook`` with that
        folder first on ``PYTHONPATH``), named ``tsm@<folder>``: ``--drivers tsm@../old,tsm@.``
        compares two versions of the code in one run."""
        super().__init__()
        self.log_max_size = log_max_size
        self.tree = Path(tree).resolve() if tree is not None else None
        if self.tree is not None:
            self.name = f"tsm@{self.tree.name}"
            self.tsm = [sys.executable, "-m", "tsm_notebook"]
            self.env["PYTHONPATH"] = str(self.tree)
        else:
            self.tsm = tsm_command()
        self.home = Path()
        self._own_home = False
        self._client: Client | None = None

    # -- lifecycle --------------------------------------------------------------------------------

    def setup(self, workdir: Path) -> None:
        """Make ``workdir/tsm`` the ``TSM_HOME``, or a short folder under /tmp when that path is too
        long for the daemon's Unix socket."""
        home = Path(workdir).resolve() / "tsm"
        if len(str(home / "daemon.sock")) > MAX_SOCKET_PATH:
            home = Path(tempfile.mkdtemp(prefix="tsmb-", dir="/tmp"))
            self._own_home = True
        self.home = home
        self.home.mkdir(mode=0o700, parents=True, exist_ok=True)
        self.env["TSM_HOME"] = str(self.home)
        self.env.pop("TSM_NAME", None)
        self.env.pop("TSM_ID", None)
        # An editable install has no bytecode, and PYTHONDONTWRITEBYTECODE (set on these machines)
        # stops Python from writing it: every `tsm` call would compile its modules from source,
        # which a pip-installed tsm (and supervisor, and PM2's node) never does. Compile once.
        package = self.tree / "tsm_notebook" if self.tree is not None else Path(tsm_notebook.__file__).parent
        compileall.compile_dir(package, quiet=1)

    def _run(self, *args: str, check: bool = True) -> float:
        return wall([*self.tsm, *args], self.env, ok=(0,) if check else None, timeout=COMMAND_TIMEOUT,
                    cwd=self.home)

    def _call(self, cmd: str, **args: Any) -> Any:
        """One request on the driver's own connection (never starts a daemon)."""
        if self._client is None:
            self._client = Client(self.home, autostart=False, timeout=COMMAND_TIMEOUT)
        return self._client.call(cmd, **args)

    def _close(self) -> None:
        if self._client is not None:
            self._client.close()
            self._client = None

    def _daemon_pid_or_none(self) -> int | None:
        try:
            pid = int(json.loads((self.home / "daemon.json").read_text())["pid"])
        except (OSError, ValueError, KeyError, TypeError):
            return None
        return pid if pid_alive(pid) else None

    def start_daemon(self) -> None:
        """``tsm ping``: the client starts the daemon, which answers before the command returns."""
        self._run("ping")
        wait_until(lambda: self._daemon_pid_or_none() is not None, DAEMON_TIMEOUT, "tsm's daemon.json")
        self._note(self._daemon_pid_or_none())

    def daemon_pid(self) -> int:
        """Pid of the daemon from ``$TSM_HOME/daemon.json``. Raises ``RuntimeError`` if none runs."""
        pid = self._daemon_pid_or_none()
        if pid is None:
            raise RuntimeError("no tsm daemon is running")
        return pid

    def shutdown(self) -> None:
        """``tsm kill``, prove the daemon and every child are gone, then empty the home.

        A zombie counts as gone (this machine's init may never reap the orphaned daemon). The
        home's state is removed afterwards, so the next ``start_daemon`` starts with no process,
        as PM2 does after ``pm2 kill``.
        """
        self._close()
        pid = self._daemon_pid_or_none()
        if pid is not None:
            self._note_tree(pid)
            self._run("kill", check=False)
            try:
                wait_gone([pid], DAEMON_TIMEOUT)
            except TimeoutError:
                pass  # _reap_leftovers kills it and fails loudly if even that does not work
        self._reap_leftovers(pid)
        if pid is not None and pid_alive(pid):
            raise RuntimeError(f"tsm daemon {pid} survived shutdown")
        for entry in list(self.home.iterdir()) if self.home.exists() else []:
            if entry.is_dir() and not entry.is_symlink():
                shutil.rmtree(entry, ignore_errors=True)
            else:
                entry.unlink(missing_ok=True)
        if self._own_home:
            shutil.rmtree(self.home, ignore_errors=True)
            self.home.mkdir(mode=0o700, parents=True, exist_ok=True)

    def cleanup(self) -> None:
        """Remove a home made under /tmp by :meth:`setup` (call after the last ``shutdown``)."""
        if self._own_home:
            shutil.rmtree(self.home, ignore_errors=True)

    # -- processes --------------------------------------------------------------------------------

    def _start_args(self, name: str, argv: list[str], port: int | None, *extra: str) -> list[str]:
        args = ["start", "--name", name]
        if port is not None:
            args += ["--port", str(port)]
        return [*args, *extra, "--", *argv]

    def start(self, name: str, argv: list[str], *, port: int | None = None) -> float:
        """``tsm start --name NAME [--port P] -- ARGV``; returns after the launch window (250 ms), or once the port accepts.

        ``name`` may already end in ``-P`` (tsm keeps such a name as is).
        """
        extra: tuple[str, ...] = ()
        if argv[1:2] and Path(argv[1]).name == "flood.py":
            extra = ("--log-retain", str(FLOOD_LOG_RETAIN))
            if self.log_max_size:
                extra += ("--log-max-size", self.log_max_size)
        return self._run(*self._start_args(name, argv, port, *extra))

    def start_many(self, specs: list[tuple[str, list[str]]]) -> float:
        """Write every ``(name, argv)`` into the home's ``dump.json`` and run ``tsm resurrect``,
        tsm's bulk start (as PM2 starts an ecosystem file and supervisor a conf.d file): the
        launch windows of all the processes overlap. Seconds until the command returned."""
        started = time.monotonic()
        env = dict(self.env)
        items = []
        for name, argv in specs:
            spec = commands.spec_from_args(commands.parse(self._start_args(name, argv, None)), cwd=str(self.home), env=env)
            items.append({"name": name, "spec": spec.to_dict(), "env": commands.child_environment(env), "port": spec.port})
        (self.home / "dump.json").write_text(json.dumps({"version": tsm_notebook.__version__, "processes": items}))
        wall([*self.tsm, "resurrect"], env=self.env, timeout=COMMAND_TIMEOUT)
        return time.monotonic() - started

    def _rows(self) -> list[dict[str, Any]]:
        rows: list[dict[str, Any]] = self._call("ls", all=True)
        return rows

    def pid(self, name: str) -> int | None:
        """Pid of ``name`` from an ``ls`` request, or ``None`` (stopped, waiting, or unknown)."""
        return self.pids([name])[name]

    def pids(self, names: Iterable[str]) -> dict[str, int | None]:
        """Pids of ``names`` from one ``ls`` request (what ``tsm ls --json`` prints)."""
        every = {r["name"]: r.get("pid") for r in self._rows()}
        return {name: self._note(every.get(name)) for name in names}

    def online(self, name: str) -> bool:
        """True when tsm lists ``name`` as ``online`` (alive past the launch window)."""
        return any(r["name"] == name and r["status"] == "online" for r in self._rows())

    def list_cmd(self) -> list[str]:
        """``tsm ls``."""
        return [*self.tsm, "ls"]

    def status_in_process(self) -> dict[str, float]:
        """Seconds of the status as a notebook sees it: ``{"processes()": s, "Client.call(ls)": s}``.

        ``tsm_notebook.processes(home)`` opens a connection and builds the DataFrame (pandas is
        imported before the clock starts); ``Client.call("ls")`` is one request on an open client.
        """
        from tsm_notebook.notebook import frames  # pandas: imported once, outside the timing

        client = Client(self.home, autostart=False, timeout=COMMAND_TIMEOUT)
        try:
            client.call("ping")  # connected before timing, as a kernel's shared client is
            started = time.monotonic()
            client.call("ls", all=True)
            call = time.monotonic() - started
        finally:
            client.close()
        started = time.monotonic()
        frames.processes(self.home)
        frame = time.monotonic() - started
        return {"tsm_notebook.processes()": frame, 'Client.call("ls")': call}

    def stop(self, name: str) -> float:
        """``tsm stop NAME``: returns after the exit (SIGTERM, SIGKILL after 1.6 s)."""
        return self._run("stop", name)

    def stop_all(self) -> float:
        """``tsm stop all`` (every process stopped at once)."""
        return self._run("stop", "all")

    def delete_all(self) -> None:
        """``tsm delete all`` (non-zero exit tolerated)."""
        self._run("delete", "all", check=False)

    def _log_dir(self, name: str) -> Path:
        return self.home / "runtime" / "processes" / name

    def _rotated(self, name: str) -> dict[str, Path]:
        """Rotated stdout files by stem (``out-<stamp>``): the ``.log.gz`` if done, else the ``.log``."""
        found: dict[str, Path] = {}
        try:
            entries = sorted(os.listdir(self._log_dir(name)))
        except FileNotFoundError:
            return found
        for entry in entries:
            if not entry.startswith("out-"):
                continue
            if entry.endswith(".log.gz"):
                found[entry[: -len(".log.gz")]] = self._log_dir(name) / entry
            elif entry.endswith(".log"):
                found.setdefault(entry[: -len(".log")], self._log_dir(name) / entry)
        return found

    def log_bytes(self, name: str) -> int:
        """Uncompressed bytes of ``name``'s stdout captured so far: ``current.out`` plus every rotated
        file (a ``.log.gz``'s size read from its gzip trailer; files are far below 4 GiB)."""
        total = 0
        for path in [*self._rotated(name).values(), self._log_dir(name) / "current.out"]:
            try:
                if path.suffix == ".gz":
                    with open(path, "rb") as f:
                        f.seek(-4, os.SEEK_END)
                        total += int.from_bytes(f.read(4), "little")
                else:
                    total += path.stat().st_size
            except (OSError, ValueError):
                pass  # renamed or compressed under us: the next look counts it
        return total

    def log_files(self, name: str) -> list[Path]:
        """Every file of ``name``'s stdout, oldest first: rotated ``out-*.log.gz`` then ``current.out``.

        Waits (up to 120 s) for background compressions to finish, so no file changes name while
        it is read; the harness reads ``.gz`` files decompressed.
        """
        directory = self._log_dir(name)

        def settled() -> bool:
            try:
                entries = os.listdir(directory)
            except FileNotFoundError:
                return True
            return not any(e.startswith("out-") and (e.endswith(".log") or e.endswith(".tmp")) for e in entries)

        try:
            wait_until(settled, 120, f"{name}'s rotated logs to be compressed")
        except TimeoutError:
            pass  # read what is there: a .log still uncompressed is read as is
        return [*self._rotated(name).values(), directory / "current.out"]


__all__ = ["TsmDriver", "tsm_command"]
