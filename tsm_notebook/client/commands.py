"""The one grammar of ``tsm``: the argparse parser shared by the command line and the ``%tsm``
magic, and the functions that carry out each subcommand and return raw data (rows, dicts, lists).

Front ends differ only in how they show the data: :mod:`tsm_notebook.cli` prints text,
the magics return rich objects. Nothing here imports pandas, IPython or ipywidgets.
"""

from __future__ import annotations

import argparse
import os
TYPE_CHECKING = False  # typing costs the command line ~8 ms to import; annotations are postponed
if TYPE_CHECKING:
    from typing import Any, Callable

from .client import Client
from ..core.errors import UsageError

SUBCOMMANDS = (
    "start", "stop", "restart", "delete", "ls", "describe", "logs", "flush", "ping", "kill", "update",
    "save", "resurrect", "patrol", "events", "report", "monit", "hosts", "forward", "bridge",
)
#: subcommands whose first argument is a process target (for completion)
TARGETED = ("stop", "restart", "delete", "describe", "logs", "flush", "events")


class ArgumentParser(argparse.ArgumentParser):
    """argparse that raises :class:`UsageError` instead of printing and exiting on a mistake."""

    def error(self, message: str) -> None:  # type: ignore[override]
        if "unrecognized arguments" in message and self.prog.endswith("start") and not self.prog.startswith("%%"):
            message += " (put the command in quotes, or after --)"
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
    else:
        s.add_argument("command", nargs="*", metavar="CMD")
    s.add_argument("--name", help="base name; with a known port the name is NAME-PORT")
    s.add_argument("--port", help="port P, or P+ for the first free port >= P")
    s.add_argument("--cwd", help="working directory")
    s.add_argument("--env-file", help="KEY=VALUE file, parsed (never run by a shell)")
    s.add_argument("-e", "--env", action="append", default=[], metavar="KEY=VALUE", help="set a variable (repeatable)")
    s.add_argument("--interpreter", help="run the command through this interpreter")
    s.add_argument("--no-autorestart", action="store_true", help="do not restart when it exits")
    s.add_argument("--max-restarts", help="unstable restarts in a row before errored (default 15)")
    s.add_argument("--min-uptime", help="an exit sooner is unstable (default 1s; plain numbers are ms)")
    s.add_argument("--restart-delay", help="wait before restarting (plain numbers are ms)")
    s.add_argument("--exp-backoff", help="exponential backoff restart delay base (plain numbers are ms)")
    s.add_argument("--max-memory", help="restart when the tree's RSS exceeds this (e.g. 200M)")
    s.add_argument("--kill-timeout", help="SIGKILL this long after the stop signal (default 1.6s)")
    s.add_argument("--stop-signal", help="stop signal (default SIGTERM)")
    s.add_argument("--wait-port", action="store_true", help="return once the port accepts connections")
    s.add_argument("--time", action="store_true", help="prefix log lines with an ISO-8601 time")
    s.add_argument("--log-max-size", help="rotate logs past this size (default 10M)")
    s.add_argument("--log-retain", help="rotated log files kept per stream (default 10)")
    s.add_argument("--no-log-compress", action="store_true", help="do not gzip rotated logs")

    for name, help in (("stop", "stop processes"), ("restart", "restart processes"), ("delete", "stop and forget processes")):
        c = add(name, help)
        c.add_argument("target", metavar="T", help="a name, a tsm_id, or all")

    ls = add("ls", "list processes", aliases=["list"])
    ls.add_argument("-a", "--all", action="store_true", help="include stopped processes")
    ls.add_argument("--json", action="store_true", help="print JSON")

    d = add("describe", "everything about processes")
    d.add_argument("target", metavar="T")
    d.add_argument("--json", action="store_true", help="print JSON")

    lg = add("logs", "show log lines; `tsm logs rotate T` rotates now")
    lg.add_argument("target", metavar="T")
    lg.add_argument("rest", nargs="?", metavar="T2", help=argparse.SUPPRESS)
    lg.add_argument("-n", "--lines", type=_int_arg("--lines"), default=50, help="lines per stream (default 50)")
    lg.add_argument("-f", "--follow", action="store_true", help="keep printing new lines")
    g = lg.add_mutually_exclusive_group()
    g.add_argument("--out", action="store_true", help="stdout only")
    g.add_argument("--err", action="store_true", help="stderr only")
    lg.add_argument("--since", help="10m, 2h, 1d or an ISO time")
    lg.add_argument("--raw", action="store_true", help="lines exactly as written, no labels")
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

    ev = add("events", "lifecycle events from the history")
    ev.add_argument("target", nargs="?", metavar="T")
    ev.add_argument("--since", help="10m, 2h, 1d or an ISO time")
    ev.add_argument("--json", action="store_true", help="print JSON")

    rp = add("report", "uptime and resource report per process")
    rp.add_argument("--since", help="10m, 2h, 1d or an ISO time")
    rp.add_argument("--json", action="store_true", help="print JSON")

    add("monit", "a live view of processes, CPU and memory")

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
    ns = parser.parse_args(argv)
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
            raise UsageError(f"{prog} start: a command is needed")
    return ns


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
    )


def spec_from_args(ns: argparse.Namespace, *, cwd: str | None = None, env: dict[str, str] | None = None):
    """The :class:`~tsm_notebook.spec.LaunchSpec` a parsed ``start`` describes."""
    from ..core.spec import build_spec  # only `start` pays for it: listing stays fast

    env = dict(os.environ if env is None else env)
    return build_spec(**spec_kwargs(ns), base_cwd=cwd, path_env=env.get("PATH"))


def child_environment(env: dict[str, str] | None = None) -> dict[str, str]:
    """The environment a started process inherits: the caller's (like running it in that terminal
    or kernel), less what only makes sense inside the caller: a kernel's inline plotting backend
    and parent ids, and the identity of a managed process that starts another."""
    env = dict(os.environ if env is None else env)
    for key in ("JPY_PARENT_PID", "JPY_SESSION_NAME", "TSM_NAME", "TSM_ID"):
        env.pop(key, None)
    if env.get("MPLBACKEND", "").startswith("module://matplotlib_inline"):
        del env["MPLBACKEND"]
    return env


def start(client: Client, spec, env: dict[str, str] | None = None) -> dict[str, Any]:
    """Start a process from a spec; the child inherits :func:`child_environment`."""
    return client.call("start", spec=spec.to_dict(), env=child_environment(env))


def update(client: Client) -> dict[str, Any]:
    """Restart the daemon keeping the processes: the running ones come back under the new one."""
    old = client.kill(keep=True)
    info = client.call("ping")
    return {"old_pid": old, "new_pid": info["pid"], "version": info["version"], "processes": info["running"]}


__all__ = ["ArgumentParser", "Help", "SUBCOMMANDS", "TARGETED", "build_parser", "parse", "spec_from_args", "spec_kwargs",
           "split_host", "start", "update", "child_environment"]
