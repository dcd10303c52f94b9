"""Recovery: what a starting daemon does with the process directories a previous one left.

Every directory is read back as input (meta, spec, env), checked as a request would be; a bad one
is moved to ``runtime/quarantine/`` and reported (patrol, doctor, an event), and every other
process goes on. Before anything is launched, every survivor of the previous daemon is found by
its marker (``TSM_HOME`` and ``TSM_ID`` in its environment, our uid; see
:mod:`tsm_notebook.core.marker`) and stopped, whatever became of its session, including one a
daemon killed between a spawn and the ``meta.json`` write left (the intent recorded before the
spawn names it). A recorded pid without a matching start time and marker is not ours and is never
signalled. Then what was running is started again, exactly once.
"""

from __future__ import annotations

import asyncio
import json
import logging
import os
import signal
import time
from typing import TYPE_CHECKING

from ..core import marker, states
from ..core.errors import TsmError, UsageError
from ..core.ondisk import check_meta, env_map
from ..core.paths import check_own_dir
from ..core.spec import LaunchSpec
from .managed import Managed
from .stackorder import in_dependency_order

if TYPE_CHECKING:
    from .daemon import Daemon

log = logging.getLogger("tsm.daemon")

#: seconds survivors get between SIGTERM and SIGKILL (they were not ours to stop politely)
SURVIVOR_GRACE = 3.0


def _read(d) -> tuple[dict, LaunchSpec, dict]:
    """meta, spec and env of one process directory, each checked; raise UsageError naming the file."""
    check_own_dir(d, "process directory")
    parts = {}
    for fname in ("meta.json", "spec.json", "env.json"):
        try:
            parts[fname] = json.loads((d / fname).read_text())
        except FileNotFoundError:
            raise UsageError(f"{fname} is missing") from None
        except (OSError, ValueError) as exc:
            raise UsageError(f"{fname} cannot be read ({exc.__class__.__name__}: {exc})") from None
    meta = check_meta(parts["meta.json"], d.name)
    try:
        spec = LaunchSpec.from_dict(parts["spec.json"])
    except UsageError as exc:
        raise UsageError(f"spec.json: {exc.message}") from None
    env = env_map(parts["env.json"], "env", "env.json")
    return meta, spec, env


def quarantine(self: Daemon, d, why: str) -> None:
    """Move a bad process directory aside (kept for inspection) and report it."""
    sup = self.sup
    qdir = self.home.root / "runtime" / "quarantine"
    dest = qdir / f"{d.name}.{int(time.time())}"
    try:
        qdir.mkdir(mode=0o700, exist_ok=True)
        if dest.exists():
            dest = qdir / f"{d.name}.{time.time_ns()}"
        os.rename(d, dest)
        where = f"moved to {dest}"
    except OSError as exc:
        where = f"could not be moved aside: {exc.strerror or exc}"
    sup.problems.append(f"{d.name}: quarantined: {why} ({where})")
    log.warning("quarantined %s: %s (%s)", d, why, where)
    self.store.event(tsm_id=None, name=d.name, event="quarantined", pid=None, exit_code=None, signal=None,
                     reason=f"{why} ({where})")


def recover(self: Daemon) -> None:
    """Load every process directory; stop every survivor; restart what should be running."""
    sup = self.sup
    assert sup is not None
    pending = []
    leaders: dict[int, tuple[int, float]] = {}  # recorded leader pid -> (tsm_id, start time)
    entries = sorted(self.home.processes.iterdir()) if self.home.processes.exists() else []
    for d in entries:
        if d.name.startswith(".") or not (d.is_dir() or d.is_symlink()):
            continue
        try:
            meta, spec, env = _read(d)
            name, tsm_id = meta["name"], meta["tsm_id"]
            if any(m.tsm_id == tsm_id for m in sup.procs.values()):
                raise UsageError(f"meta.json: tsm_id {tsm_id} is already used by another process")
        except UsageError as exc:
            quarantine(self, d, exc.message)
            continue
        m = Managed(tsm_id, name, spec, env, d, self.config)
        m.port = meta.get("port")
        m.restarts = meta.get("restarts") or 0
        m.unstable_restarts = meta.get("unstable_restarts") or 0
        m.created = meta.get("created") or m.created
        m.start_time = meta.get("start_time")
        m.exit_code, m.exit_signal = meta.get("exit_code"), meta.get("exit_signal")
        m.interpreter = meta.get("interpreter") or spec.interpreter
        old_status = meta.get("status")
        m.status = old_status if old_status in (states.STOPPED, states.ERRORED) else states.STOPPED
        sup.procs[name] = m
        sup.next_id = max(sup.next_id, tsm_id + 1)
        if old_status in states.RUNNING or old_status == states.STOPPING:
            m.status = states.WAITING  # listed as due to restart until resumed
            pending.append(m)
            pid, ctime = meta.get("pid"), meta.get("pid_create_time")
            if marker.recorded_leader(pid, ctime, str(self.home.root), tsm_id):
                leaders[pid] = (tsm_id, ctime)
    # Nothing has been launched yet (no request is served before this returns): every marked
    # process of this home is a survivor of the previous daemon, managed or left unreadable;
    # so is a recorded leader whose title overwrote its marker (redis-server does).
    survivors = dict(sup.tracker.scan(fresh=True))
    for pid, (tsm_id, _) in leaders.items():
        survivors.setdefault(pid, (tsm_id, None))
    # and every member of a run cgroup left by the previous daemon: found even when it wiped its
    # environment (no marker) and left its process group
    old_runs = sup.tracker.cgroups.tokens()  # taken now: later cgroups are the new daemon's
    for pid, token in sup.tracker.cgroups.survivors().items():
        survivors.setdefault(pid, (_token_id(token), token))
    task = asyncio.get_running_loop().create_task(_resume(self, pending, survivors, leaders, old_runs))
    _BACKGROUND.add(task)
    task.add_done_callback(_BACKGROUND.discard)


def _token_id(token: str) -> int | None:
    """The tsm id a run token (``<tsm_id>.<hex>``) begins with."""
    head = token.partition(".")[0]
    return int(head) if head.isdigit() and len(head) < 10 else None


_BACKGROUND: set[asyncio.Task] = set()  # the loop keeps only weak references to tasks


async def _resume(self: Daemon, pending: list[Managed], survivors: dict, leaders: dict | None = None,
                  old_runs: list[str] | None = None) -> None:
    """Stop the survivors (they are no longer ours to reap), then start anew what was running."""
    home = str(self.home.root)
    if survivors:
        by_id: dict = {}
        for pid, (tid, _) in survivors.items():
            by_id.setdefault(tid, []).append(pid)
        known = {m.tsm_id: m for m in self.sup.procs.values()}
        for tid, pids in sorted(by_id.items(), key=lambda kv: str(kv[0])):
            m = known.get(tid)
            reason = "survivor of a previous daemon" if m else "survivor that no readable process owns"
            self.event(m, "orphan-stopped", pid=min(pids), reason=f"{reason}: pids {sorted(pids)}")
        pids = list(survivors)
        leaders = leaders or {}
        cgroups = self.sup.tracker.cgroups
        for sig in (signal.SIGTERM, signal.SIGKILL):
            marker.signal_marked([p for p in pids if marker.start_time(p) is not None], sig, home)
            for token in old_runs or ():
                cgroups.signal(token, sig)
            for pid, (_, ctime) in leaders.items():
                marker.signal_leader(pid, ctime, sig)
            if sig == signal.SIGKILL:
                break
            deadline = time.monotonic() + SURVIVOR_GRACE
            while time.monotonic() < deadline and marker.any_alive(pids):
                await asyncio.sleep(0.02)
        deadline = time.monotonic() + 2.0
        while time.monotonic() < deadline and marker.any_alive(pids):
            await asyncio.sleep(0.02)
        for token in old_runs or ():
            cgroups.remove(token)

    def bring_up(m: Managed):
        async def one() -> Managed:
            self.event(m, "recover", reason="was running when the previous daemon ended")
            try:
                async with m.busy:
                    if m.status == states.WAITING:
                        await self.sup._launch(m, event="start", wait=False)
            except TsmError as exc:
                log.warning("%s: could not be recovered: %s", m.name, exc)
            return m

        return one

    # concurrently, but a stack's apps after those they depend on
    await in_dependency_order([(m.spec, bring_up(m)) for m in pending])
