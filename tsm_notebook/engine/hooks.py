"""Event hooks: shell commands the daemon runs when a process crashes, errors, restarts, passes its
memory limit, comes online or stops.

A hook is the process's own (``--on-crash CMD``, a key in ``tsm.toml``) or else the home's
(``[hooks] crash = "CMD"`` in ``config.toml``). It runs through ``/bin/sh -c`` in the process's
working directory with the process's environment plus ``TSM_EVENT``, ``TSM_NAME``, ``TSM_ID``,
``TSM_EXIT_CODE``, ``TSM_SIGNAL`` (a name such as ``SIGKILL``, or empty), ``TSM_PID``,
``TSM_REASON`` and ``TSM_STDERR`` (the process's last stderr lines). It is a child of the daemon
in its own session, so the daemon never waits on it: its exit is learned from SIGCHLD like every
other child's. Past ``[hooks] timeout`` (default 30 s) its whole group is killed. Its output goes
to ``$TSM_HOME/hooks.log``; a hook that cannot start, exits non-zero or is cut is recorded as a
``hook-failed`` event. Hooks never fire for the events hooks themselves cause, and ``stop`` does
not fire for the stop inside a restart (``restart`` does).
"""

from __future__ import annotations

import asyncio
import logging
import os
import signal
import subprocess
import time
from typing import TYPE_CHECKING, Any, Callable

from ..core.logread import tail
from ..core.spec import HOOK_FIELDS
from .proctree import group_alive, killpg

if TYPE_CHECKING:
    from ..core.config import Config
    from ..core.paths import Home
    from .managed import Managed

log = logging.getLogger("tsm.daemon")

#: event -> the spec field holding a process's own hook for it
EVENTS = {event: field for field, event in HOOK_FIELDS.items()}
HOOKS_LOG_MAX = 1024**2  # bytes of hooks.log before it is moved to hooks.log.1
STDERR_LINES = 10


class Hooks:
    """Runs hook commands for the daemon; ``on_event(None-or-Managed, event, **fields)`` records
    failures, ``children`` is where the supervisor's reaper looks up a child it did not spawn."""

    def __init__(self, home: Home, config: Config, *, on_event: Callable[..., None],
                 children: dict[int, Callable[[int], None]]) -> None:
        self.home = home
        self.config = config
        self.on_event = on_event
        self.children = children
        self.running: dict[int, dict[str, Any]] = {}  # pid -> what it is, for the timeout and close
        self.log_path = home.root / "hooks.log"

    def command_for(self, m: Managed, event: str) -> str:
        """The process's own hook for ``event``, else the home's; "" when there is none."""
        own = getattr(m.spec, EVENTS[event], None)
        return own or getattr(self.config, "hook_" + event.replace("-", "_"), "") or ""

    def fire(self, m: Managed | None, event: str, fields: dict[str, Any]) -> None:
        """Start the hook for ``event`` if there is one; returns at once, never raises."""
        if m is None or event not in EVENTS:
            return
        if event == "stop" and fields.get("reason") == "restart":
            return  # the stop inside a restart: the restart hook is the one for it
        try:
            cmd = self.command_for(m, event)
            if cmd:
                self._spawn(m, event, cmd, fields)
        except Exception as exc:  # a hook must never cost the daemon anything but a line
            log.exception("%s: %s hook failed to start", m.name, event)
            self.on_event(m, "hook-failed", reason=f"{event} hook could not start: {exc}")

    def _environment(self, m: Managed, event: str, fields: dict[str, Any]) -> dict[str, str]:
        env = dict(m.env)
        env.update(m.spec.env)
        sig = fields.get("signal")
        try:
            stderr = "\n".join(line.text for line in tail(m.dir, stream="err", lines=STDERR_LINES))
        except Exception:  # a missing or unreadable log is no reason to skip the hook
            stderr = ""
        code = fields.get("exit_code")
        env.update({
            "TSM_EVENT": event,
            "TSM_NAME": m.name,
            "TSM_ID": str(m.tsm_id),
            "TSM_HOME": str(self.home.root),
            "TSM_PID": str(fields.get("pid") or ""),
            "TSM_EXIT_CODE": "" if code is None else str(code),
            "TSM_SIGNAL": signal.Signals(sig).name if sig else "",
            "TSM_REASON": str(fields.get("reason") or ""),
            "TSM_STDERR": stderr,
        })
        return env

    def _open_log(self) -> int:
        try:
            if self.log_path.stat().st_size > HOOKS_LOG_MAX:
                os.replace(self.log_path, self.log_path.with_name("hooks.log.1"))
        except FileNotFoundError:
            pass
        return os.open(self.log_path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o600)

    def _spawn(self, m: Managed, event: str, cmd: str, fields: dict[str, Any]) -> None:
        fd = self._open_log()
        try:
            stamp = time.strftime("%Y-%m-%dT%H:%M:%S%z")
            os.write(fd, f"--- {stamp} {event} {m.name} (TSM ID {m.tsm_id}): {cmd}\n".encode())
            cwd = m.spec.cwd if os.path.isdir(m.spec.cwd) else str(self.home.root)
            popen = subprocess.Popen(["/bin/sh", "-c", cmd], cwd=cwd, env=self._environment(m, event, fields),
                                     stdin=subprocess.DEVNULL, stdout=fd, stderr=fd, start_new_session=True,
                                     close_fds=True)
        finally:
            os.close(fd)
        loop = asyncio.get_running_loop()
        timeout = self.config.hook_timeout
        info = {"m": m, "event": event, "popen": popen, "cut": False,
                "timer": loop.call_later(timeout, self._cut, popen.pid, timeout)}
        self.running[popen.pid] = info
        self.children[popen.pid] = lambda status, pid=popen.pid: self._exited(pid, status)

    def _cut(self, pid: int, timeout: float) -> None:
        info = self.running.get(pid)
        if info is not None:
            info["cut"] = True
            killpg(pid, signal.SIGKILL)
            log.warning("%s: %s hook cut after %ss", info["m"].name, info["event"], timeout)

    def _exited(self, pid: int, status: int) -> None:
        info = self.running.pop(pid, None)
        if info is None:
            return
        info["timer"].cancel()
        info["popen"].returncode = code = os.waitstatus_to_exitcode(status)
        killpg(pid, signal.SIGKILL)  # what the hook left in its group goes with it
        m, event = info["m"], info["event"]
        if info["cut"]:
            reason = f"{event} hook killed after its timeout of {self.config.hook_timeout:g}s"
        elif code != 0:
            reason = f"{event} hook exited with code {code}" if code > 0 else f"{event} hook killed by signal {-code}"
        else:
            reason = None
        self._note(f"--- {event} {m.name}: " + (reason or "exit 0"))
        if reason:
            self.on_event(m, "hook-failed", pid=pid, exit_code=code if code >= 0 else None,
                          signal=-code if code < 0 else None, reason=reason)

    def _note(self, line: str) -> None:
        try:
            fd = self._open_log()
            try:
                os.write(fd, (line + "\n").encode())
            finally:
                os.close(fd)
        except OSError:
            pass

    async def close(self, grace: float = 5.0) -> None:
        """At daemon exit: let running hooks finish for ``grace`` seconds, then kill their groups."""
        deadline = time.monotonic() + min(grace, self.config.hook_timeout)
        while self.running and time.monotonic() < deadline:
            await asyncio.sleep(0.02)
        for pid in list(self.running):
            killpg(pid, signal.SIGKILL)
        deadline = time.monotonic() + 2.0
        while any(group_alive(pid) for pid in self.running) and time.monotonic() < deadline:
            await asyncio.sleep(0.02)
