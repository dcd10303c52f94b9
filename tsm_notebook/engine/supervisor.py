"""The daemon's process table: reaping children, the restart policy, and every action on a
process (bringing one up is :mod:`launch`'s, output capture :mod:`capture`'s). Runs on the
daemon's asyncio loop; nothing here blocks for long.

Every child runs in its own session (so its process group id is its pid); the daemon is every
child's parent and, being a child subreaper, also reaps orphaned grandchildren. Exits are learned
from SIGCHLD at once, with the real exit code or signal.
"""

from __future__ import annotations

import asyncio
import logging
import os
import shutil
import signal
import time
from typing import Any, Callable

from ..core import states
from ..core.config import Config
from ..core.errors import PortInUse, ProcessExists, ProcessNotFound, TsmError, UsageError
from .capture import Capture
from .launch import Launcher
from ..core import marker
from .proctree import decode
from .stopping import Stopper
from .tracking import Tracker
from .managed import Managed, Run
from ..core.paths import Home, check_own_dir, write_json_atomic, write_text_nofollow
from .ports import first_free, holder, is_free, listening, tree_pids
from .stackorder import stack_members
from ..core.spec import LaunchSpec, final_name

log = logging.getLogger("tsm.daemon")

EXP_BACKOFF_CAP = 15.0


class Supervisor(Launcher):
    """The table of managed processes and every action on them.

    ``on_event(managed, event, **fields)`` is called for every lifecycle event (the daemon writes
    them to the history); it must not block.
    """

    def __init__(self, home: Home, config: Config, *, on_event: Callable[..., None],
                 tree_rss: Callable[[int], int | None], clock: Callable[[], float] = time.time):
        self.home = home
        self.tree_rss = tree_rss
        self.config = config
        self.on_event = on_event
        self.clock = clock
        self.procs: dict[str, Managed] = {}
        self.by_pid: dict[int, tuple[Managed, Run]] = {}
        self.loop = asyncio.get_running_loop()
        self.next_id = self._load_next_id()
        self.problems: list[str] = []  # home-level problems (corrupt metadata, ...)
        self.children: dict[int, Callable[[int], None]] = {}  # other children (hooks): pid -> on_exit(status)
        self.capture = Capture(self.loop, on_event=on_event, save_meta=self.save_meta)
        self.tracker = Tracker(str(home.root))
        self.stopper = Stopper(self)

    # ------------------------------------------------------------------ ids, lookup, persistence

    def _load_next_id(self) -> int:
        try:
            n = int(self.home.next_id_file.read_text().strip())
        except (OSError, ValueError):
            n = 0
        return n

    def _take_id(self) -> int:
        used = {m.tsm_id for m in self.procs.values()}
        n = self.next_id
        while n in used:
            n += 1
        self.next_id = n + 1
        write_json_atomic(self.home.next_id_file, self.next_id)
        return n

    def resolve(self, target: Any) -> list[Managed]:
        """The processes a target names: ``all``, a tsm_id, a name, ``stack:NAME``, or a base name
        (``--name`` without the port) that exactly one process has. Raises ProcessNotFound
        (listing the candidates when a base name is shared)."""
        if target is None or target == "":
            raise UsageError("a target is needed: a name, a tsm_id or 'all'")
        t = str(target)
        if t == "all":
            return sorted(self.procs.values(), key=lambda m: m.tsm_id)
        if t in self.procs:
            return [self.procs[t]]
        if t.startswith("stack:"):
            return stack_members(self.procs.values(), t[len("stack:"):])
        if t.isdigit():
            for m in self.procs.values():
                if m.tsm_id == int(t):
                    return [m]
            raise ProcessNotFound(f"no process with tsm_id {t}", target=t)
        # the base name (`redis` for redis-6390) when exactly one process has it
        same = sorted((m for m in self.procs.values() if m.spec.name == t), key=lambda m: m.tsm_id)
        if len(same) == 1:
            return same
        if same:
            names = ", ".join(m.name for m in same)
            raise ProcessNotFound(f"{t!r} is the base name of {len(same)} processes: {names}; name one", target=t)
        raise ProcessNotFound(f"no process named {t!r}", target=t)

    def save_meta(self, m: Managed) -> None:
        try:
            write_json_atomic(m.dir / "meta.json", m.meta())
            pidfile = m.dir / f"{m.name}.pid"
            if m.pid:
                write_text_nofollow(pidfile, f"{m.pid}\n")
            else:
                pidfile.unlink(missing_ok=True)
            m.problems.pop("meta", None)
        except OSError as exc:
            m.problems["meta"] = f"cannot write meta.json: {exc.strerror or exc}"
            log.warning("%s: %s", m.name, m.problems["meta"])

    def set_status(self, m: Managed, new: str, event: str | None = None, **fields: Any) -> None:
        """The one place a status changes: check the transition, persist, record the event."""
        old = m.status
        m.status = states.check(old, new)
        self.save_meta(m)
        if event:
            self.on_event(m, event, **fields)

    # ------------------------------------------------------------------ create / start

    def _check_port(self, port: int) -> None:
        if is_free(port):
            return
        pid, cmd = holder(port)
        owner = self.owner_of(pid) if pid else None
        if owner is not None:
            msg = f"port {port} is in use by {owner.name} (TSM ID {owner.tsm_id}, PID {pid}: {cmd})"
        elif pid:
            msg = f"port {port} is in use by PID {pid}: {cmd}"
        else:
            msg = f"port {port} is in use"
        raise PortInUse(msg, port=port, pid=pid, command=cmd)

    def owner_of(self, pid: int | None) -> Managed | None:
        """The managed process whose tree contains ``pid``."""
        if not pid:
            return None
        env = marker.environ_marker(pid)
        if env and env.get("TSM_HOME") == str(self.home.root) and marker.uid_of(pid) == os.getuid():
            for m in self.procs.values():  # marked: found even if it left the tree (setsid)
                if str(m.tsm_id) == env.get("TSM_ID"):
                    return m
        for m in self.procs.values():
            if m.pid and pid in tree_pids(m.pid):
                return m
        return None

    async def create(self, spec: LaunchSpec, env: dict[str, str], *, prefer_port: int | None = None) -> Managed:
        """Validate, create the directory and metadata, spawn, wait for the launch window.

        With ``P+``, ``prefer_port`` (the port of the process this one replaces) is taken when it
        is free and at least P."""
        port = spec.port  # build_spec already took PORT from the env file or -e
        if port is not None and spec.port_search:
            usable = prefer_port is not None and prefer_port >= port and is_free(prefer_port)
            found = prefer_port if usable else first_free(port)
            if found is None:
                raise PortInUse(f"no free port at or above {port}", port=port)
            port = found
        name = final_name(spec.name or "proc", port)
        existing = self.procs.get(name)
        if existing is not None and existing.status not in (states.STOPPED, states.ERRORED):
            raise ProcessExists(
                f"process {name!r} already exists ({existing.status}, TSM ID {existing.tsm_id}): "
                f"use `tsm restart {name}`, or another --name",
                name=name,
            )
        if port is not None:
            self._check_port(port)
        if spec.wait_port and port is None:
            raise UsageError("--wait-port needs a port: give --port, PORT in the env, or a port in the command")
        if existing is not None:
            # re-running start for a stopped or errored name replaces its definition (as PM2 does)
            m = existing
            async with m.busy:
                write_json_atomic(m.dir / "spec.json", spec.to_dict())
                write_json_atomic(m.dir / "env.json", env, mode=0o600)
                m.spec, m.env, m.port = spec, env, port
                m.interpreter = spec.interpreter
                m.consecutive_unstable = m.consecutive_crashes = 0
                await self._launch(m, event="start")
            return m
        directory = self.home.process_dir(name)
        tsm_id = self._take_id()
        try:
            directory.mkdir(mode=0o700, exist_ok=True)
            check_own_dir(directory, "process directory")  # never a symlink planted there
            write_json_atomic(directory / "env.json", env, mode=0o600)
            write_json_atomic(directory / "spec.json", spec.to_dict())
            m = Managed(tsm_id, name, spec, env, directory, self.config)
        except (OSError, UsageError) as exc:
            if not os.path.islink(directory):
                shutil.rmtree(directory, ignore_errors=True)
            if isinstance(exc, UsageError):
                raise
            raise TsmError(f"cannot create {directory}: {exc}") from None
        m.port = port
        self.procs[name] = m
        try:
            async with m.busy:
                await self._launch(m, event="start")
        except UsageError:
            # the command could not even be executed: leave nothing behind
            self.procs.pop(name, None)
            for w in m.writers.values():
                w.close()
            shutil.rmtree(directory, ignore_errors=True)
            raise
        return m

    def reap(self) -> None:
        """SIGCHLD: collect every exited child (and orphaned grandchild) without blocking."""
        while True:
            try:
                pid, status = os.waitpid(-1, os.WNOHANG)
            except ChildProcessError:
                return
            if pid == 0:
                return
            entry = self.by_pid.pop(pid, None)
            if entry is None:
                done = self.children.pop(pid, None)
                if done is not None:
                    done(status)
                continue
            m, run = entry
            run.popen.returncode = os.waitstatus_to_exitcode(status)
            if not run.exited.done():
                run.exited.set_result(status)
            self._on_exit(m, run, status)

    def _on_exit(self, m: Managed, run: Run, status: int) -> None:
        self.capture.drain(m, run)
        code, sig = decode(status)
        # clean tree: nothing of a finished run outlives its leader, not even what left its group
        # (a run being stopped is swept by its stop, with the others of its batch: one scan)
        if not run.stopping:
            self.tracker.signal_run(run.pid, run.token, signal.SIGKILL, fresh=True)
        self.drop_cgroup(run.token)
        if m.run is not run:
            return
        m.exit_code, m.exit_signal = code, sig
        if m.status == states.STOPPING:
            return  # stop() finishes the transition
        now = self.clock()
        uptime = now - run.started
        self.on_event(m, "exit", pid=run.pid, exit_code=code, signal=sig, reason=f"uptime {uptime:.3f}s")
        if m.status == states.LAUNCHING and run.launch_waiting:
            return  # the start request waiting on this run reports the failure itself
        self._after_crash(m, uptime, pid=run.pid, exit_code=code, signal=sig)

    def drop_cgroup(self, token: str | None, tries: int = 100) -> None:
        """Remove the ended run's cgroup once its last (SIGKILLed) member is gone: retried a few
        times over about 5 s, never a periodic scan."""
        if token and not self.tracker.cgroups.remove(token) and tries > 0:
            self.loop.call_later(0.05, self.drop_cgroup, token, tries - 1)

    def _after_crash(self, m: Managed, uptime: float, **exit_fields: Any) -> None:
        """Apply the restart policy to an exit nobody asked for; ``exit_fields`` go on its event."""
        spec = m.spec
        if not spec.autorestart:
            self.set_status(m, states.STOPPED, "stop", reason="exited, autorestart off", **exit_fields)
            return
        if uptime < spec.min_uptime:
            m.unstable_restarts += 1
            m.consecutive_unstable += 1
        else:
            m.consecutive_unstable = 0
        if uptime >= self.config.stable_after:  # a stable run: the backoff starts over
            m.consecutive_crashes = 0
        m.consecutive_crashes += 1
        if m.consecutive_unstable > spec.max_restarts:
            self.set_status(
                m, states.ERRORED, "errored",
                reason=f"{m.consecutive_unstable} unstable restarts in a row (max_restarts {spec.max_restarts})",
                **exit_fields,
            )
            return
        delay = spec.restart_delay
        if spec.exp_backoff:
            delay = min(spec.exp_backoff * (1.5 ** (m.consecutive_crashes - 1)), EXP_BACKOFF_CAP)
        self.set_status(m, states.WAITING, "crash", reason=f"restart in {delay:.3f}s", **exit_fields)
        m.restart_timer = self.loop.call_later(delay, self._auto_restart, m)

    def _auto_restart(self, m: Managed) -> None:
        m.restart_timer = None
        if m.status != states.WAITING:
            return
        m.restarts += 1

        async def go() -> None:
            async with m.busy:
                if m.status != states.WAITING:
                    return
                try:
                    await self._launch(m, event="restart", wait=False)
                except TsmError as exc:
                    log.warning("%s: restart failed: %s", m.name, exc)

        self.loop.create_task(go())

    # ------------------------------------------------------------------ stop / restart / delete

    async def stop(self, m: Managed, *, final: str = states.STOPPED, event: str = "stop", reason: str | None = None) -> None:
        """Signal the whole group, wait ``kill_timeout``, SIGKILL what is left; no zombies. Stops
        begun in the same turn of the loop are signalled and watched together (:mod:`.stopping`)."""
        if m.restart_timer:
            m.restart_timer.cancel()
            m.restart_timer = None
        run = m.run
        if m.status not in states.ALIVE or run is None or run.exited.done():
            if m.status != final and m.status is not None:
                if m.status in (states.WAITING, states.ERRORED, states.LAUNCHING, states.ONLINE):
                    self.set_status(m, states.STOPPED, event, reason=reason)
            return
        run.cancel_launch.set()
        # in memory at once (an exit from now on is this stop's, never a crash); on disk once
        # the batch's signals are out
        m.status = states.check(m.status, states.STOPPING)
        await self.stopper.stop(m, run, final=final, event=event, reason=reason)

    async def restart(self, m: Managed) -> None:
        async with m.busy:
            if m.status in states.ALIVE:
                await self.stop(m, reason="restart")
            m.restarts += 1
            m.consecutive_unstable = m.consecutive_crashes = 0
            await self._launch(m, event="restart")

    async def start_existing(self, m: Managed) -> None:
        async with m.busy:
            if m.status in (states.ONLINE, states.LAUNCHING):
                return
            m.consecutive_unstable = m.consecutive_crashes = 0
            await self._launch(m, event="start")

    @staticmethod
    def _cancel_launch(m: Managed) -> None:
        """A stop or delete acts at once: a start waiting out its launch (``--wait-port``) holds
        the process's lock; tell it to give up so the lock comes free now, not in 60 s."""
        if m.run is not None and m.status == states.LAUNCHING:
            m.run.cancel_launch.set()

    async def stop_one(self, m: Managed) -> None:
        self._cancel_launch(m)
        async with m.busy:
            await self.stop(m)

    async def delete(self, m: Managed) -> None:
        self._cancel_launch(m)
        async with m.busy:
            await self.stop(m)
            self.procs.pop(m.name, None)
            self.capture.forget(m)
            for w in m.writers.values():
                w.close()
            shutil.rmtree(m.dir, ignore_errors=True)
            self.on_event(m, "delete")

    async def memory_check(self) -> None:
        """Restart processes whose tree RSS exceeds ``max_memory`` (called every second)."""
        for m in list(self.procs.values()):
            if m.spec.max_memory and m.status == states.ONLINE and m.pid:
                rss = self.tree_rss(m.pid)
                if rss is not None and rss > m.spec.max_memory:
                    self.on_event(m, "memory-limit", pid=m.pid, reason=f"rss {rss} > max_memory {m.spec.max_memory}")
                    self.loop.create_task(self.restart(m))

    def refresh_ports(self, m: Managed) -> list[str]:
        """Record the ports the tree really listens on; return mismatch notes."""
        notes = []
        if m.pid:
            ports = listening(tree_pids(m.pid))
            if ports != m.listen_ports:
                m.listen_ports = ports
                self.save_meta(m)
            if m.port is not None and ports and m.port not in ports:
                notes.append(f"{m.name}: declared port {m.port}, listening on {', '.join(map(str, ports))}")
        return notes


