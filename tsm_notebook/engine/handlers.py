"""The daemon's requests: one handler per command, each documenting its arguments and reply.

A handler takes the :class:`~tsm_notebook.engine.daemon.Daemon` and the request's ``args`` and
returns a JSON-able result or raises a :class:`~tsm_notebook.core.errors.TsmError`, which
:meth:`Daemon.dispatch` turns into an error reply.
"""

from __future__ import annotations

import asyncio
import functools
import os
import time
from typing import TYPE_CHECKING, Any, Awaitable, Callable

from ..core import states
import psutil

from ..core.errors import ProtocolError, TsmError, UsageError
from ..core.ondisk import env_map, port as port_check
from ..core.spec import LaunchSpec
from .dumpfile import read_dump, write_dump
from .stackorder import in_dependency_order, in_reverse_dependency_order

if TYPE_CHECKING:
    from .daemon import Daemon

Handler = Callable[["Daemon", dict[str, Any]], Awaitable[Any]]
COMMANDS: dict[str, Handler] = {}


def command(name: str) -> Callable[[Handler], Handler]:
    def register(fn: Handler) -> Handler:
        COMMANDS[name] = fn
        return fn

    return register


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
    """args: {spec: LaunchSpec dict, env: {base environment}, smart: bool} -> listing row.

    Without ``smart`` a running process of the same name raises ProcessExists. With it (what
    ``tsm start`` and ``%tsm start`` send) a re-run is safe: the same spec as a running process
    returns that process (``action: "unchanged"``); a changed spec, or a stopped or errored
    process, is (re)started with the new spec, on the port it had when ``P+`` would search
    (``action: "restarted with the new spec"``, ``replaced``: the old name).
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
    env = env_map(env, "env", "start request")
    from .triggers import check_spec as check_triggers

    check_triggers(spec)  # cron expressions in full (the client checks only their shape)
    if not args.get("smart"):
        return d.row(await d.sup.create(spec, env))
    old = _replaced(d, spec)
    if old is None:
        return {**d.row(await d.sup.create(spec, env)), "action": "started"}
    if old.spec == spec and old.status in (states.ONLINE, states.LAUNCHING):
        return {**d.row(old), "action": "unchanged"}
    action = "restarted" if old.status in states.ALIVE else "started"
    if old.spec != spec:
        action += " with the new spec"
    async with old.busy:
        await d.sup.stop(old, reason="replaced by a new start")
    m = await d.sup.create(spec, env, prefer_port=old.port)
    return {**d.row(m), "action": action, "replaced": old.name}


def _replaced(d: Daemon, spec: LaunchSpec) -> Any:
    """The process a re-run of ``start`` with ``spec`` stands for (PM2's "smart start"), or None.

    With a fixed port (or none) it is the process of the same final name; with ``P+`` it is one
    started with the same base name and ``P+``, preferably one whose spec is the same and runs.
    """
    from ..core.spec import final_name

    if not spec.port_search:
        return d.sup.procs.get(final_name(spec.name or "proc", spec.port))
    same = [m for m in d.sup.procs.values()
            if m.spec.name == spec.name and m.spec.port_search and m.spec.port == spec.port]
    same.sort(key=lambda m: (not (m.spec == spec and m.status in states.RUNNING), m.tsm_id))
    return same[0] if same else None


@command("start_existing")
async def cmd_start_existing(d: Daemon, args: dict) -> list:
    """args: {target} -> rows. Starts stopped/errored processes again with their saved spec; a
    row of one that was already running has ``action: "unchanged"``."""
    ms = d.sup.resolve(args.get("target"))
    rows = []
    for m in ms:
        running = m.status in (states.ONLINE, states.LAUNCHING)
        await d.sup.start_existing(m)
        rows.append({**d.row(m), "action": "unchanged"} if running else d.row(m))
    return rows


@command("stop")
async def cmd_stop(d: Daemon, args: dict) -> list:
    """args: {target} -> rows after stopping (group signalled, SIGKILL after kill_timeout); a
    stack's apps stop after the apps that depend on them."""
    ms = d.sup.resolve(args.get("target"))
    results = await in_reverse_dependency_order([(m.spec, functools.partial(d.sup.stop_one, m)) for m in ms])
    for r in results:
        if isinstance(r, BaseException):
            raise r
    return [d.row(m) for m in ms]


@command("restart")
async def cmd_restart(d: Daemon, args: dict) -> list:
    """args: {target} -> rows after restarting (stop if alive, start, wait for online); a stack's
    apps start again after those they depend on are ready."""
    ms = d.sup.resolve(args.get("target"))

    def restarting(m: Any) -> Callable[[], Awaitable[Any]]:
        async def go() -> Any:
            await d.sup.restart(m)
            return m

        return go

    results = await in_dependency_order([(m.spec, restarting(m)) for m in ms])
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
    """args: {all: bool, fields: [str] (null: every field)} -> rows sorted by tsm_id (stopped
    ones only with all), each with just ``fields`` when given (a field no row has is null)."""
    show_all = bool(args.get("all", True))
    fields = args.get("fields")
    if fields is not None and (not isinstance(fields, list) or not all(isinstance(f, str) for f in fields)):
        raise ProtocolError("argument 'fields' must be a list of field names or null")
    ms = sorted(d.sup.procs.values(), key=lambda m: m.tsm_id)
    logs = fields is None or "out_log" in fields or "err_log" in fields
    rows = [d.row(m, logs) for m in ms if show_all or m.status not in (states.STOPPED,)]
    return rows if fields is None else [{f: r.get(f) for f in fields} for r in rows]


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
        if m.status in states.RUNNING or m.spec.cron  # a cron job between runs is still kept
    ]
    write_dump(d.home, {"version": d.version, "saved": time.time(), "processes": items})
    return {"path": str(d.home.dump_file), "count": len(items)}


@command("resurrect")
async def cmd_resurrect(d: Daemon, args: dict) -> dict:
    """args: {} -> {started: [names], skipped: [names], failed: {name: message}, note: str|None}
    from dump.json, or from its backup (dump.json.bak, the previous save) when it is unreadable."""
    items, note = read_dump(d.home)
    started, skipped, failed = [], [], {}

    async def one(item: Any) -> Any:
        name = item.get("name") if isinstance(item, dict) else None
        m = d.sup.procs.get(name)
        try:
            if m is not None and m.status in states.RUNNING:
                skipped.append(name)
                return m
            spec = LaunchSpec.from_dict(item["spec"])
            spec.name = name
            spec.port = port_check(item.get("port"), "port", "dump.json entry")
            env_map(item.get("env") or {}, "env", "dump.json entry")
            spec.port_search = False
            m = await d.sup.create(spec, item.get("env") or {})
            started.append(m.name)
            return m
        except TsmError as exc:
            failed[str(name)] = exc.message
        except (KeyError, TypeError, ValueError, AttributeError) as exc:
            failed[str(name)] = f"malformed entry: {exc}"

    # launch windows overlap: resurrecting 500 processes costs one window, not 500; a stack's
    # apps still come after the apps they depend on
    entries = []
    for item in items:
        try:
            entry_spec = LaunchSpec.from_dict(item["spec"])
        except (KeyError, TypeError, ValueError, AttributeError, UsageError):
            entry_spec = LaunchSpec(**{f: None for f in LaunchSpec.FIELDS})  # one() reports it
        entries.append((entry_spec, (lambda item=item: one(item))))
    await in_dependency_order(entries)
    order = {item.get("name"): i for i, item in enumerate(items) if isinstance(item, dict)}
    started.sort(key=lambda n: order.get(n, 0))
    skipped.sort(key=lambda n: order.get(n, 0))
    out = {"started": started, "skipped": skipped, "failed": failed}
    if note:
        out["note"] = note  # read from the backup
    return out


@command("ready")
async def cmd_ready(d: Daemon, args: dict) -> list:
    """args: {target, reason} -> names. Records a ``ready`` event: a stack's bring-up found the
    process ready for its dependants (its port accepts, its health check passed, ...)."""
    reason = _arg(args, "reason", str)
    ms = d.sup.resolve(args.get("target"))
    for m in ms:
        d.event(m, "ready", pid=m.pid, reason=reason)
    return [m.name for m in ms]


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
    live = {m.run.token for m in sup.procs.values() if m.pid and m.run and m.run.token}
    for pid, (tid, token) in sorted(sup.tracker.scan(fresh=True).items()):
        if token not in live:  # carries the home's marker, but no managed run owns it
            found.append(f"orphan: pid {pid} carries this home's marker (TSM ID {tid}) but no managed "
                         "process owns it (`tsm doctor --fix` stops it)")
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


@command("doctor")
async def cmd_doctor(d: Daemon, args: dict) -> dict:
    """args: {fix: bool} -> the report of :func:`tsm_notebook.core.doctor.diagnose` (ports and
    their holders, orphans, stale and quarantined state, home checks) plus ``problems``. With fix,
    orphans are stopped (marker checked before each signal) and stale state removed. ``cgroups``
    says whether runs get their own cgroup (the path) or why not."""
    from ..core import doctor

    sup = d.sup
    runs = {m.tsm_id: (m.name, m.run.token if m.pid and m.run else None) for m in sup.procs.values()}
    fix = bool(args.get("fix", False))
    loop = asyncio.get_running_loop()
    report = await loop.run_in_executor(
        None, lambda: doctor.diagnose(d.home, runs=runs, daemon_pid=os.getpid(), fix=fix))
    report["problems"] = list(sup.problems)
    report["cgroups"] = sup.tracker.cgroups.describe()
    return report


# ---------------------------------------------------------------------- reads for remote front ends
# Everything a front end shows is also a request, so a client on another machine (through `tsm
# bridge`) needs no access to this home's files. Log lines travel as {stream, time, raw}: ``raw`` is
# the stored bytes one code point per byte (latin-1), so any bytes arrive exactly.

FOLLOW_IDLE = 60.0  # seconds: a follower nobody polled for this long is closed
FOLLOW_BATCH = 5000  # lines per follow_poll reply at most
_followers: dict[str, list] = {}  # token -> [follower, last poll (monotonic)]


def _wire_lines(lines: list) -> list:
    return [{"stream": ln.stream, "time": ln.time, "raw": ln.raw.decode("latin-1")} for ln in lines]


def _log_args(args: dict) -> tuple:
    from ..core.report import since_epoch

    stream = _arg(args, "stream", str, "both")
    lines = args.get("lines", 50)
    if lines is not None and (not isinstance(lines, int) or isinstance(lines, bool) or lines < 0):
        raise ProtocolError("argument 'lines' must be a whole number >= 0 or null")
    return stream, lines, since_epoch(args.get("since"))


@command("logs")
async def cmd_logs(d: Daemon, args: dict) -> list:
    """args: {target, stream: out|err|both, lines (per stream, null: all), since} ->
    [{name, lines: [{stream, time, raw}]}], one per process, as ``tsm logs`` shows them."""
    from ..core.logread import tail

    stream, lines, since = _log_args(args)
    ms = d.sup.resolve(args.get("target"))
    loop = asyncio.get_running_loop()
    out = []
    for m in ms:
        got = await loop.run_in_executor(None, lambda m=m: tail(m.dir, stream=stream, lines=lines, since=since))
        out.append({"name": m.name, "lines": _wire_lines(got)})
    return out


def _expire_followers(idle: float = FOLLOW_IDLE) -> None:
    now = time.monotonic()
    for token, (f, last) in list(_followers.items()):
        if now - last >= idle:
            f.close()
            del _followers[token]


def close_followers() -> None:
    """Close every log follower (the daemon is stopping): no file of a process stays open."""
    _expire_followers(idle=float("-inf"))


@command("follow_open")
async def cmd_follow_open(d: Daemon, args: dict) -> dict:
    """args: {target (one process), stream, lines, since} -> {token, name, lines}: the tail, then
    ``follow_poll`` with the token gives what follows, with no line missed or repeated between."""
    from ..core.logfollow import follow

    stream, lines, since = _log_args(args)
    ms = d.sup.resolve(args.get("target"))
    if len(ms) != 1:
        raise UsageError("logs --follow follows one process at a time")
    _expire_followers()
    f = follow(ms[0].dir, stream=stream, lines=lines, since=since)
    token = os.urandom(8).hex()
    _followers[token] = [f, time.monotonic()]
    return {"token": token, "name": ms[0].name, "lines": _wire_lines(f.ready(FOLLOW_BATCH))}


@command("follow_poll")
async def cmd_follow_poll(d: Daemon, args: dict) -> dict:
    """args: {token, wait: seconds (at most 5)} -> {lines}: new lines, waiting up to ``wait`` for one.
    An unknown or expired token is a UsageError (open again)."""
    token = _arg(args, "token", str)
    wait = args.get("wait", 1.0)
    if not isinstance(wait, (int, float)) or isinstance(wait, bool):
        raise ProtocolError("argument 'wait' must be a number")
    _expire_followers()  # the followers of clients that went away
    entry = _followers.get(token or "")
    if entry is None:
        raise UsageError("this log follower has expired: follow again")
    deadline = time.monotonic() + min(max(float(wait), 0.0), 5.0)
    while True:
        entry[1] = time.monotonic()
        got = entry[0].ready(FOLLOW_BATCH)
        if got or time.monotonic() >= deadline:
            return {"lines": _wire_lines(got)}
        await asyncio.sleep(0.1)


@command("follow_close")
async def cmd_follow_close(d: Daemon, args: dict) -> bool:
    """args: {token} -> true if a follower was closed."""
    entry = _followers.pop(_arg(args, "token", str) or "", None)
    if entry is not None:
        entry[0].close()
    return entry is not None


async def _history(d: Daemon, read: Callable[[], Any]) -> Any:
    loop = asyncio.get_running_loop()
    await loop.run_in_executor(None, d.store.flush, 5.0)  # what was queued a moment ago is included
    return await loop.run_in_executor(None, read)


@command("events")
async def cmd_events(d: Daemon, args: dict) -> list:
    """args: {target (null: all), since, limit} -> event rows oldest first (``tsm events``)."""
    from ..core import report

    target, since, limit = args.get("target"), args.get("since"), args.get("limit")
    report.since_epoch(since)  # a bad since is a UsageError now, not in a thread
    return await _history(d, lambda: report.events(d.home, target, since, limit=limit))


@command("metrics")
async def cmd_metrics(d: Daemon, args: dict) -> list:
    """args: {name (null: all), since} -> metric samples oldest first."""
    from ..core.history import read_metrics
    from ..core.report import since_epoch

    name, since = _arg(args, "name", str), since_epoch(args.get("since"))
    return await _history(d, lambda: read_metrics(d.home.db_file, name=name, since=since))


@command("report")
async def cmd_report(d: Daemon, args: dict) -> list:
    """args: {since} -> uptime report rows (``tsm report``)."""
    from ..core import report

    since = args.get("since")
    report.since_epoch(since)
    return await _history(d, lambda: report.uptime_report(d.home, since))


@command("start_build")
async def cmd_start_build(d: Daemon, args: dict) -> dict:
    """args: {build: build_spec keywords as typed (``tsm -H HOST start``)} -> listing row.

    The spec is built on this machine: ``cwd`` and ``env_file`` relative to this user's home
    directory, the program found on the daemon's PATH, and the child inherits the daemon's
    environment (the one its ssh session gave it), not the caller's. Raises as ``start``."""
    from .handlers_stack import build_here

    spec, env = build_here(_arg(args, "build", dict), "start_build")
    # then exactly as a local `tsm start`: checked, and a re-run returns or replaces its process
    return await cmd_start(d, {"spec": spec.to_dict(), "env": env, "smart": args.get("smart", True)})
