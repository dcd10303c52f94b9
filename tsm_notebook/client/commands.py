"""The one grammar of ``tsm``: the argparse parser shared by the command line and the ``%tsm``
magic, and the functions that carry out each subcommand and return raw data (rows, dicts, lists).

Front ends differ only in how they show the data: :mod:`tsm_notebook.cli` prints text,
the magics return rich objects. Nothing here imports pandas, IPython or ipywidgets.
"""

from __future__ import annotations

import argparse
import os
import sys
TYPE_CHECKING = False  # typing costs the command line ~8 ms to import; annotations are postponed
if TYPE_CHECKING:
    from typing import Any, Callable

from .client import Client
from ..core.errors import UsageError

SUBCOMMANDS = (
    "start", "stop", "restart", "delete", "ls", "describe", "logs", "flush", "ping", "kill", "update",
    "save", "resurrect", "patrol", "events", "report", "monit", "up", "down", "convert",
    "reset", "startup", "unstartup", "doctor", "hosts", "forward", "bridge",
)
#: subcommands whose first argument is a process target (for completion)
TARGETED = ("stop", "restart", "delete", "describe", "logs", "flush", "events", "reset")


class _Formatter(argparse.HelpFormatter):
    """argparse's formatter without its ``import shutil``: argparse builds one for every option it
    adds, and shutil (with zlib, bz2 and lzma) cost each ``tsm`` call a few milliseconds only to
    learn the terminal's width."""

    def __init__(self, prog: str, indent_increment: int = 2, max_help_position: int = 24, width: int | None = None):
        if width is None:
            try:
                width = int(os.environ["COLUMNS"])
            except (KeyError, ValueError):
                try:
                    width = os.get_terminal_size(sys.__stdout__.fileno()).columns
                except (AttributeError, OSError, ValueError):
                    width = 80
            width -= 2
        super().__init__(prog, indent_increment, max_help_position, width)


class ArgumentParser(argparse.ArgumentParser):
    """argparse that raises :class:`UsageError` instead of printing and exiting on a mistake."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        kwargs.setdefault("formatter_class", _Formatter)
        super().__init__(*args, **kwargs)

    def error(self, message: str) -> None:  # type: ignore[override]
        raise UsageError(f"{self.prog}: {message}")


class Help(Exception):
    """Raised by ``-h`` so a front end decides how to show the help text."""

    def __init__(self, text: str):
        super().__init__(text)
        self.text = text


class _HelpAction(argparse.Action):
    def __init__(self, option_strings, dest=argparse.SUPPRESS, default=argparse.SUPPRESS, help=None):
        super().__init__(option_strings=option_strings, dest=dest, default=default, nargs=0, help=help)

    def __call__(self, parser, namespace, values, option_string=None):
        raise Help(parser.format_help())


def build_parser(prog: str = "tsm", only: str | None = None, *, cell: bool = False) -> ArgumentParser:
    """The parser of every subcommand (or of ``only`` one, which is faster to build: every
    command-line call pays for it). ``-h`` raises :class:`Help` carrying the text. With ``cell``
    (the ``%%tsm`` cell magic) ``start`` takes ``--lang`` instead of a command: the cell is one."""
    p = ArgumentParser(prog=prog, add_help=False, description="A PM2-style process manager for Jupyter.")
    p.add_argument("-h", "--help", action=_HelpAction, help="show this help")
    p.add_argument("--home", help="TSM home directory (default $TSM_HOME or ~/.tsm)")
    # taken out of argv by split_host (anywhere before --, or @NAME first); here for the help text
    p.add_argument("-H", "--host", metavar="NAME", help="run on host NAME of config.toml ([hosts.NAME]); "
                   "ls and ping take all or a comma list; also @NAME as the first word")
    sub = p.add_subparsers(dest="cmd", metavar="COMMAND", parser_class=ArgumentParser)

    def add(name: str, help: str, **kw: Any) -> ArgumentParser:
        if only is not None and name != only and only not in kw.get("aliases", ()):
            return _Unused()
        sp = sub.add_parser(name, help=help, description=help, add_help=False, **kw)
        sp.add_argument("-h", "--help", action=_HelpAction, help="show this help")
        return sp

    s = add("start", "start a process (CMD as one quoted string, or argv after --)")
    if cell:
        s.add_argument("--lang", choices=("python", "bash"), default="python", help="the cell's language (default python)")
        s.add_argument("--var", help="also assign the process to this variable")
    else:
        s.add_argument("command", nargs="*", metavar="CMD")
    s.add_argument("--name", help="base name; with a known port the name is NAME-PORT")
    s.add_argument("--port", help="port P, or P+ for the first free port >= P")
    s.add_argument("--no-port", action="store_true", help="no port: do not read one from the command or PORT")
    s.add_argument("--cwd", help="working directory")
    s.add_argument("--env-file", help="KEY=VALUE file, parsed (never run by a shell)")
    s.add_argument("-e", "--env", action="append", default=[], metavar="KEY=VALUE", help="set a variable (repeatable)")
    s.add_argument("--interpreter", help="run the command through this interpreter")
    s.add_argument("--no-autorestart", action="store_true", help="do not restart when it exits")
    s.add_argument("--max-restarts", help="unstable restarts in a row before errored (default 15)")
    s.add_argument("--min-uptime", help="an exit sooner is unstable (default 1s; plain numbers are ms)")
    s.add_argument("--restart-delay", help="wait before restarting (plain numbers are ms)")
    s.add_argument("--exp-backoff", "--exp-backoff-restart-delay", dest="exp_backoff",
                   help="exponential backoff restart delay base (plain numbers are ms)")
    s.add_argument("--max-memory", "--max-memory-restart", dest="max_memory",
                   help="restart when the tree's RSS exceeds this (e.g. 200M)")
    s.add_argument("--kill-timeout", help="SIGKILL this long after the stop signal (default 1.6s)")
    s.add_argument("--stop-signal", help="stop signal (default SIGTERM)")
    s.add_argument("--wait-port", nargs="?", const=True, default=False, metavar="LIMIT",
                   help="return once the port accepts connections (at most LIMIT, default 60s)")
    s.add_argument("--time", action="store_true", help="prefix log lines with an ISO-8601 time")
    s.add_argument("--log-max-size", help="rotate logs past this size (default 10M)")
    s.add_argument("--log-retain", help="rotated log files kept per stream (default 10)")
    s.add_argument("--no-log-compress", action="store_true", help="do not gzip rotated logs")
    s.add_argument("--watch", nargs="*", action="extend", metavar="PATH",
                   help="restart when a file under PATH changes (default the cwd; put the command before --watch or after --)")
    s.add_argument("--watch-ignore", action="append", metavar="GLOB", help="changes matching GLOB are ignored (repeatable)")
    s.add_argument("--cron-restart", metavar="CRON", help="restart on this schedule ('0 3 * * *', daemon's local time)")
    s.add_argument("--cron", metavar="CRON", help="a one-shot job started on this schedule ('*/15 * * * *')")
    for event in ("crash", "errored", "restart", "memory-limit", "online", "stop"):
        s.add_argument(f"--on-{event}", metavar="CMD", help=f"shell command the daemon runs on {event}")

    for name, help in (("stop", "stop processes"), ("restart", "restart processes"), ("delete", "stop and forget processes")):
        c = add(name, help)
        c.add_argument("target", metavar="T", help="a name, a tsm_id, or all")

    ls = add("ls", "list processes", aliases=["list"])
    ls.add_argument("-a", "--all", action="store_true", help="include stopped processes")
    ls.add_argument("--json", action="store_true", help="print JSON")
    ls.add_argument("-g", "--group", action="store_true", help="group by stack")

    d = add("describe", "everything about processes")
    d.add_argument("target", metavar="T")
    d.add_argument("--json", action="store_true", help="print JSON")

    lg = add("logs", "show log lines (of every process without T); `tsm logs rotate T` rotates now")
    lg.add_argument("target", nargs="?", default="all", metavar="T")
    lg.add_argument("rest", nargs="?", metavar="T2", help=argparse.SUPPRESS)
    lg.add_argument("-n", "--lines", type=_int_arg("--lines"), default=50, help="lines per stream (default 50)")
    lg.add_argument("-f", "--follow", action="store_true", help="keep printing new lines")
    g = lg.add_mutually_exclusive_group()
    g.add_argument("--out", action="store_true", help="stdout only")
    g.add_argument("--err", action="store_true", help="stderr only")
    lg.add_argument("--since", help="10m, 2h, 1d or an ISO time")
    lg.add_argument("--raw", action="store_true", help="lines exactly as written, no labels")
    lg.add_argument("--plain", action="store_true", help="without colour codes (ANSI escapes removed)")
    lg.add_argument("--json", action="store_true", help="print JSON lines")

    f = add("flush", "empty log files")
    f.add_argument("target", nargs="?", default="all", metavar="T")

    add("ping", "start the daemon if needed and show it")
    add("kill", "stop every process, then the daemon")
    add("update", "restart the daemon, keeping the processes")
    add("save", "write dump.json with every running process")
    add("resurrect", "start what dump.json holds")
    pt = add("patrol", "reconcile state with reality and report")
    pt.add_argument("--json", action="store_true", help="print JSON")
    dr = add("doctor", "ports and their holders, orphans, stale state, the home's ownership")
    dr.add_argument("--fix", action="store_true", help="stop orphans and clear stale state")
    dr.add_argument("--json", action="store_true", help="print JSON")

    ev = add("events", "lifecycle events from the history")
    ev.add_argument("target", nargs="?", metavar="T")
    ev.add_argument("--since", help="10m, 2h, 1d or an ISO time")
    ev.add_argument("--json", action="store_true", help="print JSON")

    rp = add("report", "uptime and resource report per process")
    rp.add_argument("--since", help="10m, 2h, 1d or an ISO time")
    rp.add_argument("--json", action="store_true", help="print JSON")

    add("monit", "a live view of processes, CPU and memory")

    u = add("up", "bring a stack up in dependency order (FILE: tsm.toml, Procfile, ecosystem.json)")
    u.add_argument("items", nargs="*", metavar="[FILE] [APP]", help="the stack file (default ./tsm.toml), then apps")
    u.add_argument("--env", dest="environment", metavar="NAME", help="apply the file's [env.NAME] section")
    u.add_argument("--json", action="store_true", help="print JSON")
    dn = add("down", "stop a stack in reverse dependency order")
    dn.add_argument("items", nargs="*", metavar="[FILE|stack:NAME] [APP]", help="the stack (default ./tsm.toml), then apps")
    dn.add_argument("--env", dest="environment", metavar="NAME", help="apply the file's [env.NAME] section")
    cv = add("convert", "print a Procfile or PM2 ecosystem.json as a tsm.toml")
    cv.add_argument("file", metavar="FILE")
    rs = add("reset", "clear restart counters")
    rs.add_argument("target", metavar="T", help="a name, a tsm_id, or all")
    for name, help in (("startup", "start the daemon at boot (a systemd user unit) resurrecting the saved list"),
                       ("unstartup", "remove the boot unit `tsm startup` wrote")):
        su = add(name, help)
        su.add_argument("--print", action="store_true", help="show the unit (or its path) without writing anything")
    h = add("hosts", "other machines reached over ssh: add, ls, rm, check")
    h.add_argument("action", choices=("add", "ls", "rm", "check"), metavar="add|ls|rm|check")
    h.add_argument("name", nargs="?", metavar="NAME")
    h.add_argument("ssh", nargs="?", metavar="USER@HOST", help="for add: what ssh connects to")
    h.add_argument("--remote-home", dest="remote_home", help="for add: the TSM_HOME on that host")
    h.add_argument("--tsm", help="for add: the tsm command on that host (default tsm)")
    h.add_argument("--ssh-option", dest="ssh_options", action="append", default=[], metavar="ARG",
                   help="for add: an extra ssh argument (repeatable; -o X=Y is two)")
    h.add_argument("--timeout", help="for add: connect-and-answer timeout (default 10s)")
    h.add_argument("--json", action="store_true", help="print JSON")

    fw = add("forward", "open an ssh port forward to a remote port: HOST:PORT (a managed process)")
    fw.add_argument("target", metavar="HOST:PORT")
    fw.add_argument("--local-port", help="the local port (default: the same, or the next free one)")

    add("bridge", "join stdin/stdout to this home's daemon (what ssh runs for `tsm -H`)")
    return p


class _Unused:
    """Stands in for a subparser that was not built; swallows its definition."""

    def add_argument(self, *a: Any, **kw: Any) -> None:
        pass

    def add_mutually_exclusive_group(self, *a: Any, **kw: Any) -> "_Unused":
        return self


def _int_arg(flag: str) -> Callable[[str], int]:
    def conv(text: str) -> int:
        try:
            n = int(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"invalid number {text!r}") from None
        if n < 0:
            raise argparse.ArgumentTypeError(f"{flag} must be >= 0")
        return n

    return conv


def parse(argv: list[str], prog: str = "tsm", *, cell: bool = False) -> argparse.Namespace:
    """Parse a whole command line; ``start``'s CMD is one string unless ``--`` was used.

    With ``cell`` only ``start`` is accepted, with no command (``ns.command`` is left empty for
    the caller to fill) and ``--lang``."""
    argv, host = split_host(argv)
    first = next((a for a in argv if not a.startswith("-")), None)
    known = first in SUBCOMMANDS or first == "list"
    # build only the asked-for subcommand unless --home VALUE could be mistaken for it
    only = first if known and "--home" not in argv and not any(a.startswith("--home=") for a in argv) else None
    parser = build_parser(prog, only=only, cell=cell)
    argv = _wait_port_value(argv)
    ns, extra = parser.parse_known_args(argv)
    if extra:
        message = f"unrecognized arguments: {' '.join(extra)}"
        if ns.cmd == "start" and not cell:
            message += " (put the command in quotes, or after --)"
        raise UsageError(f"{prog}: {message}")
    if cell:
        if ns.cmd != "start":
            raise UsageError(f"{prog}: only `start` takes a cell (use {prog[1:]} for the other commands)")
        ns.command, ns.argv_mode = [], True
        return ns
    ns.host = host
    if ns.cmd is None:
        raise UsageError(f"{prog}: a command is needed: {', '.join(SUBCOMMANDS)}")
    if ns.cmd == "list":
        ns.cmd = "ls"
    if ns.cmd == "start":
        ns.argv_mode = "--" in argv or len(ns.command) > 1
        if not ns.command:
            hint = " (put it before --watch PATH..., or after --)" if ns.watch else ""
            raise UsageError(f"{prog} start: a command is needed{hint}")
    return ns


_DURATION_RE = None


def _wait_port_value(argv: list[str]) -> list[str]:
    """``--wait-port`` takes an optional limit: the next word is one only when it reads as a
    duration (``120s``, ``2m``, ``90000``), so ``--wait-port "python app.py"`` keeps its command."""
    global _DURATION_RE
    out = list(argv)
    for i, a in enumerate(out):
        if a == "--":
            break
        if a == "--wait-port":
            if _DURATION_RE is None:
                import re

                _DURATION_RE = re.compile(r"^\d+(?:\.\d+)?(?:ms|s|m|h|d|w)?$", re.IGNORECASE)
            nxt = out[i + 1] if i + 1 < len(out) else ""
            if not _DURATION_RE.match(nxt):
                out[i] = "--wait-port=on"
    return out


def split_host(argv: list[str]) -> tuple[list[str], str | None]:
    """``argv`` without its host selector, and the selector: ``-H NAME``, ``--host NAME``,
    ``--host=NAME`` anywhere before ``--``, or ``@NAME`` as the first word (``tsm @gpu ls``).
    ``NAME`` may be ``all``, ``local`` or a comma list. None when there is none."""
    out: list[str] = []
    host = None
    i = 0
    while i < len(argv):
        a = argv[i]
        if a == "--":
            out.extend(argv[i:])
            break
        if i == 0 and a.startswith("@") and len(a) > 1:
            host = a[1:]
        elif a in ("-H", "--host"):
            if i + 1 >= len(argv):
                raise UsageError(f"tsm: {a} needs a host name (or all, or a comma list)")
            host = argv[i + 1]
            i += 1
        elif a.startswith("--host="):
            host = a.split("=", 1)[1]
        else:
            out.append(a)
        i += 1
    return out, host


def spec_kwargs(ns: argparse.Namespace) -> dict[str, Any]:
    """The keyword arguments of :func:`~tsm_notebook.core.spec.build_spec` a parsed ``start``
    gives, as the user typed them (strings): what a remote host builds its spec from."""
    cmd_kw: dict[str, Any] = {"argv": list(ns.command)} if ns.argv_mode else {"command": ns.command[0]}
    return dict(
        **cmd_kw,
        name=ns.name,
        port=ns.port,
        no_port=ns.no_port,
        cwd=ns.cwd,
        env_file=ns.env_file,
        env=ns.env,
        interpreter=ns.interpreter,
        autorestart=not ns.no_autorestart,
        max_restarts=ns.max_restarts,
        min_uptime=ns.min_uptime,
        restart_delay=ns.restart_delay,
        exp_backoff=ns.exp_backoff,
        max_memory=ns.max_memory,
        kill_timeout=ns.kill_timeout,
        stop_signal=ns.stop_signal,
        wait_port=ns.wait_port,
        time=ns.time,
        log_max_size=ns.log_max_size,
        log_retain=ns.log_retain,
        log_compress=False if ns.no_log_compress else None,
        watch=ns.watch,
        watch_ignore=ns.watch_ignore,
        cron_restart=ns.cron_restart,
        cron=ns.cron,
        on_crash=ns.on_crash,
        on_errored=ns.on_errored,
        on_restart=ns.on_restart,
        on_memory_limit=ns.on_memory_limit,
        on_online=ns.on_online,
        on_stop=ns.on_stop,
    )


def spec_from_args(ns: argparse.Namespace, *, cwd: str | None = None, env: dict[str, str] | None = None,
                   kernel: bool = False):
    """The :class:`~tsm_notebook.spec.LaunchSpec` a parsed ``start`` describes; the program is
    looked up on the PATH the child will have (see :func:`child_environment`)."""
    from ..core.spec import build_spec  # only `start` pays for it: listing stays fast

    env = child_environment(env, kernel=kernel)
    return build_spec(**spec_kwargs(ns), base_cwd=cwd, path_env=env.get("PATH"))


def is_stack_file(arg: str) -> bool:
    """Whether ``tsm start ARG`` names a stack file (a .toml, a Procfile, a .json) that exists."""
    name = os.path.basename(arg).lower()
    return (name.endswith((".toml", ".json")) or name.startswith("procfile")) and os.path.isfile(arg)


def start_as_up(ns: argparse.Namespace) -> argparse.Namespace | None:
    """``tsm start FILE [APP...] [--env NAME]`` is ``tsm up`` (PM2's ``start ecosystem.json --env
    production``): the namespace of that ``up``, or None when the command is not a stack file. An
    option of ``tsm start`` that a stack file cannot take is refused, never ignored."""
    if not ns.command or not is_stack_file(ns.command[0]):
        return None
    from .stackspec import start_parser

    file, envs = ns.command[0], list(ns.env or ())
    if any("=" in e for e in envs):
        bad = next(e for e in envs if "=" in e)
        raise UsageError(f"tsm start {file}: --env takes an environment's name here, not {bad!r} "
                         f"(a variable belongs in the file's [env])")
    if len(envs) > 1:
        raise UsageError(f"tsm start {file}: one --env NAME at a time (got {', '.join(envs)})")
    for action in start_parser()._actions:
        if action.option_strings and action.dest not in ("env", "help") and getattr(ns, action.dest, action.default) != action.default:
            raise UsageError(f"tsm start {file}: {action.option_strings[-1]} does not apply to a stack file: "
                             f"set it in the file, per app")
    return argparse.Namespace(cmd="up", items=list(ns.command), environment=envs[0] if envs else None,
                              json=False, home=getattr(ns, "home", None))


def stack_items(items: list[str]) -> tuple[str | None, str | None, list[str]]:
    """``[FILE|stack:NAME] [APP...]`` -> (file, stack name, apps); the file defaults to the first
    stack file of the current directory when neither is given."""
    from ..core.stackfile import find_file

    if items and items[0].startswith("stack:"):
        return None, items[0][len("stack:"):], items[1:]
    if items and (is_stack_file(items[0]) or os.sep in items[0] or items[0].endswith((".toml", ".json"))):
        return items[0], None, items[1:]
    return str(find_file()), None, list(items)


def load_stack(path: str, *, env_name: str | None = None, text: str | None = None,
               environ: dict[str, str] | None = None, cwd: str | None = None, home: Any = None,
               hosts: Any = None):
    """The validated :class:`~tsm_notebook.core.stackfile.Stack` of ``path`` (or of ``text``); an
    app's ``host`` is one of ``hosts`` (default: those of the local home's ``config.toml``)."""
    from ..core import stackfile
    from .stackspec import build_from_options, spec_from_options

    environ = dict(os.environ if environ is None else environ)
    path = os.path.join(cwd or os.getcwd(), path)
    if hosts is None:
        from .remote import configured_hosts

        hosts = configured_hosts(home)

    def build(options, *, base_cwd, name):
        return spec_from_options(options, base_cwd=base_cwd, name=name, env=environ)

    kw = dict(env_name=env_name, environ=environ, hosts=list(hosts), build_remote=build_from_options)
    if text is not None:
        return stackfile.parse_text(text, path, build, **kw)
    return stackfile.load(path, build, **kw)


def convert(path: str) -> str:
    """A Procfile or PM2 ecosystem (or a tsm.toml) written as a ``tsm.toml``."""
    from ..core import stackfile, stackformats

    try:
        text = open(path, encoding="utf-8").read()
    except OSError as exc:
        raise UsageError(f"{path}: cannot read it: {exc.strerror or exc}") from None
    kind = stackfile.kind_of(path)
    if kind == "procfile":
        raw, _ = stackformats.read_procfile(text, path, os.environ, os.path.dirname(os.path.abspath(path)))
    elif kind == "ecosystem":
        raw, _ = stackformats.read_ecosystem(text, path)
    else:
        raw = stackformats.read_toml(text, path)
    name = raw.pop("name", None) if isinstance(raw.get("name"), str) else None
    return stackformats.to_toml(raw, name, source=os.path.basename(path))


def child_environment(env: dict[str, str] | None = None, *, kernel: bool = False) -> dict[str, str]:
    """The environment a started process inherits: the caller's (like running it in that terminal
    or kernel), less what only makes sense inside the caller: a kernel's inline plotting backend
    and parent ids, and the identity of a managed process that starts another.

    From a ``kernel`` (the notebook front end) also: the kernel interpreter's ``bin`` directory is
    put at the end of PATH when missing (what ``%pip install`` put there is found), and the
    colour-forcing variables a front end sets for itself (``FORCE_COLOR``, ``CLICOLOR_FORCE``)
    are dropped: a child asks for colour with ``-e`` if it wants it."""
    env = dict(os.environ if env is None else env)
    for key in ("JPY_PARENT_PID", "JPY_SESSION_NAME", "TSM_NAME", "TSM_ID", "TSM_URL", "TSM_BASE_PATH"):
        env.pop(key, None)
    if env.get("MPLBACKEND", "").startswith("module://matplotlib_inline"):
        del env["MPLBACKEND"]
    if kernel:
        import sys

        for key in ("FORCE_COLOR", "CLICOLOR_FORCE"):
            env.pop(key, None)
        bindir = os.path.dirname(sys.executable)
        path = env.get("PATH", os.defpath)
        if bindir and bindir not in path.split(os.pathsep):
            env["PATH"] = f"{path}{os.pathsep}{bindir}" if path else bindir
    return env


def start(client: Client, spec, env: dict[str, str] | None = None, *, kernel: bool = False) -> dict[str, Any]:
    """Start a process from a spec, safely re-runnable (the daemon's smart start: the same spec
    as a running process returns it, a changed one replaces it; the row's ``action`` says which).
    The child inherits :func:`child_environment`."""
    return client.call("start", spec=spec.to_dict(), env=child_environment(env, kernel=kernel), smart=True)


def start_existing(client: Client, ns: argparse.Namespace) -> list[dict[str, Any]] | None:
    """``tsm start NAME`` for a process that exists: start it again with its saved spec (PM2's
    ``pm2 start NAME``). None when the command is not one word naming a process, or when options
    that define a new process (``--name``, ``--port``, ``--cwd``, ``-e``, ...) were given: the
    caller then starts the command as usual."""
    if ns.argv_mode or len(ns.command) != 1 or any((ns.name, ns.port, ns.cwd, ns.env_file, ns.env, ns.interpreter)):
        return None
    word = ns.command[0].strip()
    if not word or any(c.isspace() for c in word) or "/" in word:
        return None
    from ..core.errors import ProcessNotFound

    try:
        return client.call("start_existing", target=word)
    except ProcessNotFound:
        return None


def update(client: Client) -> dict[str, Any]:
    """Restart the daemon keeping the processes: the running ones come back under the new one."""
    old = client.kill(keep=True)
    info = client.call("ping")
    return {"old_pid": old, "new_pid": info["pid"], "version": info["version"], "processes": info["running"]}


__all__ = ["ArgumentParser", "Help", "SUBCOMMANDS", "TARGETED", "build_parser", "parse", "spec_from_args", "spec_kwargs",
           "split_host", "start", "start_existing", "update", "child_environment", "convert", "is_stack_file",
           "load_stack", "stack_items", "start_as_up"]
