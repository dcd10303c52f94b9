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

import argparse
import asyncio
import fcntl
import json
import logging
import os
import signal
import sys
import time
from typing import Any, Awaitable, Callable

import psutil

from . import __version__, states
from .config import Config
from .errors import ProtocolError, TsmError, UsageError
from .paths import Home, write_json_atomic
from .protocol import MAX_LINE, parse_request, reply_error, reply_ok
from .sampler import Sampler
from .spec import LaunchSpec
from .store import Store
from .managed import Managed
from .supervisor import Supervisor, group_alive, set_subreaper

log = logging.getLogger("tsm.daemon")

PRUNE_EVERY = 600.0  # seconds: the longest wait between two retention passes

Handler = Callable[["Daemon", dict[str, Any]], Awaitable[Any]]
COMMANDS: dict[str, Handler] = {}


def command(name: str) -> Callable[[Handler], Handler]:
    def register(fn: Handler) -> Handler:
        COMMANDS[name] = fn
        return fn

    return register


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

    # ------------------------------------------------------------------ lifecycle

    async def serve(self) -> None:
        loop = asyncio.get_running_loop()
        self.sup = Supervisor(self.home, self.config, on_event=self.event, tree_rss=self.sampler.tree_rss)
        loop.add_signal_handler(signal.SIGCHLD, self.sup.reap)
        loop.add_signal_handler(signal.SIGTERM, self.stopping.set)
        loop.add_signal_handler(signal.SIGINT, self.stopping.set)
        self.home.socket.unlink(missing_ok=True)
        old = os.umask(0o077)
        try:
            self.server = await asyncio.start_unix_server(self.handle, path=str(self.home.socket), limit=MAX_LINE)
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
        self.sup.reap()  # anything that exited before the handler was installed
        await self.stopping.wait()
        await self.shutdown()

    def recover(self) -> None:
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
        loop = asyncio.get_running_loop()
        for m, pid, ctime in pending:
            loop.create_task(self._resume(m, pid, ctime))

    async def _resume(self, m: Managed, pid: int | None, ctime: float | None) -> None:
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

    async def shutdown(self) -> None:
        """Stop every process (or keep their 'running' marks for `update`), close, remove the socket."""
        for t in self.tasks:
            t.cancel()
        if self.server:
            self.server.close()
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
        self.event(None, "daemon-stop", pid=os.getpid(), reason="update" if self.keep_on_exit else "kill")
        self.store.flush(5.0)
        self.store.close()
        self.home.socket.unlink(missing_ok=True)
        self.home.status_file.unlink(missing_ok=True)

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

    def row(self, m: Managed) -> dict[str, Any]:
        """A listing row: every meta.json field plus live cpu, memory and uptime."""
        d = m.meta()
        sample = self.latest.get(m.tsm_id) if m.status == states.ONLINE else None
        d["cpu"] = sample.get("cpu") if sample else None
        d["memory"] = sample.get("rss") if sample else None
        d["uptime"] = (time.time() - m.start_time) if m.start_time and m.status == states.ONLINE else None
        d["out_log"] = str(m.dir / "current.out")
        d["err_log"] = str(m.dir / "current.err")
        return d


def _arg(args: dict, key: str, kind: type, default: Any = None) -> Any:
    value = args.get(key, default)
    if value is not None and not isinstance(value, kind):
        raise ProtocolError(f"argument {key!r} must be {kind.__name__}")
    return value


# ---------------------------------------------------------------------- commands


@command("ping")
async def cmd_ping(d: Daemon, args: dict) -> dict:
    """args: {} -> {pid, version, started, home, processes: count, running: [names meant to run]}"""
    return {"pid": os.getpid(), "version": d.version, "started": d.started, "home": str(d.home.root),
            "processes": len(d.sup.procs),
            "running": sorted(m.name for m in d.sup.procs.values() if m.status in states.RUNNING)}


@command("start")
async def cmd_start(d: Daemon, args: dict) -> dict:
    """args: {spec: LaunchSpec dict, env: {base environment}} -> listing row of the new process.

    Raises ProcessExists, PortInUse, UsageError (command cannot run), StartFailed (died at once).
    """
    spec_d = _arg(args, "spec", dict)
    env = _arg(args, "env", dict, {})
    if spec_d is None:
        raise ProtocolError("start needs a 'spec'")
    try:
        spec = LaunchSpec.from_dict(spec_d)
    except (TypeError, ValueError, KeyError) as exc:
        raise ProtocolError(f"malformed spec: {exc}") from None
    if not all(isinstance(k, str) and isinstance(v, str) for k, v in env.items()):
        raise ProtocolError("env must map strings to strings")
    m = await d.sup.create(spec, env)
    return d.row(m)


@command("start_existing")
async def cmd_start_existing(d: Daemon, args: dict) -> list:
    """args: {target} -> rows. Starts stopped/errored processes again with their saved spec."""
    ms = d.sup.resolve(args.get("target"))
    for m in ms:
        await d.sup.start_existing(m)
    return [d.row(m) for m in ms]


@command("stop")
async def cmd_stop(d: Daemon, args: dict) -> list:
    """args: {target} -> rows after stopping (group signalled, SIGKILL after kill_timeout)."""
    ms = d.sup.resolve(args.get("target"))
    await asyncio.gather(*(d.sup.stop_one(m) for m in ms))
    return [d.row(m) for m in ms]


@command("restart")
async def cmd_restart(d: Daemon, args: dict) -> list:
    """args: {target} -> rows after restarting (stop if alive, start, wait for online)."""
    ms = d.sup.resolve(args.get("target"))
    results = await asyncio.gather(*(d.sup.restart(m) for m in ms), return_exceptions=True)
    for r in results:
        if isinstance(r, BaseException):
            raise r
    return [d.row(m) for m in ms]


@command("delete")
async def cmd_delete(d: Daemon, args: dict) -> list:
    """args: {target} -> names deleted (stopped, directory removed; ids are never reused)."""
    ms = d.sup.resolve(args.get("target"))
    await asyncio.gather(*(d.sup.delete(m) for m in ms))
    return [m.name for m in ms]


@command("ls")
async def cmd_ls(d: Daemon, args: dict) -> list:
    """args: {all: bool} -> rows sorted by tsm_id (stopped and errored ones only with all)."""
    show_all = bool(args.get("all", True))
    ms = sorted(d.sup.procs.values(), key=lambda m: m.tsm_id)
    return [d.row(m) for m in ms if show_all or m.status not in (states.STOPPED,)]


@command("describe")
async def cmd_describe(d: Daemon, args: dict) -> list:
    """args: {target} -> rows with the spec, env keys (not values), log paths and problems."""
    out = []
    for m in d.sup.resolve(args.get("target")):
        r = d.row(m)
        r["spec"] = m.spec.to_dict()
        r["env_keys"] = sorted(m.spec.env)
        r["dir"] = str(m.dir)
        r["log_problems"] = {s: w.problem for s, w in m.writers.items() if w.problem}
        out.append(r)
    return out


@command("kill")
async def cmd_kill(d: Daemon, args: dict) -> dict:
    """args: {keep: bool} -> {pid}. Stops every process, then the daemon exits. With keep (used by
    `tsm update`) the processes that were running are marked to come back with the next daemon."""
    d.keep_on_exit = bool(args.get("keep", False))
    asyncio.get_running_loop().call_soon(d.stopping.set)
    return {"pid": os.getpid()}


@command("dump")
async def cmd_dump(d: Daemon, args: dict) -> dict:
    """args: {} -> {path, count}. Writes dump.json with the spec and environment of every running process."""
    items = [
        {"name": m.name, "tsm_id": m.tsm_id, "spec": m.spec.to_dict(), "env": m.env, "port": m.port}
        for m in sorted(d.sup.procs.values(), key=lambda m: m.tsm_id)
        if m.status in states.RUNNING
    ]
    write_json_atomic(d.home.dump_file, {"version": d.version, "saved": time.time(), "processes": items}, mode=0o600)
    return {"path": str(d.home.dump_file), "count": len(items)}


@command("resurrect")
async def cmd_resurrect(d: Daemon, args: dict) -> dict:
    """args: {} -> {started: [names], skipped: [names], failed: {name: message}} from dump.json."""
    try:
        dump = json.loads(d.home.dump_file.read_text())
        items = dump["processes"]
    except FileNotFoundError:
        raise UsageError(f"nothing to resurrect: {d.home.dump_file} does not exist (run `tsm save` first)") from None
    except (OSError, ValueError, KeyError) as exc:
        raise UsageError(f"cannot read {d.home.dump_file}: {exc}") from None
    started, skipped, failed = [], [], {}

    async def one(item: Any) -> None:
        name = item.get("name") if isinstance(item, dict) else None
        m = d.sup.procs.get(name)
        try:
            if m is not None and m.status in states.RUNNING:
                skipped.append(name)
                return
            spec = LaunchSpec.from_dict(item["spec"])
            spec.name = name
            spec.port = item.get("port")
            spec.port_search = False
            m = await d.sup.create(spec, item.get("env") or {})
            started.append(m.name)
        except TsmError as exc:
            failed[str(name)] = exc.message
        except (KeyError, TypeError, ValueError, AttributeError) as exc:
            failed[str(name)] = f"malformed entry: {exc}"

    # launch windows overlap: resurrecting 500 processes costs one window, not 500
    await asyncio.gather(*(one(item) for item in items))
    order = {item.get("name"): i for i, item in enumerate(items) if isinstance(item, dict)}
    started.sort(key=lambda n: order.get(n, 0))
    skipped.sort(key=lambda n: order.get(n, 0))
    return {"started": started, "skipped": skipped, "failed": failed}


@command("patrol")
async def cmd_patrol(d: Daemon, args: dict) -> dict:
    """args: {} -> {found: [str], fixed: [str]}: dead pids, stray directories, port mismatches."""
    sup = d.sup
    found, fixed = list(sup.problems), []
    sup.reap()
    for m in list(sup.procs.values()):
        if m.status in states.ALIVE and m.run and not psutil.pid_exists(m.run.pid):
            found.append(f"{m.name}: pid {m.run.pid} is gone but status was {m.status}")
        found.extend(sup.refresh_ports(m))
        for key, problem in m.problems.items():
            found.append(f"{m.name}: {key}: {problem}")
        if not (m.dir / "meta.json").exists():
            found.append(f"{m.name}: meta.json was missing")
            sup.save_meta(m)
            fixed.append(f"{m.name}: meta.json rewritten")
    known = {m.dir.name for m in sup.procs.values()}
    for p in sorted(d.home.processes.iterdir()) if d.home.processes.exists() else []:
        if p.name in known or p.name.startswith("."):
            continue
        if p.is_dir() and not (p / "meta.json").exists():
            found.append(f"{p.name}: directory without metadata")
            if not any(p.iterdir()):
                p.rmdir()
                fixed.append(f"{p.name}: empty directory removed")
        elif not p.is_dir():
            found.append(f"{p.name}: stray file in the processes directory")
    return {"found": found, "fixed": fixed}


def _each_writer(d: Daemon, target: Any, action: Callable[[Any], Any]) -> list:
    ms = d.sup.resolve(target)
    for m in ms:
        for w in m.writers.values():
            action(w)
    return [m.name for m in ms]


@command("flush")
async def cmd_flush(d: Daemon, args: dict) -> list:
    """args: {target (default all)} -> names whose logs were emptied."""
    return _each_writer(d, args.get("target") or "all", lambda w: w.flush_logs())


@command("rotate")
async def cmd_rotate(d: Daemon, args: dict) -> list:
    """args: {target} -> names whose logs were rotated (at the next line boundary if mid-line)."""
    return _each_writer(d, args.get("target"), lambda w: w.rotate())


@command("history_flush")
async def cmd_history_flush(d: Daemon, args: dict) -> bool:
    """args: {} -> true once every event and metric queued so far is in the database."""
    return await asyncio.get_running_loop().run_in_executor(None, d.store.flush, 5.0)


# ---------------------------------------------------------------------- helpers and main


def _same_process(pid: int, ctime: float | None) -> bool:
    try:
        p = psutil.Process(pid)
        return ctime is None or abs(p.create_time() - ctime) < 0.01
    except psutil.Error:
        return False


def _lock(home: Home) -> int | None:
    fd = os.open(home.lock_file, os.O_RDWR | os.O_CREAT, 0o600)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        os.close(fd)
        return None
    return fd


def main(argv: list[str] | None = None) -> int:
    """Entry point of the daemon process (``python -m tsm_notebook.daemon``)."""
    ap = argparse.ArgumentParser(prog="tsm-daemon")
    ap.add_argument("--home", required=True)
    ap.add_argument("--foreground", action="store_true", help="do not fork (for debugging)")
    a = ap.parse_args(argv)
    home = Home.resolve(a.home)
    home.ensure()
    if not a.foreground:
        if os.fork():
            os._exit(0)  # the caller reaps this intermediate at once; the daemon is orphaned to init
        os.setsid()
    lock = _lock(home)
    if lock is None:
        try:
            pid = json.loads(home.status_file.read_text()).get("pid")
        except (OSError, ValueError):
            pid = "?"
        print(f"tsm: a daemon is already running for {home.root} (pid {pid})", file=sys.stderr)
        return 3
    os.chdir(home.root)
    logging.basicConfig(
        filename=str(home.daemon_log), level=logging.INFO,
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
    )
    fd = os.open(os.devnull, os.O_RDWR)
    os.dup2(fd, 0)
    logfd = os.open(home.daemon_log, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o600)
    os.dup2(logfd, 1)
    os.dup2(logfd, 2)
    set_subreaper()
    version = os.environ.get("TSM_DAEMON_VERSION", __version__)  # lets tests run a "different" daemon
    log.info("daemon %s starting for %s (pid %d)", version, home.root, os.getpid())
    try:
        asyncio.run(Daemon(home, version=version).serve())
    except Exception:
        log.exception("daemon failed")
        return 1
    finally:
        log.info("daemon exiting")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
