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

    if ns.follow:
        raise UsageError(f"%tsm logs -f follows local processes; for host {ns.host} use `tsm -H {ns.host} logs -f` in a terminal")
    if ns.target == "rotate" and ns.rest:
        return c.call("rotate", target=ns.rest)
    stream = "out" if ns.out else "err" if ns.err else "both"
    groups = c.call("logs", target=ns.target, stream=stream, lines=ns.lines, since=ns.since)
    lines = LogLines([LogLine(d["stream"], d["raw"].encode("latin-1"), d["time"], g["name"]) for g in groups for d in g["lines"]],
                     labelled=len(groups) > 1, raw=ns.raw)
    return lines.to_dicts() if ns.json else lines


__all__ = ["close_all", "run", "shared_remote"]
