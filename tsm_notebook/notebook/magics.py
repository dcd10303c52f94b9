"""``%tsm`` and ``%%tsm``: the ``tsm`` command line inside a notebook, returning objects.

``%tsm <subcommand> ...`` is parsed by :func:`tsm_notebook.commands.parse`, the parser of the
command line itself, so every flag of ``tsm`` works here too. Each subcommand is routed to a plain
function of :data:`ROUTES` that returns an object for the notebook to show, never prints:
``ls`` a DataFrame, ``start`` and ``describe`` a :class:`~tsm_notebook.api.Process` card,
``logs`` the last lines, ``logs -f`` a live tail widget, ``monit`` and ``panel`` the live panel.

``%%tsm start --name worker [options]`` runs the cell's body as a managed process (Python, or
shell with ``--lang bash``). Mistakes of every kind (a bad flag, an unknown process, a port in
use, an unreachable daemon) become IPython's :class:`~IPython.core.error.UsageError`: one line,
no traceback. Completion offers the subcommands and, after ``stop``, ``restart``, ``delete``,
``logs``, ``describe``, ``flush`` and ``events``, the process names.
"""

from __future__ import annotations

import argparse
import hashlib
import os
import shlex
import sys
import tempfile
import time
from pathlib import Path
from typing import Any, Callable

from IPython.core.completer import CompletionContext, SimpleCompletion, SimpleMatcherResult, context_matcher
from IPython.core.error import UsageError as IPythonUsageError
from IPython.core.magic import Magics, line_cell_magic, magics_class, no_var_expand

from . import api
from ..client import commands
from ..client.client import flush_history
from ..core.errors import StartFailed, TsmError, UsageError
from ..core.paths import Home, check_name

__all__ = ["ROUTES", "TsmMagics", "complete", "load", "one_line", "run_cell", "run_line", "script_path", "unload"]

#: subcommands only the notebook has (the command line has no widgets)
NOTEBOOK_ONLY = ("panel",)
#: scripts of %%tsm cells live this long unreferenced before they are removed (seconds)
SCRIPT_GRACE = 3600.0


def _split(line: str, prog: str) -> list[str]:
    try:
        return shlex.split(line)
    except ValueError as exc:
        raise UsageError(f"{prog}: cannot split the line: {exc}") from None


def _client(ns: argparse.Namespace):
    return api.shared_client(ns.home)


# ---------------------------------------------------------------------- routes


def _start(ns: argparse.Namespace) -> Any:
    up = commands.start_as_up(ns)  # `%tsm start tsm.toml` is `%tsm up`, as on the command line
    if up is not None:
        return _stacks().from_ns(up)
    rows = commands.start_existing(api.shared_client(ns.home), ns)
    if rows is not None:  # `%tsm start NAME`: that process again, with its saved spec
        procs = [api.Process(r, ns.home) for r in rows]
        return procs[0] if len(procs) == 1 else procs
    return api.start_spec(commands.spec_from_args(ns, kernel=True), home=ns.home)


def _each(action: Callable[..., list[api.Process]]) -> Callable[[argparse.Namespace], list[api.Process]]:
    return lambda ns: action(ns.target, home=ns.home)


def _ls(ns: argparse.Namespace) -> Any:
    if ns.json:
        return _client(ns).call("ls", all=ns.all)
    from .frames import processes

    df = processes(ns.home, client=_client(ns))
    if not ns.all and len(df):
        df = df[df["status"] != "stopped"]  # as `tsm ls`: stopped ones only with -a
    if ns.group and len(df):  # -g: each stack's processes together, the others last
        df = df.sort_values(["stack", "tsm_id"], na_position="last", kind="stable")
    return df


def _describe(ns: argparse.Namespace) -> Any:
    rows = _client(ns).call("describe", target=ns.target)
    one = ns.target != "all"
    if ns.json:
        return rows[0] if one else rows
    procs = [api.Process(r, ns.home) for r in rows]
    return procs[0] if one else procs


def _logs(ns: argparse.Namespace) -> Any:
    if ns.target == "rotate" and ns.rest:
        return api.rotate_logs(ns.rest, home=ns.home)
    if ns.rest:
        raise UsageError(f"%tsm logs: unexpected argument {ns.rest!r}")
    stream = "out" if ns.out else "err" if ns.err else "both"
    if ns.follow:  # a widget that refreshes from its own thread: the cell returns at once
        from .logtail import LogTail

        return LogTail(ns.target, home=ns.home, lines=ns.lines, stream=stream)
    from .logs_api import logs

    found = logs(ns.target, lines=ns.lines, stream=stream, since=ns.since, home=ns.home)
    lines = api.LogLines(found, labelled=ns.target == "all", raw=ns.raw, plain=ns.plain)
    return lines.to_dicts() if ns.json else lines


def _kill(ns: argparse.Namespace) -> dict[str, Any]:
    return {"daemon_pid": api.kill(home=ns.home)}


def _events(ns: argparse.Namespace) -> Any:
    if ns.json:  # raw rows, as `tsm events --json` prints them
        from ..core import report

        home = Home.resolve(ns.home)
        flush_history(home)
        return report.events(home, ns.target, ns.since)
    from .frames import events

    return events(ns.target, ns.since, home=ns.home)


def _report(ns: argparse.Namespace) -> Any:
    if ns.json:
        from ..core import report

        home = Home.resolve(ns.home)
        flush_history(home)
        return report.uptime_report(home, ns.since)
    from .frames import uptime_report

    return uptime_report(ns.since, home=ns.home)


class _Text(str):
    """Text a cell shows as it is (the unit file of ``startup --print``), not as a quoted string."""

    def _repr_pretty_(self, p: Any, cycle: bool) -> None:
        p.text(str(self))


def _startup(ns: argparse.Namespace) -> _Text:
    from ..client import startup

    home = Home.resolve(ns.home)
    if ns.cmd == "unstartup":
        if ns.print:
            return _Text(startup.unit_path(home))
        path = startup.uninstall(home)
        return _Text(f"Removed {path}" if path else f"No boot unit for {home.root}")
    if ns.print:
        return _Text(startup.unit_text(home))
    return _Text(startup.instructions(home, startup.install(home)))


def _panel(ns: argparse.Namespace) -> Any:
    from .panel import Panel

    return Panel(home=ns.home)


ROUTES: dict[str, Callable[[argparse.Namespace], Any]] = {
    "start": _start,
    "stop": _each(api.stop),
    "restart": _each(api.restart),
    "delete": _each(api.delete),
    "ls": _ls,
    "describe": _describe,
    "logs": _logs,
    "flush": lambda ns: api.flush(ns.target, home=ns.home),
    "ping": lambda ns: api.ping(home=ns.home),
    "kill": _kill,
    "update": lambda ns: api.update(home=ns.home),
    "save": lambda ns: api.save(home=ns.home),
    "resurrect": lambda ns: api.resurrect(home=ns.home),
    "patrol": lambda ns: api.patrol(home=ns.home),
    "events": _events,
    "report": _report,
    "monit": _panel,
    "reset": _each(api.reset),
    "startup": _startup,
    "unstartup": _startup,
    "panel": _panel,
    "up": lambda ns: _stacks().from_ns(ns),
    "down": lambda ns: _stacks().from_ns(ns),
    "convert": lambda ns: commands.convert(ns.file),
}


def _stacks() -> Any:
    from . import stacks

    return stacks


def _notebook_only(argv: list[str]) -> argparse.Namespace | None:
    """``[--home H] panel``: a subcommand the command line's grammar does not have."""
    home, rest = None, list(argv)
    if rest[:1] == ["--home"] and len(rest) > 1:
        home, rest = rest[1], rest[2:]
    elif rest and rest[0].startswith("--home="):
        home, rest = rest[0].split("=", 1)[1], rest[1:]
    if not rest or rest[0] not in NOTEBOOK_ONLY:
        return None
    if len(rest) > 1:
        raise UsageError(f"%tsm {rest[0]}: takes no arguments")
    return argparse.Namespace(cmd=rest[0], home=home)


#: parsed values that are never expanded: the command is the program's, its ``$PORT`` its own
_NOT_EXPANDED = frozenset({"cmd", "command", "argv_mode"})


def _expanded(ns: argparse.Namespace, expand: Callable[[str], str]) -> argparse.Namespace:
    """``ns`` with ``expand`` applied to every option value and target, never to the command."""
    for key, value in vars(ns).items():
        if key in _NOT_EXPANDED:
            continue
        if isinstance(value, str):
            setattr(ns, key, expand(value))
        elif isinstance(value, list) and all(isinstance(v, str) for v in value):
            setattr(ns, key, [expand(v) for v in value])
    return ns


def run_line(line: str, *, expand: Callable[[str], str] = str) -> Any:
    """Carry out one ``%tsm`` line and return its result. Raises TsmError or commands.Help.

    ``expand`` (the magic passes IPython's ``$var``/``{var}`` expansion) is applied to option
    values and targets after parsing, never to the command: ``$PORT`` reaches the process."""
    argv = _split(line, "%tsm")
    ns = _notebook_only(argv) or commands.parse(argv, prog="%tsm")
    if getattr(ns, "host", None) not in (None, "local"):
        from . import remote_magic  # other machines (-H NAME, @NAME)

        return remote_magic.run(ns)
    ns = _expanded(ns, expand)
    return ROUTES[ns.cmd](ns)


# ---------------------------------------------------------------------- the cell magic


def script_path(home: Home, name: str, body: str, lang: str) -> Path:
    """Where the body of a ``%%tsm`` cell is kept: ``$TSM_HOME/scripts/<name>-<sha256:12>.<py|sh>``.

    The name is content-addressed: running the same cell again reuses the file, and a changed
    cell never rewrites the script of a process that still runs (its restarts keep running the
    code it was started with). The directory is 0700 and the file 0600, written atomically.
    """
    check_name(name)  # it becomes part of a path
    directory = home.root / "scripts"
    home.ensure()
    directory.mkdir(mode=0o700, exist_ok=True)
    if not body.endswith("\n"):
        body += "\n"
    digest = hashlib.sha256(body.encode()).hexdigest()[:12]
    path = directory / f"{name}-{digest}.{'py' if lang == 'python' else 'sh'}"
    if path.exists():
        os.utime(path)  # young again, so a concurrent prune leaves it alone
        return path
    fd, tmp = tempfile.mkstemp(dir=directory, prefix=".cell-", suffix=".tmp")
    try:
        with os.fdopen(fd, "w") as f:
            f.write(body)
        os.chmod(tmp, 0o600)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return path


def _prune_scripts(home: Home, keep: Path) -> None:
    """Remove cell scripts that no process (nor ``dump.json``) refers to and that are old enough
    that no other kernel is about to start them."""
    directory = home.root / "scripts"
    try:
        used = {a for r in api.shared_client(home).call("ls", all=True) for a in r.get("argv") or ()}
        try:
            import json

            dump = json.loads(home.dump_file.read_text())
            used.update(a for item in dump.get("processes", ()) for a in item.get("spec", {}).get("argv", ()))
        except (OSError, ValueError, AttributeError):
            pass
        cutoff = time.time() - SCRIPT_GRACE
        for p in directory.iterdir():
            if p != keep and str(p) not in used and p.stat().st_mtime < cutoff:
                p.unlink(missing_ok=True)
    except (OSError, TsmError):
        pass  # tidying is best effort: the start itself succeeded


def run_cell(line: str, cell: str, *, expand: Callable[[str], str] = str,
             user_ns: dict[str, Any] | None = None) -> Any:
    """Start the body of a ``%%tsm start ...`` cell as a managed process; returns its snapshot.
    (``%%tsm up`` instead brings up the stack the cell describes: see :mod:`.stacks`.)

    The body is written by :func:`script_path` and run by this kernel's Python (``--lang
    python``, the default: the same environment and packages) or by ``bash`` (``--lang bash``);
    ``--interpreter`` overrides either. Every option of ``tsm start`` applies; ``--name`` is
    required; ``--var NAME`` also assigns the process to ``NAME`` in ``user_ns``. Re-running an
    edited cell replaces its running process (the script is content-addressed, so the spec
    differs). ``expand`` expands ``$var``/``{var}`` in option values. Raises TsmError or
    commands.Help.
    """
    argv = _split(line, "%%tsm")
    if argv[:1] == ["up"]:  # %%tsm up: the cell is a tsm.toml
        return _stacks().up_cell(argv[1:], cell)
    ns = _expanded(commands.parse(argv, prog="%%tsm", cell=True), expand)
    if ns.var is not None and not ns.var.isidentifier():
        raise UsageError(f"%%tsm start: --var {ns.var!r} is not a Python name")
    if not cell.strip():
        raise UsageError("%%tsm start: the cell is empty; its body is the program to run")
    if not ns.name:
        raise UsageError("%%tsm start: --name is needed to name the cell's process")
    home = Home.resolve(ns.home)
    script = script_path(home, ns.name, cell, ns.lang)
    runner = [] if ns.interpreter else [sys.executable if ns.lang == "python" else "bash"]
    ns.command, ns.argv_mode = [*runner, str(script)], True
    proc = api.start_spec(commands.spec_from_args(ns, kernel=True), home=home)
    _prune_scripts(home, keep=script)
    if ns.var and user_ns is not None:
        user_ns[ns.var] = proc
    return proc


# ---------------------------------------------------------------------- the magics class


def one_line(exc: TsmError) -> str:
    """The one-line message a notebook user sees for ``exc``."""
    text = exc.message if isinstance(exc, UsageError) else f"{type(exc).__name__}: {exc.message}"
    first = (text.strip().splitlines() or [type(exc).__name__])[0]
    if isinstance(exc, StartFailed):
        stderr = [s.strip() for s in exc.fields.get("stderr") or () if s.strip()]
        if stderr:
            first = f"{first.rstrip(':')}: {stderr[-1]}"
        if exc.fields.get("name"):
            first += f" (see %tsm logs {exc.fields['name']})"
    return first


@magics_class
class TsmMagics(Magics):
    """The ``%tsm`` line magic and ``%%tsm`` cell magic."""

    def _expand(self, text: str) -> str:
        """IPython's expansion (``$var``, ``{expr}``, ``$$`` for ``$``) in the user's namespace
        only (not this method's locals); text that does not expand is left as it is."""
        from IPython.utils.text import DollarFormatter

        try:
            return DollarFormatter().vformat(text, args=[], kwargs=self.shell.user_ns)
        except Exception:
            return text

    @no_var_expand
    @line_cell_magic
    def tsm(self, line: str, cell: str | None = None) -> Any:
        """Manage long-running processes; the grammar of the ``tsm`` command line.

        ::

            %tsm start "python -m http.server 8000" --name web --wait-port
            %tsm ls                      # a DataFrame (-a: stopped ones too)
            %tsm describe web-8000       # a card
            %tsm logs web-8000 -n 20     # the last lines; -f for a live tail
            %tsm restart all
            %tsm panel                   # the live panel (also %tsm monit)
            %tsm -h                      # every subcommand; %tsm start -h for its options

            %%tsm start --name worker [--lang bash] [--var w] [start options]
            <the program to run>

            %tsm up [FILE] [APP...]      # a stack (tsm.toml, Procfile, ecosystem.json); a live view
            %tsm down [FILE|stack:NAME]  # stops it, dependants first
            %%tsm up [--env NAME]        # the cell is the tsm.toml

        The command is passed as written (``$PORT`` is the process's own); ``$var`` and
        ``{var}`` are expanded in option values and targets only. Mistakes are reported as
        one-line UsageErrors.
        """
        try:
            if cell is None:
                return run_line(line, expand=self._expand)
            return run_cell(line, cell, expand=self._expand, user_ns=self.shell.user_ns)
        except commands.Help as h:
            print(h.text, end="")
            return None
        except TsmError as exc:
            raise IPythonUsageError(one_line(exc)) from None


# ---------------------------------------------------------------------- completion

MATCHER_ID = "tsm_notebook.magics.complete"
_VALUE_OPTIONS = frozenset({"--home", "-n", "--lines", "--since"})


def _names(home: str | None) -> list[str]:
    """Process names from the home's directories: no daemon is asked (none is started by a Tab)."""
    try:
        with os.scandir(Home.resolve(home).processes) as it:
            return sorted(e.name for e in it if e.is_dir() and not e.name.startswith("."))
    except OSError:
        return []


@context_matcher(identifier=MATCHER_ID)
def complete(context: CompletionContext) -> SimpleMatcherResult:
    """Complete ``%tsm`` subcommands, and process names after the subcommands that take one."""
    line = context.text_until_cursor
    stripped = line.lstrip()
    cell = stripped.startswith("%%tsm ")
    if not (cell or stripped.startswith("%tsm ")) or (cell and context.cursor_line != 0):
        return SimpleMatcherResult(completions=[], suppress=False)
    words = stripped.split()[1:]
    if line.endswith((" ", "\t")):
        words.append("")
    current, before = words[-1], words[:-1]
    home, positional, skip = None, [], False
    for i, w in enumerate(before):
        if skip:
            skip = False
        elif w in _VALUE_OPTIONS:
            skip = True
            if w == "--home":
                home = before[i + 1] if i + 1 < len(before) else None
        elif w.startswith("--home="):
            home = w.split("=", 1)[1]
        elif not w.startswith("-"):
            positional.append(w)
    if skip or current.startswith("-"):
        candidates: list[str] = []
    elif not positional:
        candidates = ["start"] if cell else [*commands.SUBCOMMANDS, *NOTEBOOK_ONLY]
    elif positional[0] in commands.TARGETED and len(positional) == 1:
        candidates = ["all", *_names(home)] + (["rotate"] if positional[0] == "logs" else [])
    elif positional[:2] == ["logs", "rotate"] and len(positional) == 2:
        candidates = ["all", *_names(home)]
    else:
        candidates = []
    token = context.token
    # IPython's token stops at characters such as '+' that a name may hold: complete its suffix
    cut = len(current) - len(token) if current.endswith(token) else 0
    matches = [SimpleCompletion(c[cut:], type="tsm") for c in candidates if c.startswith(current)]
    # ordered: "all" first, then the names, as given (IPython would sort them)
    return SimpleMatcherResult(completions=matches, suppress=bool(matches), ordered=True)


# ---------------------------------------------------------------------- the extension


def load(ip: Any) -> None:
    """Register the magics and the completer on the shell ``ip`` (idempotent)."""
    ip.register_magics(TsmMagics)
    matchers = ip.Completer.custom_matchers
    if not any(getattr(m, "matcher_identifier", None) == MATCHER_ID for m in matchers):
        matchers.append(complete)


def unload(ip: Any) -> None:
    """Remove the magics and the completer from the shell ``ip``."""
    manager = ip.magics_manager
    for kind in ("line", "cell"):
        manager.magics[kind].pop("tsm", None)
    manager.registry.pop(TsmMagics.__name__, None)
    ip.Completer.custom_matchers[:] = [
        m for m in ip.Completer.custom_matchers if getattr(m, "matcher_identifier", None) != MATCHER_ID
    ]
