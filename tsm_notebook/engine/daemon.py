"""The supervisor daemon: one per TSM home, the only writer of state.

Started on demand by a client (``python -m tsm_notebook.daemon --home H``): it forks into its own
session, takes an exclusive lock on ``daemon.lock`` (a second daemon for the same home refuses to
start), removes a dead daemon's socket, binds ``daemon.sock`` under umask 077, writes
``daemon.json`` and serves newline-delimited JSON requests. Each command below documents its
request ``args`` and its ``result``.

After a ``kill -9`` of a previous daemon, start-up recovers: every process whose metadata says it
should be running has any survivor of the old daemon stopped (by pid, checked against its
recorded start time) and is started again, exactly once.
"""

from __future__ import annotations

import asyncio
import logging
import logging.handlers
import os
import signal
import time
from typing import Any

from ..core.version import __version__
from ..core import states
from ..core.config import Config
from ..core.errors import DaemonError, ProtocolError, TsmError
from ..core.paths import Home, write_json_atomic
from ..core.protocol import MAX_LINE, parse_request, reply_error, reply_ok
from . import signals
from .handlers import COMMANDS, close_followers
from . import handlers_stack  # noqa: F401  (registers the stack requests: build_spec, ready_probe, log_sizes)
from .peer import peer_allowed
from .managed import Managed
from .recovery import recover
from .sampler import Sampler
from .store import Store
from .supervisor import Supervisor
from .triggers import Triggers

log = logging.getLogger("tsm.daemon")

PRUNE_EVERY = 600.0  # seconds: the longest wait between two retention passes
BACKLOG = 4096  # pending connections (the kernel caps it at net.core.somaxconn); clients also retry


class Daemon:
    """Owns the socket server, the supervisor, the history store and the periodic tasks."""

    def __init__(self, home: Home, *, version: str = __version__):
        self.home = home
        self.version = version
        self.config = Config.load(home.config_file)
        self.started = time.time()
        self.stopping = asyncio.Event()
        self.keep_on_exit = False
        self.store = Store(home.db_file, retention=self.config.history_retention)
        self.sampler = Sampler()
        self.latest: dict[int, dict] = {}  # tsm_id -> newest metric row
        self.sup: Supervisor | None = None
        self.server: asyncio.AbstractServer | None = None
        self.tasks: list[asyncio.Task] = []
        self.triggers: Triggers | None = None  # hooks, file watching, cron schedules
        self.resurrect_at_start = False  # `--resurrect` (the boot unit): start dump.json's list

    # ------------------------------------------------------------------ events

    def event(self, m: Managed | None, event: str, **fields: Any) -> None:
        self.store.event(
            tsm_id=m.tsm_id if m else None,
            name=m.name if m else None,
            event=event,
            pid=fields.get("pid"),
            exit_code=fields.get("exit_code"),
            signal=fields.get("signal"),
            reason=fields.get("reason"),
        )
        if self.triggers is not None:
            self.triggers.on_event(m, event, fields)

    # ------------------------------------------------------------------ lifecycle

    async def serve(self) -> None:
        loop = asyncio.get_running_loop()
        self.sup = Supervisor(self.home, self.config, on_event=self.event, tree_rss=self.sampler.tree_rss)
        self.triggers = Triggers(self)
        loop.add_signal_handler(signal.SIGCHLD, self.sup.reap)
        loop.add_signal_handler(signal.SIGTERM, self.stopping.set)
        loop.add_signal_handler(signal.SIGINT, self.stopping.set)
        signals.install(self, loop)
        self.home.socket.unlink(missing_ok=True)
        old = os.umask(0o077)
        try:
            self.server = await asyncio.start_unix_server(self.handle, path=str(self.home.socket), limit=MAX_LINE,
                                                          backlog=BACKLOG)
        finally:
            os.umask(old)
        os.chmod(self.home.socket, 0o600)
        write_json_atomic(
            self.home.status_file,
            {"pid": os.getpid(), "version": self.version, "protocol": 1, "started": self.started,
             "socket": str(self.home.socket), "home": str(self.home.root)},
        )
        self.event(None, "daemon-start", pid=os.getpid(), reason=f"version {self.version}")
        self.recover()
        self.tasks = [loop.create_task(self._every_second()), loop.create_task(self._sample_loop())]
        self.tasks.append(loop.create_task(self.triggers.run()))
        if self.resurrect_at_start and self.home.dump_file.exists():
            self.tasks.append(loop.create_task(self._resurrect()))
        self.sup.reap()  # anything that exited before the handler was installed
        await self.stopping.wait()
        await self.shutdown()

    async def _resurrect(self) -> None:
        """Start dump.json's list (reads it, never writes it: an empty boot never erases a save)."""
        try:
            r = await COMMANDS["resurrect"](self, {})
            log.info("resurrected at start: %s", r)
        except TsmError as exc:
            log.warning("resurrect at start failed: %s", exc.message)

    def recover(self) -> None:
        """Load every process directory; restart what should be running (after a crash or update)."""
        recover(self)

    async def shutdown(self) -> None:
        """Stop every process (or keep their 'running' marks for `update`), close, remove the socket."""
        for t in self.tasks:
            t.cancel()
        if self.server:
            self.server.close()
        close_followers()
        if self.triggers is not None:
            self.triggers.watch.close()  # no restart for a change while everything stops
        sup = self.sup
        if sup:
            procs = list(sup.procs.values())
            marks = {m.name: m.status for m in procs}
            await asyncio.gather(*(sup.stop_one(m) for m in procs), return_exceptions=True)
            for m in procs:
                if self.keep_on_exit and marks[m.name] in states.RUNNING:
                    m.status = marks[m.name]  # the next daemon brings these back
                    m.run = None
                    sup.save_meta(m)
                for w in m.writers.values():
                    w.close()
        if self.triggers is not None:
            await self.triggers.close()
        if sup:
            await self._drop_cgroups(sup)
        self.event(None, "daemon-stop", pid=os.getpid(), reason="update" if self.keep_on_exit else "kill")
        self.store.flush(5.0)
        self.store.close()
        self.home.socket.unlink(missing_ok=True)
        self.home.status_file.unlink(missing_ok=True)

    async def _drop_cgroups(self, sup) -> None:
        """Leave no empty run cgroup behind (their last members may take a moment to go); at
        ``kill`` also the home's base, when empty. Runs kept for ``update`` keep theirs."""
        cg = sup.tracker.cgroups
        deadline = asyncio.get_running_loop().time() + 2.0
        while cg.sweep() and not self.keep_on_exit and asyncio.get_running_loop().time() < deadline:
            await asyncio.sleep(0.02)
        if cg.base and not self.keep_on_exit:
            try:
                os.rmdir(cg.base)
            except OSError:
                pass  # still populated: the next daemon's recovery finds what is left

    async def _every_second(self) -> None:
        sup = self.sup
        assert sup is not None
        while True:
            await asyncio.sleep(1.0)
            try:
                sup.reap()
                for m in list(sup.procs.values()):
                    sup.capture.tick(m)
                await sup.memory_check()
            except Exception:  # a bug here must not stop supervision
                log.exception("periodic check failed")

    async def _sample_loop(self) -> None:
        sup = self.sup
        assert sup is not None
        # Retention runs on a clock, not a tick count, so a short retention (or a long interval)
        # is still enforced within a quarter of it; never more often than a tick, nor rarer than
        # PRUNE_EVERY. The store deletes in small batches on its own thread: no stall here.
        prune_every = min(PRUNE_EVERY, max(self.config.sample_interval, self.config.history_retention / 4))
        next_prune = time.monotonic()
        while True:
            await asyncio.sleep(self.config.sample_interval)
            try:
                targets = {m.tsm_id: (m.name, m.pid) for m in sup.procs.values() if m.status == states.ONLINE and m.pid}
                rows = self.sampler.sample(targets)
                self.latest = {r["tsm_id"]: r for r in rows}
                if rows:
                    self.store.metrics(rows)
                for m in sup.procs.values():
                    row = self.latest.get(m.tsm_id)
                    if row is not None and row.get("ports") is not None and row["ports"] != m.listen_ports:
                        m.listen_ports = list(row["ports"])
                        sup.save_meta(m)
                if time.monotonic() >= next_prune:
                    self.store.prune()
                    next_prune = time.monotonic() + prune_every
            except Exception:
                log.exception("sampling failed")

    # ------------------------------------------------------------------ requests

    async def handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        refusal = peer_allowed(writer.get_extra_info("socket"))
        if refusal:
            log.warning("connection refused: %s", refusal)
            try:
                writer.write(reply_error(None, DaemonError(refusal), self.version))
                await writer.drain()
                writer.close()
            except Exception:
                pass
            return
        try:
            while True:
                try:
                    line = await reader.readline()
                except (asyncio.LimitOverrunError, ValueError):
                    writer.write(reply_error(None, ProtocolError("request line too long"), self.version))
                    await writer.drain()
                    break
                if not line:
                    break
                if not line.strip():
                    continue
                writer.write(await self.dispatch(line))
                await writer.drain()
        except (ConnectionError, asyncio.IncompleteReadError):
            pass
        except Exception:
            log.exception("connection failed")
        finally:
            try:
                writer.close()
            except Exception:
                pass

    async def dispatch(self, line: bytes) -> bytes:
        """Answer one request line; never raises."""
        rid = None
        try:
            msg = parse_request(line)
            rid = msg.get("id")
            fn = COMMANDS.get(msg["cmd"])
            if fn is None:
                raise ProtocolError(f"unknown command {msg['cmd']!r}")
            return reply_ok(rid, await fn(self, msg.get("args") or {}), self.version)
        except TsmError as exc:
            return reply_error(rid, exc, self.version)
        except Exception as exc:
            log.exception("request failed: %r", line[:200])
            return reply_error(rid, TsmError(f"internal error: {exc.__class__.__name__}: {exc}"), self.version)

    def row(self, m: Managed, logs: bool = True) -> dict[str, Any]:
        """A listing row: every meta.json field plus live cpu, memory and uptime, and the paths of
        the current logs unless ``logs`` is false (a listing that does not show them)."""
        d = m.meta()
        sample = self.latest.get(m.tsm_id) if m.status == states.ONLINE else None
        d["cpu"] = sample.get("cpu") if sample else None
        d["memory"] = sample.get("rss") if sample else None
        d["uptime"] = (time.time() - m.start_time) if m.start_time and m.status == states.ONLINE else None
        if logs:
            d["out_log"] = str(m.dir / "current.out")
            d["err_log"] = str(m.dir / "current.err")
        return d

