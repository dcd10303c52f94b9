"""The Python API: start, stop, restart, delete and describe managed processes from any code.

::

    import tsm_notebook as tsm

    web = tsm.start("python -m http.server 8000", name="web", wait_port=True)
    web                      # in a notebook: a card with name, id, pid, port link, status, logs
    tsm.restart("web-8000")  # a name, a tsm_id, or "all"
    tsm.stop(web.name)

Every function talks to the daemon of ``home`` (default ``$TSM_HOME``, else ``~/.tsm``), which is
started on demand and detached: the processes belong to it, never to the calling kernel, so they
outlive a kernel restart. One :class:`~tsm_notebook.client.Client` per home is shared by the
whole Python process and serialized by a lock, so a panel refreshing from a thread and a cell can
call at the same time. Failures raise the exceptions of :mod:`tsm_notebook.errors`
(:class:`~tsm_notebook.errors.ProcessNotFound`, :class:`~tsm_notebook.errors.PortInUse`, ...).

Values follow the rest of the package: durations are seconds and sizes bytes when given as
numbers; strings are command-line values (``"500ms"``, ``"200M"``; a bare number in a string is
milliseconds, as with PM2's flags). Nothing here imports pandas, IPython or ipywidgets.
"""

from __future__ import annotations

import html
import os
import threading
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any

from ..client import commands
from ..core import render
from . import html as tsm_html
from ..client.client import RESURRECT_TIMEOUT, Client
from ..core.errors import UsageError
from ..core.paths import Home
from .logs_api import LogLines

__all__ = [
    "LogLines",
    "Process",
    "delete",
    "describe",
    "describe_all",
    "flush",
    "kill",
    "patrol",
    "ping",
    "process_card",
    "restart",
    "resurrect",
    "rotate_logs",
    "save",
    "shared_client",
    "start",
    "start_spec",
    "stop",
    "update",
]

# ---------------------------------------------------------------------- the shared client


class _SharedClient(Client):
    """A client whose requests are serialized: one socket, one request in flight at a time."""

    def __init__(self, home: Home) -> None:
        super().__init__(home)
        self.lock = threading.RLock()  # re-entrant: kill() and update() call call()

    def call(self, cmd: str, **args: Any) -> Any:
        with self.lock:
            return super().call(cmd, **args)

    def long_call(self, cmd: str, timeout: float, **args: Any) -> Any:
        with self.lock:  # the longer wait is this request's alone
            return super().long_call(cmd, timeout, **args)

    def kill(self, *, keep: bool = False, timeout: float = 60.0) -> int | None:
        with self.lock:
            return super().kill(keep=keep, timeout=timeout)


_clients: dict[Path, _SharedClient] = {}
_clients_lock = threading.Lock()
_clients_pid = os.getpid()


def shared_client(home: str | os.PathLike[str] | Home | None = None) -> Client:
    """The client of ``home`` shared by this Python process (thread-safe; created on first use).

    ``home`` is resolved at each call, so a changed ``$TSM_HOME`` selects another daemon. After a
    fork the child gets fresh clients: a socket shared with the parent would mix their replies.
    The daemon is started on the first request if none answers (within ~15 s, else DaemonError).
    """
    global _clients_pid
    h = home if isinstance(home, Home) else Home.resolve(home)
    with _clients_lock:
        if os.getpid() != _clients_pid:
            _clients.clear()
            _clients_pid = os.getpid()
        c = _clients.get(h.root)
        if c is None:
            c = _clients[h.root] = _SharedClient(h)
        return c


def _home(home: str | os.PathLike[str] | Home | None) -> Home:
    return home if isinstance(home, Home) else Home.resolve(home)


# ---------------------------------------------------------------------- Process


class Process:
    """A snapshot of one managed process, as the daemon described it when it was taken.

    Attributes read the snapshot (``name``, ``tsm_id``, ``pid``, ``port``, ``status``,
    ``uptime`` in seconds, ``memory`` in bytes, ...); :meth:`refresh` takes a new one. The
    methods act on the process through the daemon and return new snapshots. In a notebook the
    HTML repr is a compact card; the text repr is one line.
    """

    __slots__ = ("_row", "home")

    def __init__(self, row: Mapping[str, Any], home: str | os.PathLike[str] | Home | None = None) -> None:
        self._row = dict(row)
        self.home = _home(home)

    # --- fields (raw values: seconds, bytes, None for unknown)

    @property
    def name(self) -> str:
        """The unique name (``web-8000``)."""
        return self._row["name"]

    @property
    def tsm_id(self) -> int:
        """The id, never reused in this home."""
        return self._row["tsm_id"]

    @property
    def pid(self) -> int | None:
        """The pid of the running child, None when none runs."""
        return self._row.get("pid")

    @property
    def port(self) -> int | None:
        """The declared port, or None."""
        return self._row.get("port")

    @property
    def status(self) -> str:
        """``launching``, ``online``, ``stopping``, ``stopped``, ``waiting``, ``errored`` (or ``deleted``)."""
        return self._row["status"]

    @property
    def uptime(self) -> float | None:
        """Seconds online when the snapshot was taken, None unless online."""
        return self._row.get("uptime")

    @property
    def start_time(self) -> float | None:
        """Epoch seconds of the last start, or None."""
        return self._row.get("start_time")

    @property
    def restarts(self) -> int:
        """Restarts so far."""
        return self._row.get("restarts") or 0

    @property
    def command(self) -> str:
        """The command as given."""
        return self._row.get("command", "")

    @property
    def cwd(self) -> str | None:
        """The working directory."""
        return self._row.get("cwd")

    @property
    def cpu(self) -> float | None:
        """CPU percent of the process tree at the latest sample, or None."""
        return self._row.get("cpu")

    @property
    def memory(self) -> int | None:
        """RSS bytes of the process tree at the latest sample, or None."""
        return self._row.get("memory")

    @property
    def out_log(self) -> str | None:
        """Path of the live stdout log."""
        return self._row.get("out_log")

    @property
    def err_log(self) -> str | None:
        """Path of the live stderr log."""
        return self._row.get("err_log")

    @property
    def url(self) -> str | None:
        """Where a browser reaches the port (see :func:`tsm_notebook.html.port_url`), or None."""
        return tsm_html.port_url(self.port, self.home)

    def as_dict(self) -> dict[str, Any]:
        """The raw row (a copy): every field the daemon sent."""
        return dict(self._row)

    # --- actions

    def refresh(self) -> Process:
        """A new snapshot of the same process (by tsm_id). Raises ProcessNotFound once deleted."""
        return describe(str(self.tsm_id), home=self.home)

    def stop(self) -> Process:
        """Stop it (stop signal, SIGKILL after ``kill_timeout``); returns the new snapshot."""
        return stop(str(self.tsm_id), home=self.home)[0]

    def restart(self) -> Process:
        """Restart it and wait until it is online again; returns the new snapshot."""
        return restart(str(self.tsm_id), home=self.home)[0]

    def delete(self) -> Process:
        """Stop and forget it (its directory and logs go too); returns a ``deleted`` snapshot."""
        return delete(str(self.tsm_id), home=self.home)[0]

    def logs(self, lines: int | None = 50, stream: str = "both", since: str | float | None = None) -> LogLines:
        """Its last ``lines`` log lines per stream (see :func:`tsm_notebook.logs`), oldest first.

        Reads the files directly (one request to find them); never blocks on the process.
        """
        from .logs_api import logs

        return LogLines(logs(str(self.tsm_id), lines=lines, stream=stream, since=since, home=self.home))

    # --- reprs

    def __repr__(self) -> str:
        return (
            f"Process(name={self.name!r}, tsm_id={self.tsm_id}, pid={self.pid}, port={self.port}, "
            f"status={self.status!r}, uptime={render.duration(self.uptime)!r})"
        )

    def _repr_html_(self) -> str:
        return process_card(self._row)


def process_card(row: Mapping[str, Any]) -> str:
    """The HTML card of a process row: name and status, then id, pid, port link, uptime, restarts,
    cpu, memory, command, cwd and log paths. Every value is escaped."""
    e = html.escape
    cells = [
        ("id", e(str(row.get("tsm_id")))),
        ("pid", e(str(row.get("pid") or "-"))),
        ("port", tsm_html.port_link(row.get("port"))),
        ("uptime", e(render.duration(row.get("uptime")))),
        ("restarts", e(str(row.get("restarts") or 0))),
        ("cpu", e(render.percent(row.get("cpu")))),
        ("memory", e(render.size(row.get("memory")))),
        ("command", f"<code>{e(str(row.get('command', '')))}</code>"),
        ("cwd", f"<code>{e(str(row.get('cwd') or '-'))}</code>"),
        ("stdout", f"<code>{e(str(row.get('out_log') or '-'))}</code>"),
        ("stderr", f"<code>{e(str(row.get('err_log') or '-'))}</code>"),
    ]
    note = render.start_note(row)
    if note:
        cells.insert(0, ("start", f"<i>{e(note)}</i>"))
    body = "".join(
        f'<tr><th style="text-align:left;padding:1px 8px 1px 0;font-weight:normal;color:var(--jp-ui-font-color2,#57606a)">{k}</th>'
        f'<td style="text-align:left;padding:1px 0">{v}</td></tr>'
        for k, v in cells
    )
    return (
        '<div class="tsm-process" style="display:inline-block;border:1px solid var(--jp-border-color2,#d0d7de);border-radius:4px;'
        'padding:6px 10px;font-size:12px;line-height:1.4">'
        f'<div style="margin-bottom:4px"><b>{e(str(row.get("name")))}</b> '
        f"{tsm_html.status_badge(row.get('status'))}</div>"
        f"<table style=\"border-collapse:collapse;margin:0\">{body}</table></div>"
    )


# ---------------------------------------------------------------------- actions


def start_spec(spec: Any, *, home: str | os.PathLike[str] | Home | None = None) -> Process:
    """Start the process a :class:`~tsm_notebook.spec.LaunchSpec` describes; returns its snapshot.

    The child inherits this process's environment (less what only makes sense inside it, see
    :func:`tsm_notebook.commands.child_environment`) plus the spec's variables. Returns once the
    process is online (after its launch window, or once its port accepts with ``wait_port``).
    Safe to re-run: the same spec as a running process returns that process; a changed spec
    restarts it with the new one (the snapshot's ``action`` says which, and its card shows it).
    Raises PortInUse, StartFailed, UsageError, DaemonError.
    """
    from .proxy import url_template

    h = _home(home)
    env = commands.child_environment(kernel=True)
    env["TSM_URL_TEMPLATE"] = url_template(h)  # the daemon fills in the port: TSM_URL, TSM_BASE_PATH
    return Process(commands.start(shared_client(h), spec, env, kernel=True), h)


def start(
    cmd: str | Sequence[str] | None = None,
    *,
    argv: Sequence[str] | None = None,
    name: str | None = None,
    port: int | str | None = None,
    cwd: str | os.PathLike[str] | None = None,
    env: Mapping[str, str] | Iterable[str] | None = None,
    env_file: str | os.PathLike[str] | None = None,
    interpreter: str | None = None,
    autorestart: bool = True,
    max_restarts: int | None = None,
    min_uptime: float | str | None = None,
    restart_delay: float | str | None = None,
    exp_backoff: float | str | None = None,
    max_memory: int | str | None = None,
    kill_timeout: float | str | None = None,
    stop_signal: str | int | None = None,
    wait_port: bool | float | str = False,
    no_port: bool = False,
    time: bool = False,
    log_max_size: int | str | None = None,
    log_retain: int | None = None,
    log_compress: bool | None = None,
    watch: bool | str | Sequence[str] | None = None,
    watch_ignore: str | Sequence[str] | None = None,
    cron_restart: str | None = None,
    cron: str | None = None,
    on_crash: str | None = None, on_errored: str | None = None, on_restart: str | None = None,
    on_memory_limit: str | None = None, on_online: str | None = None, on_stop: str | None = None,
    home: str | os.PathLike[str] | Home | None = None,
) -> Process:
    """Start a managed process and return its snapshot once it is online.

    ``cmd`` is a command string (run through ``/bin/sh -c`` only when it uses shell syntax) or a
    list of arguments; ``argv`` is the explicit form of the latter. ``name`` is the base name:
    with a known port the process is called ``NAME-PORT``. ``port`` is a number, or ``"P+"`` for
    the first free port from P; without it the port comes from ``PORT`` in ``env`` or the command
    (``:8000``, ``--port 8000``, ``http.server 8000``). ``env`` adds variables (a mapping or
    ``KEY=VALUE`` strings) to this process's environment, which the child inherits.

    Durations (``min_uptime``, ``restart_delay``, ``exp_backoff``, ``kill_timeout``) are seconds
    as numbers; ``max_memory`` and ``log_max_size`` are bytes as numbers; strings take units
    (``"500ms"``, ``"200M"``). ``wait_port=True`` returns only once the port accepts connections
    on any address the process tree listens on (up to 60 s; a number of seconds or ``"2m"`` sets
    the limit). ``no_port=True`` declares none (a ``-p 4`` in the command means something else). ``time=True`` prefixes log lines with their time.

    ``watch=True`` (or paths) restarts it when a file there changes (``watch_ignore`` globs
    aside); ``cron_restart`` restarts it on a cron schedule, ``cron`` starts it as a one-shot job
    on one (the daemon's local time); ``on_crash`` ... ``on_stop`` are shell commands the daemon
    runs on those events (see the README's "Triggers").

    Raises UsageError (a bad option, a command that cannot run), ProcessExists, PortInUse,
    StartFailed (it died during its launch window; ``stderr`` holds its last lines), DaemonError.
    """
    from ..core.spec import build_spec

    if cmd is not None and not isinstance(cmd, str):
        if argv is not None:
            raise UsageError("give the command once: as cmd or as argv")
        argv, cmd = list(cmd), None
    spec = build_spec(
        command=cmd,
        argv=None if argv is None else list(argv),
        name=name,
        port=port,
        no_port=no_port,
        cwd=cwd,
        env_file=env_file,
        env=env or (),
        interpreter=interpreter,
        autorestart=autorestart,
        max_restarts=max_restarts,
        min_uptime=min_uptime,
        restart_delay=restart_delay,
        exp_backoff=exp_backoff,
        max_memory=max_memory,
        kill_timeout=kill_timeout,
        stop_signal=stop_signal,
        wait_port=wait_port,
        time=time,
        log_max_size=log_max_size,
        log_retain=log_retain,
        log_compress=log_compress,
        watch=watch, watch_ignore=watch_ignore, cron_restart=cron_restart, cron=cron,
        on_crash=on_crash, on_errored=on_errored, on_restart=on_restart,
        on_memory_limit=on_memory_limit, on_online=on_online, on_stop=on_stop,
    )
    return start_spec(spec, home=home)


def _rows(cmd: str, target: str | int, home: Any) -> list[Process]:
    h = _home(home)
    return [Process(r, h) for r in shared_client(h).call(cmd, target=str(target))]


def stop(target: str | int, *, home: str | os.PathLike[str] | Home | None = None) -> list[Process]:
    """Stop the processes ``target`` names (a name, a tsm_id, or ``"all"``); returns snapshots.

    Each process group gets its stop signal, then SIGKILL after ``kill_timeout``; this returns
    once they are gone. Raises ProcessNotFound, DaemonError.
    """
    return _rows("stop", target, home)


def restart(target: str | int, *, home: str | os.PathLike[str] | Home | None = None) -> list[Process]:
    """Restart the processes ``target`` names (stopped ones are started); returns once online.

    Raises ProcessNotFound, PortInUse, StartFailed, DaemonError.
    """
    return _rows("restart", target, home)


def reset(target: str | int, *, home: str | os.PathLike[str] | Home | None = None) -> list[Process]:
    """Clear the restart counters (restarts, unstable restarts) of the target's processes."""
    return _rows("reset", target, home)


def delete(target: str | int, *, home: str | os.PathLike[str] | Home | None = None) -> list[Process]:
    """Stop and forget the processes ``target`` names; their directories and logs are removed.

    Returns their last snapshots with status ``deleted``. Raises ProcessNotFound, DaemonError.
    """
    h = _home(home)
    c = shared_client(h)
    with c.lock:  # type: ignore[attr-defined]  # describe + delete as one step for this process
        before = {r["name"]: r for r in c.call("describe", target=str(target))}
        names = c.call("delete", target=str(target))
    return [Process({**before.get(n, {"name": n}), "status": "deleted", "pid": None, "uptime": None}, h) for n in names]


def describe(target: str | int, *, home: str | os.PathLike[str] | Home | None = None) -> Process:
    """A snapshot of one process (a name or a tsm_id). Raises ProcessNotFound, UsageError for ``all``."""
    if str(target) == "all":
        raise UsageError("describe() takes one process; use describe_all() or processes() for all")
    return _rows("describe", target, home)[0]


def describe_all(*, home: str | os.PathLike[str] | Home | None = None) -> list[Process]:
    """Snapshots of every process, by tsm_id."""
    return _rows("describe", "all", home)


def ping(*, home: str | os.PathLike[str] | Home | None = None) -> dict[str, Any]:
    """Start the daemon if needed; returns ``{pid, version, started, home, processes, running}``."""
    return shared_client(home).call("ping")


def save(*, home: str | os.PathLike[str] | Home | None = None) -> dict[str, Any]:
    """Write ``dump.json`` with every running process; returns ``{path, count}``."""
    return shared_client(home).call("dump")


def resurrect(*, home: str | os.PathLike[str] | Home | None = None) -> dict[str, Any]:
    """Start what ``dump.json`` holds; returns ``{started, skipped, failed: {name: message}}``.

    Raises UsageError when there is no dump.
    """
    return shared_client(home).long_call("resurrect", RESURRECT_TIMEOUT)


def patrol(*, home: str | os.PathLike[str] | Home | None = None) -> dict[str, Any]:
    """Reconcile the daemon's table with reality; returns ``{found: [str], fixed: [str]}``."""
    return shared_client(home).call("patrol")


def flush(target: str | int = "all", *, home: str | os.PathLike[str] | Home | None = None) -> list[str]:
    """Empty the live log files of ``target``; returns the names flushed."""
    return shared_client(home).call("flush", target=str(target))


def rotate_logs(target: str | int, *, home: str | os.PathLike[str] | Home | None = None) -> list[str]:
    """Rotate the logs of ``target`` now (at the next line boundary); returns the names rotated."""
    return shared_client(home).call("rotate", target=str(target))


def kill(*, home: str | os.PathLike[str] | Home | None = None) -> int | None:
    """Stop every process, then the daemon; returns its pid once it is gone (None if none ran)."""
    return shared_client(home).kill()


def update(*, home: str | os.PathLike[str] | Home | None = None) -> dict[str, Any]:
    """Restart the daemon keeping the processes; returns ``{old_pid, new_pid, version, processes}``."""
    c = shared_client(home)
    with c.lock:  # type: ignore[attr-defined]
        return commands.update(c)
