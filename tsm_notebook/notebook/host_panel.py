"""The panel across hosts: ``Panel(hosts="all")`` (or a name, a comma list, a list of names).

The panel talks to a :class:`HostsClient` instead of one daemon's client. Its ``ls`` asks every
host at once over channels kept open between refreshes, and returns their rows with a ``host``
field, the name and id prefixed by the host (``gpu:train``, ``gpu:3``) so that the panel's
selector, actions and messages route to the right host unchanged. A host that does not answer
gives one row of status ``unreachable`` and is asked again only after :data:`RETRY_AFTER`
seconds, so the other hosts stay live. A remote process's port is linked once it is forwarded
(the panel's forward button, or ``tsm forward HOST:PORT``): the link opens the local end.
"""

from __future__ import annotations

import threading
import time
from typing import Any

from ..client.client import Client
from ..client.remote import LOCAL, client_for, configured_hosts
from ..core.errors import TsmError, UsageError
from ..core.paths import Home
from .host_frames import host_list

RETRY_AFTER = 10.0  # seconds before a host that did not answer is asked again
WAIT = 1.5  # seconds a refresh waits for the hosts; a slower one shows its last rows meanwhile
FIRST_WAIT = 5.0  # the first refresh has no rows to show meanwhile: it waits longer (a cold ssh handshake)
SEP = ":"

__all__ = ["HostsClient", "forward", "RETRY_AFTER"]


def _split(target: Any) -> tuple[str, Any]:
    text = str(target)
    host, sep, rest = text.partition(SEP)
    if not sep:
        return LOCAL, target
    return host, int(rest) if rest.isdigit() else rest


class HostsClient:
    """What the panel calls (``call``, ``close``, ``autostart``), over several hosts.

    ``call("ls")`` fans out; any other command's ``target`` is ``HOST:ID`` or ``HOST:NAME`` and
    goes to that host; a command without a target (``start``) goes to the local home.
    """

    def __init__(self, hosts: Any, home: Home, *, timeout: float = 10.0):
        self.home = home
        self.names = host_list(hosts=hosts, home=home) or [LOCAL]
        self._hosts = configured_hosts(home)
        self.timeout = timeout
        self.autostart = True  # the panel turns it off after its first refresh (local daemon only)
        self._clients: dict[str, Client] = {}
        self._lock = threading.Lock()
        self._down: dict[str, tuple[float, str]] = {}  # host -> (retry at, why)
        #: (host, remote port) -> local port of a forward opened here
        self.forwards: dict[tuple[str, int], int] = {}
        self._pool: Any = None
        self._pending: dict[str, Any] = {}  # host -> the ls still running for it
        self._last: dict[str, Any] = {}  # host -> its last answer (rows, or the error)

    def _client(self, name: str) -> Client:
        with self._lock:
            c = self._clients.get(name)
            if c is None:
                c = self._clients[name] = client_for(name, home=self.home, timeout=self.timeout, hosts=self._hosts)
            if name == LOCAL:
                c.autostart = self.autostart
            return c

    def _ls(self, name: str) -> list[dict] | TsmError:
        down = self._down.get(name)
        if down and time.monotonic() < down[0]:
            return TsmError(down[1])
        try:
            rows = self._client(name).call("ls", all=True)
        except TsmError as exc:
            self._client(name).close()
            self._down[name] = (time.monotonic() + RETRY_AFTER, f"{type(exc).__name__}: {exc.message}")
            return exc
        self._down.pop(name, None)
        return rows

    def call(self, cmd: str, **args: Any) -> Any:
        if cmd == "ls":
            return self._ls_all()
        if "target" not in args:
            return self._client(LOCAL).call(cmd, **args)
        host, target = _split(args.pop("target"))
        if host not in self.names:
            raise UsageError(f"no host {host!r} in this panel")
        return [self._row(host, r) if isinstance(r, dict) else r
                for r in self._client(host).call(cmd, target=target, **args)]

    def _ls_all(self) -> list[dict]:
        """Every host's rows: each host is asked on its own thread, and a refresh waits at most
        :data:`WAIT` seconds (:data:`FIRST_WAIT` the first time), so a host that hangs (until its timeout) never holds the others.
        Meanwhile it shows its last rows, or one row saying it has not answered yet."""
        from concurrent.futures import ThreadPoolExecutor, wait

        with self._lock:
            if self._pool is None:
                self._pool = ThreadPoolExecutor(max_workers=len(self.names), thread_name_prefix="tsm-hosts")
            for name in self.names:
                if name not in self._pending:
                    self._pending[name] = self._pool.submit(self._ls, name)
            pending = dict(self._pending)
        wait(list(pending.values()), timeout=WAIT if self._last else FIRST_WAIT)
        out = []
        for name in self.names:
            f = pending[name]
            if f.done():
                self._pending.pop(name, None)
                self._last[name] = f.result()
            out.extend(self._rows(name, self._last.get(name, TsmError("no answer yet"))))
        return out

    def _row(self, host: str, r: dict) -> dict:
        r = dict(r, host=host, tsm_id=f"{host}{SEP}{r['tsm_id']}", name=f"{host}{SEP}{r['name']}")
        if host != LOCAL:  # a remote port is reachable here only through a forward
            r["remote_port"] = r.get("port")
            r["port"] = self.forwards.get((host, r["port"])) if r.get("port") else None
            r["out_log"] = r["err_log"] = None  # not files of this machine
        return r

    def _rows(self, host: str, result: Any) -> list[dict]:
        if isinstance(result, TsmError):
            return [{"host": host, "tsm_id": f"{host}{SEP}-", "name": f"{host}{SEP}(unreachable)", "status": "unreachable",
                     "command": result.message, "restarts": 0}]
        return [self._row(host, r) for r in result]

    def _remote(self, target: str) -> tuple[str, str] | None:
        """(host, name) of a remote panel name (``gpu:train``) whose host answered last time, else None."""
        host, name = _split(target)
        if host == LOCAL or host not in self.names or host in self._down or isinstance(self._last.get(host), TsmError):
            return None
        return host, str(name)

    def log_reader(self, target: str) -> Any:
        """What a log tail calls at each refresh for a remote row: ``read(stream, lines)`` -> the
        ``logs`` request's lines, asked of that host's daemon (the files are not on this machine)."""

        def read(stream: str, lines: int) -> list[dict]:
            where = self._remote(target)
            if where is None:
                raise TsmError(f"host {_split(target)[0]!r} is not answering")
            groups = self._client(where[0]).call("logs", target=where[1], stream=stream, lines=lines)
            return [d for g in groups for d in g["lines"]]

        return read

    def metrics(self, target: str, window: float) -> list[dict] | TsmError:
        """The metric samples of a remote row's process over the last ``window`` seconds, from its
        host's history (the error, when it does not answer, for the charts to show)."""
        where = self._remote(target)
        if where is None:
            return TsmError(f"host {_split(target)[0]!r} is not answering")
        try:
            return self._client(where[0]).call("metrics", name=where[1], since=f"{window:g}s")
        except TsmError as exc:
            return exc

    @property
    def unreachable(self) -> dict[str, str]:
        """{host: why} of the hosts that did not answer the last refresh."""
        return {h: why for h, (_, why) in self._down.items()}

    def close(self) -> None:
        with self._lock:
            if self._pool is not None:
                self._pool.shutdown(wait=False, cancel_futures=True)
            for c in self._clients.values():
                c.close()
            self._clients.clear()


def forward(client: HostsClient, row: dict) -> str:
    """Open ``tsm forward HOST:PORT`` for a panel row (a managed local ssh process); the row's port
    link then opens the local end. Returns the message the panel shows."""
    host, port = row.get("host"), row.get("remote_port")
    if host in (None, LOCAL) or not port:
        raise UsageError("only a remote process with a port can be forwarded")
    from ..client import commands
    from ..client.remote import forward_command
    from ..core.spec import build_spec

    if (host, int(port)) in client.forwards:
        return f"already forwarded: 127.0.0.1:{client.forwards[(host, int(port))]} -> {host}:{port}"
    name, command = forward_command(client._hosts[host], int(port))
    spec = build_spec(command=command, name=name, port=f"{port}+", wait_port=True)
    with Client(client.home) as local:  # the forward is a local process: its daemon starts if needed
        started = commands.start(local, spec)
    client.forwards[(host, int(port))] = started["port"]
    return f"forwarding 127.0.0.1:{started['port']} -> {host}:{port} ({started['name']})"
