"""The ``tsm`` command line: parse, call the daemon through the client, print text.

Exit codes: 0 success, 1 a failed action (unknown process, port in use, daemon error), 2 bad
usage. Errors are one line on stderr. Start-up stays light: no pandas, IPython or ipywidgets.
"""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path
TYPE_CHECKING = False  # typing costs the command line ~8 ms to import; annotations are postponed
if TYPE_CHECKING:
    from typing import Any, Callable

from ..client import commands
from ..core import render
from ..client.client import RESURRECT_TIMEOUT, Client, flush_history
from ..core.errors import TsmError, UsageError
from ..core.paths import Home


def _print_json(data: Any) -> None:
    print(json.dumps(data, indent=2, default=str))


def cmd_start(c: Client, ns) -> int:
    up = commands.start_as_up(ns)  # `tsm start tsm.toml`, as PM2's ecosystem
    if up is not None:
        return cmd_up(c, up)
    rows = commands.start_existing(c, ns)
    if rows is not None:  # `tsm start NAME`: that process again, with its saved spec
        for r in rows:
            print(render.started(r))
        return 0
    spec = commands.spec_from_args(ns)
    row = commands.start(c, spec)
    if row.get("replaced") and row["replaced"] != row["name"]:
        print(f"Stopped: {row['replaced']} (replaced)")
    print(render.started(row))
    return 0


def _each(action: str, verb: str) -> Callable[[Client, Any], int]:
    def run(c: Client, ns) -> int:
        rows = c.call(action, target=ns.target)
        for r in rows:
            name = r["name"] if isinstance(r, dict) else r
            if ns.target not in (name, "all") and not str(ns.target).isdigit():
                print(f"{ns.target}: the only process of that base name is {name}")
            print(f"{verb}: {name} (TSM ID: {r['tsm_id']}, status: {r['status']})" if isinstance(r, dict) else f"{verb}: {r}")
        return 0

    return run


def cmd_ls(c: Client, ns) -> int:
    # the table needs ten fields of each row: asking for those alone keeps thousands of rows quick
    rows = c.call("ls", all=ns.all, **({} if ns.json or ns.group else {"fields": list(render.LS_FIELDS)}))
    if ns.json:
        _print_json(rows)
    elif ns.group:
        from .stackview import ls_grouped

        print(ls_grouped(rows))
    else:
        print(render.ls(rows))
    return 0


def cmd_describe(c: Client, ns) -> int:
    rows = c.call("describe", target=ns.target)
    if ns.json:
        _print_json(rows if ns.target == "all" else rows[0])
    else:
        print("\n\n".join(render.describe(r) for r in rows))
    return 0


def cmd_logs(c: Client, ns) -> int:
    from ..core import logread

    if ns.target == "rotate" and ns.rest:
        for name in c.call("rotate", target=ns.rest):
            print(f"Rotated: {name}")
        return 0
    if ns.rest:
        raise UsageError(f"tsm logs: unexpected argument {ns.rest!r}")
    rows = c.call("describe", target=ns.target)
    stream = "out" if ns.out else "err" if ns.err else "both"
    since = logread.parse_since(ns.since) if ns.since else None
    many = len(rows) > 1 or ns.target == "all"
    if ns.follow:
        # The tail and what follows come from one snapshot: no line missed or shown twice between.
        from ..core.logfollow import follow_many

        colour = _colour(sys.stdout)
        lines = follow_many([(r["name"], Path(r["dir"])) for r in rows], stream=stream, lines=ns.lines,
                            since=since)
        try:
            for name, line in lines:
                _print_line(name, line, ns, labelled=many, colour=colour)
                sys.stdout.flush()
        except KeyboardInterrupt:  # Ctrl-C is how following ends: exit 0, no traceback
            pass
        finally:
            lines.close()  # type: ignore[attr-defined]
        return 0
    colour = _colour(sys.stdout)
    for r in rows:
        for line in logread.tail(Path(r["dir"]), stream=stream, lines=ns.lines, since=since):
            _print_line(r["name"], line, ns, labelled=many, colour=colour)
    sys.stdout.flush()
    return 0


def _colour(stream) -> bool:
    """Colour the names of a mixed stream on a terminal (or with FORCE_COLOR), never with NO_COLOR."""
    import os

    if os.environ.get("NO_COLOR"):
        return False
    return bool(os.environ.get("FORCE_COLOR")) or (hasattr(stream, "isatty") and stream.isatty())


def _print_line(name: str, line, ns, *, labelled: bool, colour: bool = False) -> None:
    """One line: ``[name|]stream | text`` (the name when ``labelled``; ``--plain`` drops colour
    codes from the text, whatever the form); ``--raw`` the bytes as
    stored (timestamp prefix included), nothing added but the newline; ``--json`` one object
    ``{name, stream, time (epoch s or null), text, raw}``: ``raw`` is null unless the bytes are
    not valid UTF-8 (``text`` then has U+FFFD in their place); it then holds them one code point
    per byte (latin-1), so ``raw.encode("latin-1")`` gives them back exactly."""
    text = render.strip_ansi(line.text) if ns.plain else line.text
    if ns.json:
        try:
            line.raw.decode("utf-8")
            raw = None
        except UnicodeDecodeError:
            raw = line.raw.decode("latin-1")
        print(json.dumps({"name": name, "stream": line.stream, "time": line.time,
                          "text": text, "raw": raw}))
    elif ns.raw:
        data = render.strip_ansi(line.raw.decode("utf-8", "surrogateescape")).encode("utf-8", "surrogateescape") \
            if ns.plain else line.raw
        sys.stdout.buffer.write(data + b"\n")
    else:
        label = f"{render.name_label(name, colour)}|{line.stream}" if labelled else line.stream
        print(f"{label} | {text}")


def cmd_flush(c: Client, ns) -> int:
    for name in c.call("flush", target=ns.target):
        print(f"Flushed: {name}")
    return 0


def cmd_ping(c: Client, ns) -> int:
    info = c.call("ping")
    print(f"pong: daemon pid {info['pid']}, version {info['version']}, {info['processes']} processes, home {info['home']}")
    return 0


def cmd_kill(c: Client, ns) -> int:
    pid = c.kill()
    if pid is None and c.stopped_without_daemon:
        print(f"no daemon was running; stopped {len(c.stopped_without_daemon)} processes of this home it had left")
    else:
        print("no daemon was running" if pid is None else f"Daemon stopped (pid {pid}), with every process")
    return 0


def cmd_update(c: Client, ns) -> int:
    r = commands.update(c)
    print(f"Daemon restarted: pid {r['old_pid']} -> {r['new_pid']} (version {r['version']}); kept {len(r['processes'])} processes")
    return 0


def cmd_save(c: Client, ns) -> int:
    r = c.call("dump")
    print(f"Saved {r['count']} processes to {r['path']}")
    return 0


def cmd_resurrect(c: Client, ns) -> int:
    r = c.long_call("resurrect", RESURRECT_TIMEOUT)
    for name in r["started"]:
        print(f"Started: {name}")
    for name in r["skipped"]:
        print(f"Already running: {name}")
    for name, msg in r["failed"].items():
        print(f"Failed: {name}: {msg}", file=sys.stderr)
    return 1 if r["failed"] else 0


def cmd_patrol(c: Client, ns) -> int:
    r = c.call("patrol")
    if ns.json:
        _print_json(r)
        return 0
    if not r["found"]:
        print("patrol: all consistent")
    for f in r["found"]:
        print(f"found: {f}")
    for f in r["fixed"]:
        print(f"fixed: {f}")
    return 0


def cmd_doctor(c: Client, ns) -> int:
    from ..client.doctor import doctor
    from ..core.doctor import render as render_doctor

    r = doctor(c, fix=ns.fix)
    if ns.json:
        _print_json(r)
    else:
        print(render_doctor(r))
    bad = r["orphans"] or r.get("problems") or any(not ch["ok"] for ch in r["checks"])
    return 1 if bad and not ns.fix else 0


def cmd_events(c: Client, ns) -> int:
    from ..core import report

    flush_history(c.home)  # reads SQLite directly: needs (and starts) no daemon
    rows = report.events(c.home, ns.target, ns.since)
    if ns.json:
        _print_json(rows)
    else:
        print(report.events_table(rows))
    return 0


def cmd_report(c: Client, ns) -> int:
    from ..core import report

    flush_history(c.home)
    rows = report.uptime_report(c.home, ns.since)
    if ns.json:
        _print_json(rows)
    else:
        print(report.report_table(rows))
    return 0


def cmd_startup(c: Client, ns) -> int:
    from ..client import startup

    if ns.print:
        print(startup.unit_text(c.home), end="")
        return 0
    print(startup.instructions(c.home, startup.install(c.home)))
    return 0


def cmd_unstartup(c: Client, ns) -> int:
    from ..client import startup

    if ns.print:
        print(startup.unit_path(c.home))
        return 0
    path = startup.uninstall(c.home)
    name = startup.unit_name(c.home)
    if path is None:
        print(f"No boot unit for {c.home.root} ({startup.unit_path(c.home)} does not exist)")
    else:
        print(f"Removed {path}\nNow run: systemctl --user disable {name}; systemctl --user daemon-reload")
    return 0


def cmd_monit(c: Client, ns) -> int:
    from . import monit

    return monit.run(c)


def cmd_up(c: Client, ns) -> int:
    from ..client import stack
    from .stackview import Progress

    path, name, apps = commands.stack_items(ns.items)
    st = commands.load_stack(path, env_name=ns.environment, home=c.home) if path else stack.from_records(c, name)
    st.closure(apps)  # an unknown app is bad input (exit 2), refused before anything is printed
    c.call("ping")  # the daemon is up before the threads connect
    print(f"stack {st.name}: {st.path}")
    try:
        run = stack.up(st, apps=apps, home=c.home, on_change=None if ns.json else Progress())
    except TsmError as exc:
        print(f"tsm: {exc.message}", file=sys.stderr)
        return 130 if exc.fields.get("interrupted") else 1
    if ns.json:
        _print_json({"stack": run.name, "apps": [a.to_dict() for a in run.apps.values()]})
    return 0


def cmd_down(c: Client, ns) -> int:
    from ..client import stack
    from .stackview import Progress

    path, name, apps = commands.stack_items(ns.items)
    st = commands.load_stack(path, env_name=ns.environment, home=c.home) if name is None else None
    name = st.name if st is not None else name
    try:
        hosts = stack.hosts_of(st, c.home)
        stack.down(name, apps=apps, home=c.home, on_change=Progress(), hosts=hosts)
    except TsmError as exc:
        if not exc.fields.get("interrupted"):
            raise
        print(f"tsm: {exc.message}", file=sys.stderr)
        return 130
    return 0


def cmd_convert(c: Client, ns) -> int:
    print(commands.convert(ns.file), end="")
    return 0


HANDLERS: dict[str, Callable[[Client, Any], int]] = {
    "start": cmd_start,
    "stop": _each("stop", "Stopped"),
    "restart": _each("restart", "Restarted"),
    "delete": _each("delete", "Deleted"),
    "ls": cmd_ls,
    "describe": cmd_describe,
    "logs": cmd_logs,
    "flush": cmd_flush,
    "ping": cmd_ping,
    "kill": cmd_kill,
    "update": cmd_update,
    "save": cmd_save,
    "resurrect": cmd_resurrect,
    "patrol": cmd_patrol,
    "events": cmd_events,
    "report": cmd_report,
    "monit": cmd_monit,
    "up": cmd_up,
    "down": cmd_down,
    "convert": cmd_convert,
    "reset": _each("reset", "Reset"),
    "startup": cmd_startup,
    "unstartup": cmd_unstartup,
    "doctor": cmd_doctor,
}


def _check_cwd() -> None:
    try:
        os.getcwd()
    except FileNotFoundError:
        raise UsageError("the current directory was deleted: cd to an existing directory and run the command again") from None


def _remote(ns) -> int:
    """Run one subcommand on host ``ns.host``: reads that the local handlers do from files go
    through the daemon's requests there instead."""
    from . import remote
    from ..client.remote import client_for

    with client_for(ns.host, home=ns.home) as c:
        if ns.cmd == "start":
            return remote.remote_start(c, ns)
        if ns.cmd == "logs":
            return remote.remote_logs(c, ns, _print_line)
        if ns.cmd in ("events", "report"):
            return remote.remote_history(c, ns)
        return HANDLERS[ns.cmd](c, ns)


def main(argv: list[str] | None = None) -> int:
    """Run ``tsm`` with ``argv`` (default ``sys.argv[1:]``); return the exit code."""
    argv = sys.argv[1:] if argv is None else argv
    try:
        ns = commands.parse(argv)
        if ns.cmd == "bridge":
            from .bridge import bridge

            return bridge(Home.resolve(ns.home))
        if ns.host is not None or ns.cmd in ("hosts", "forward"):
            from . import remote  # other machines: only these pay for its import

            code = remote.run(ns)
            if code == -1:
                return _remote(ns)
            if code is not None:
                return code
        handler = HANDLERS.get(ns.cmd)
        if handler is None:
            raise UsageError(f"tsm {ns.cmd}: not available in this version")
        if ns.cmd == "start":
            _check_cwd()
        with Client(ns.home, autostart=ns.cmd not in ("kill", "convert", "doctor")) as c:
            return handler(c, ns)
    except commands.Help as h:
        print(h.text, end="")
        return 0
    except UsageError as exc:
        # the parser's messages already start with "tsm ..." (`tsm start: ...`)
        message = exc.message if exc.message.startswith(("tsm:", "tsm ")) else f"tsm: {exc.message}"
        print(message, file=sys.stderr)
        return 2
    except TsmError as exc:
        print(f"tsm: {type(exc).__name__}: {exc.message}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        return 130
    except BrokenPipeError:
        # the reader went away (`tsm logs -f | head`): end quietly, with the status a Unix tool
        # killed by SIGPIPE has, and no complaint when Python flushes stdout at exit
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
        return 128 + 13


if __name__ == "__main__":
    raise SystemExit(main())
