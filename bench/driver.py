"""The interface every benchmarked process manager is driven through, and shared driver plumbing.

A driver owns one scratch home (``setup``), brings its daemon up cold (``start_daemon``), starts,
lists, stops and deletes processes through the manager's own command line, and at ``shutdown``
proves that its daemon and every process it ever ran are gone, killing leftovers by pid only.

The benchmark harness (``bench/run.py``) calls, per driver::

    setup(workdir) -> start_daemon() -> start / start_many / pid / pids / online / list_cmd / stop /
    stop_all / log_files ... -> delete_all() -> shutdown()      (start_daemon..shutdown may repeat)

Methods that time a command return the wall seconds until that command returned. A driver that
cannot do something raises :class:`Unsupported` with a reason; the harness records ``null`` and
the reason for that row.
"""

from __future__ import annotations

import os
from collections.abc import Iterable
from pathlib import Path

import psutil

from bench.measure import pid_alive, wait_gone


class Unsupported(Exception):
    """This driver cannot measure what was asked; ``str(exc)`` is the reason put in the results."""


class Driver:
    """Base of the drivers: the benchmark interface plus leftover-process bookkeeping.

    Subclasses set ``name`` and ``version`` and implement the methods that raise
    ``NotImplementedError`` here. ``env`` is the environment the manager's commands need (for
    example ``PM2_HOME``); the harness passes it when it times ``list_cmd()`` itself.
    """

    name: str = "driver"
    version: str = "unknown"
    #: Exit codes of ``list_cmd()`` that mean success.
    list_ok: tuple[int, ...] = (0,)

    def __init__(self) -> None:
        self.env: dict[str, str] = dict(os.environ)
        self._seen: dict[int, psutil.Process] = {}
        #: Pids that were still alive after the manager's own shutdown and had to be SIGKILLed.
        self.leftovers: list[int] = []

    # -- lifecycle --------------------------------------------------------------------------------

    def setup(self, workdir: Path) -> None:
        """Install the manager if needed (cached) and create a scratch home under ``workdir``."""
        raise NotImplementedError

    def start_daemon(self) -> None:
        """Bring the daemon up from nothing and return once it answers commands."""
        raise NotImplementedError

    def daemon_pid(self) -> int:
        """Pid of the running daemon. Raises ``RuntimeError`` when none is running."""
        raise NotImplementedError

    def shutdown(self) -> None:
        """Stop the daemon with the manager's own command, prove it and its children are gone.

        Leftovers are killed by pid (SIGKILL); ``RuntimeError`` is raised if anything survives.
        """
        raise NotImplementedError

    # -- processes --------------------------------------------------------------------------------

    def start(self, name: str, argv: list[str], *, port: int | None = None) -> float:
        """Start one process named ``name`` running ``argv`` (``argv[0]`` an absolute path).

        ``port`` is what the process will listen on, for managers that record it. Returns the
        seconds until the manager's start command returned (not until the process is ready).
        """
        raise NotImplementedError

    def start_many(self, specs: list[tuple[str, list[str]]]) -> float:
        """Start every ``(name, argv)`` in one bulk command; return the seconds it took to return."""
        raise NotImplementedError

    def pid(self, name: str) -> int | None:
        """Pid of process ``name`` as the manager reports it, or ``None`` when it has none."""
        raise NotImplementedError

    def pids(self, names: Iterable[str]) -> dict[str, int | None]:
        """``{name: pid or None}`` for ``names``; drivers override this with one bulk query."""
        return {name: self.pid(name) for name in names}

    def online(self, name: str) -> bool:
        """True when the manager counts ``name`` as started and running (its "online" state)."""
        return self.pid(name) is not None

    def list_cmd(self) -> list[str]:
        """The manager's status command as argv, to be timed with ``env`` by the harness."""
        raise NotImplementedError

    def stop(self, name: str) -> float:
        """Stop process ``name``; return the seconds until the stop command returned."""
        raise NotImplementedError

    def stop_all(self) -> float:
        """Stop every process; return the seconds until the command returned."""
        raise NotImplementedError

    def delete_all(self) -> None:
        """Stop and forget every process, leaving the daemon running and empty."""
        raise NotImplementedError

    def log_files(self, name: str) -> list[Path]:
        """The files holding the captured stdout of ``name`` (rotation off), oldest first."""
        raise Unsupported(f"{self.name} does not expose its log files")

    # -- bookkeeping for shutdown -----------------------------------------------------------------

    def _note(self, pid: int | None) -> int | None:
        """Remember ``pid`` (with its start time, so a reused pid is never killed) and return it."""
        if pid and pid not in self._seen:
            try:
                self._seen[pid] = psutil.Process(pid)
            except psutil.Error:
                pass
        return pid

    def _note_tree(self, root: int) -> None:
        """Remember every live descendant of ``root`` (call before the daemon goes away)."""
        try:
            for child in psutil.Process(root).children(recursive=True):
                self._seen.setdefault(child.pid, child)
        except psutil.Error:
            pass

    def _reap_leftovers(self, daemon: int | None, timeout: float = 10.0) -> None:
        """Kill by pid whatever this driver started that is still alive, then prove all are gone.

        ``daemon`` (if given) is included; the pids killed are added to ``leftovers``. Raises
        ``RuntimeError`` naming any survivor.
        """
        procs = dict(self._seen)
        if daemon is not None:
            try:
                procs.setdefault(daemon, psutil.Process(daemon))
            except psutil.Error:
                pass
        for proc in procs.values():
            try:
                if proc.is_running() and proc.status() != psutil.STATUS_ZOMBIE:
                    proc.kill()  # psutil checks the start time first: a reused pid is left alone
                    self.leftovers.append(proc.pid)
            except psutil.Error:
                pass
        alive = [pid for pid, proc in procs.items() if _still_running(proc)]
        try:
            wait_gone(alive, timeout)
        except TimeoutError as exc:
            raise RuntimeError(f"{self.name}: processes survived shutdown: {exc}") from None
        self._seen.clear()


def _still_running(proc: psutil.Process) -> bool:
    try:
        return proc.is_running() and pid_alive(proc.pid)
    except psutil.Error:
        return False
