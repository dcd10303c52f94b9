"""``%tsm -H NAME ...`` (and ``%tsm @NAME ...``): the magic's subcommands on another host.

Each request goes to the host's daemon through a shared :class:`~tsm_notebook.client.remote.RemoteClient`
per host (one ssh channel kept open across cells, so a line costs a round trip). ``ls`` gives the
frame of :func:`tsm_notebook.processes` with its ``host`` column; ``-H all`` or a comma list work
for ``ls``, ``events`` and ``report``.
"""

from __future__ import annotations

import argparse
import threading
from typing import Any

from ..client import commands
from ..client.remote import RemoteClient, configured_hosts, host_names
from ..core.errors import UsageError
from ..core.logread import LogLine
from ..core.paths import Home

_clients: dict[tuple, RemoteClient] = {}
_lock = threading.Lock()


class _SharedRemote(RemoteClient):
    """A remote client whose requests are serialized (the panel's thread and cells share it)."""

    def __init__(self, host: Any) -> None:
        super().__init__(host)
        self.lock = threading.RLock()

    def call(self, cmd: str, **args: Any) -> Any:
        with self.lock:
            return super().call(cmd, **args)


def shared_remote(name: str, home: Any = None) -> RemoteClient:
    """The shared client of host ``name`` (``[hosts.NAME]`` of ``home``'s config.toml)."""
    h = home if isinstance(home, Home) else Home.resolve(home)
    hosts = configured_hosts(h)
    host_names(name, hosts)
    key = (str(h.root), name, hosts[name])
    with _lock:
        c = _clients.get(key)
        if c is None:
            c = _clients[key] = _SharedRemote(hosts[name])
        return c


def close_all() -> None:
    """Close every shared remote client (their ssh channels end; the shared masters stay)."""
    with _lock:
        for c in _clients.values():
            c.close()
        _clients.clear()


def run(ns: argparse.Namespace) -> Any:
    """Carry out a parsed ``%tsm`` line whose ``ns.host`` names another host (or several)."""
    from . import frames

    home = Home.resolve(ns.home)
    names = host_names(ns.host, configured_hosts(home))
    if ns.cmd == "ls":
        df = frames.processes(home, hosts=names)
        return df[df["status"] != "stopped"] if not ns.all and len(df) else df
    if ns.cmd == "events":
        return frames.events(ns.target, ns.since, home=home, hosts=names)
    if ns.cmd == "report":
        return frames.uptime_report(ns.since, home=home, hosts=names)
    if len(names) != 1:
        raise UsageError(f"%tsm {ns.cmd} works on one host at a time (only ls, events and report take several)")
    if names == ["local"]:
        return None
    c = shared_remote(names[0], home)
    if ns.cmd == "start":
        return c.call("start_build", build=commands.spec_kwargs(ns))
    if ns.cmd in ("stop", "restart", "delete", "describe", "flush"):
        return c.call(ns.cmd, target=ns.target)
    if ns.cmd == "logs":
        return _logs(c, ns)
    if ns.cmd in ("ping", "patrol", "save", "resurrect"):
        return c.call({"save": "dump"}.get(ns.cmd, ns.cmd))
    if ns.cmd == "kill":
        return {"daemon_pid": c.kill()}
    raise UsageError(f"%tsm {ns.cmd} does not take -H (run it on that host)")


def _logs(c: RemoteClient, ns: argparse.Namespace) -> Any:
    from .api import LogLines

    stream = "out" if ns.out else "err" if ns.err else "both"
    if ns.follow:
        return remote_logtail(c, ns.target, lines=ns.lines or 50, stream=stream)
    if ns.target == "rotate" and ns.rest:
        return c.call("rotate", target=ns.rest)
    groups = c.call("logs", target=ns.target, stream=stream, lines=ns.lines, since=ns.since)
    lines = LogLines([LogLine(d["stream"], d["raw"].encode("latin-1"), d["time"], g["name"]) for g in groups for d in g["lines"]],
                     labelled=len(groups) > 1, raw=ns.raw)
    return lines.to_dicts() if ns.json else lines


def remote_logtail(client: RemoteClient, target: Any, *, lines: int = 50, stream: str = "both",
                   refresh: float | None = 1.0) -> Any:
    """A :class:`~tsm_notebook.notebook.logtail.LogTail` of a process on another host: the same
    widget, fed by the host's ``logs`` request (one round trip per refresh on the open channel)
    instead of reading files. ``%tsm -H NAME logs T -f``."""
    from .logtail import LogTail

    class RemoteLogTail(LogTail):
        def __init__(self) -> None:
            self._remote, self._target, self._shown = client, None, None
            super().__init__(None, lines=lines, stream=stream, refresh=None)
            self._remote.call("describe", target=target)  # an unknown target is ProcessNotFound now
            self._target = target
            self.refresh()
            if refresh:
                self._start_thread(refresh)

        def refresh(self) -> None:
            from . import html as tsm_html

            if self._target is None:
                return super().refresh()
            groups = self._remote.call("logs", target=self._target, stream=self.stream, lines=self.lines)
            several = len(groups) > 1
            shown = [(g["name"] if several else None, d["stream"], LogLine(d["stream"], d["raw"].encode("latin-1"), d["time"]).text,
                      d["time"]) for g in groups for d in g["lines"]]
            if shown == self._shown:
                return
            label = ", ".join(g["name"] for g in groups[:3])
            self.title.value = f"<b>{label}</b> <span class='tsm-muted'>logs on {client.host.name}</span>"
            self.output.value = tsm_html.log_lines(shown, empty="no log lines yet", style=self._own_style)
            self.text = "\n".join(f"{w} | {t}" if w else t for w, _s, t, _ in shown)
            self._shown = shown

    return RemoteLogTail()


__all__ = ["close_all", "remote_logtail", "run", "shared_remote"]
