"""Recovery: what a starting daemon does with the process directories a previous one left.

Every directory is read back as input (meta, spec, env); what was running is brought up again,
after any survivor of the previous daemon has been stopped.
"""

from __future__ import annotations

import asyncio
import json
import logging
import os
import signal
import time
from typing import TYPE_CHECKING

import psutil

from ..core import states
from ..core.errors import TsmError
from ..core.spec import LaunchSpec
from .managed import Managed
from .proctree import group_alive
from .stackorder import in_dependency_order

if TYPE_CHECKING:
    from .daemon import Daemon

log = logging.getLogger("tsm.daemon")


def recover(self: Daemon) -> None:
    """Load every process directory; restart what should be running (after a crash or update)."""
    sup = self.sup
    assert sup is not None
    pending = []
    for d in sorted(self.home.processes.iterdir()) if self.home.processes.exists() else []:
        if not d.is_dir():
            continue
        try:
            meta = json.loads((d / "meta.json").read_text())
            spec_d = json.loads((d / "spec.json").read_text())
            env = json.loads((d / "env.json").read_text())
            spec = LaunchSpec.from_dict(spec_d)
            name, tsm_id = meta["name"], int(meta["tsm_id"])
            if name != d.name:
                raise ValueError(f"name {name!r} does not match its directory")
        except (OSError, ValueError, KeyError, TypeError) as exc:
            sup.problems.append(f"{d.name}: unreadable metadata ({exc.__class__.__name__}: {exc})")
            log.warning("skipping %s: %s", d, exc)
            continue
        m = Managed(tsm_id, name, spec, env, d, self.config)
        m.port = meta.get("port")
        m.restarts = int(meta.get("restarts") or 0)
        m.unstable_restarts = int(meta.get("unstable_restarts") or 0)
        m.created = meta.get("created") or m.created
        m.start_time = meta.get("start_time")
        m.exit_code, m.exit_signal = meta.get("exit_code"), meta.get("exit_signal")
        m.interpreter = meta.get("interpreter") or spec.interpreter
        old_status = meta.get("status")
        m.status = old_status if old_status in (states.STOPPED, states.ERRORED) else states.STOPPED
        sup.procs[name] = m
        sup.next_id = max(sup.next_id, tsm_id + 1)
        if old_status in states.RUNNING or old_status == states.STOPPING:
            m.status = states.WAITING  # listed as due to restart until _resume brings it up
            pending.append((m, meta.get("pid"), meta.get("pid_create_time")))
    _resume_all(self, pending)


_BACKGROUND: set[asyncio.Task] = set()  # the loop keeps only weak references to tasks


def _resume_all(self: Daemon, pending: list) -> None:
    """Bring back what was running, concurrently, but a stack's apps after those they depend on."""

    def bring_up(m: Managed, pid: int | None, ctime: float | None):
        async def go() -> Managed:
            await _resume(self, m, pid, ctime)
            return m

        return go

    entries = [(m.spec, bring_up(m, pid, ctime)) for m, pid, ctime in pending]
    task = asyncio.get_running_loop().create_task(in_dependency_order(entries))
    _BACKGROUND.add(task)
    task.add_done_callback(_BACKGROUND.discard)

async def _resume(self: Daemon, m: Managed, pid: int | None, ctime: float | None) -> None:
    """Stop a survivor of a previous daemon (it is no longer ours to reap), then start anew."""
    if pid and _same_process(pid, ctime):
        self.event(m, "orphan-stopped", pid=pid, reason="survivor of a previous daemon")
        try:
            os.killpg(pid, signal.SIGTERM)
        except (ProcessLookupError, PermissionError):
            pass
        deadline = time.monotonic() + m.spec.kill_timeout
        while time.monotonic() < deadline and group_alive(pid):
            await asyncio.sleep(0.02)
        try:
            os.killpg(pid, signal.SIGKILL)
        except (ProcessLookupError, PermissionError):
            pass
        deadline = time.monotonic() + 2.0
        while time.monotonic() < deadline and group_alive(pid):
            await asyncio.sleep(0.02)
    self.event(m, "recover", reason="was running when the previous daemon ended")
    try:
        async with m.busy:
            await self.sup._launch(m, event="start", wait=False)
    except TsmError as exc:
        log.warning("%s: could not be recovered: %s", m.name, exc)


def _same_process(pid: int, ctime: float | None) -> bool:
    try:
        p = psutil.Process(pid)
        return ctime is None or abs(p.create_time() - ctime) < 0.01
    except psutil.Error:
        return False
