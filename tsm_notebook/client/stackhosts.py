"""Where a stack's apps run: this machine, and the hosts of ``config.toml`` its apps name
(``host = "gpu"``). Used by :mod:`.stack`.

Each place is reached through its own client (the local socket, or the SSH channel of
:class:`~tsm_notebook.client.remote.RemoteClient`), and asked in parallel, each bounded by its
host's timeout: a host that does not answer is an error for its apps alone. The spec of an app
on another host is built by that host's daemon (``build_spec``: its paths, PATH and environment),
then made the stack's instance exactly as a local one (:func:`~tsm_notebook.core.stackfile.instance_spec`).
"""

from __future__ import annotations

TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Any, Callable, Iterable

from ..core.errors import TsmError
from ..core.spec import LaunchSpec
from ..core.stackfile import instance_spec
from .client import Client

__all__ = ["Places", "remote_spec"]


class Places:
    """The places ``names`` (None is this machine, else a configured host's name) of a stack run
    from ``home``; :meth:`client` opens one, :meth:`each` asks several at once."""

    def __init__(self, home: Any, names: Iterable[str | None]) -> None:
        self.home = home
        self.names = list(dict.fromkeys([None, *names]))
        self.hosts: dict[str, Any] = {}
        if any(n is not None for n in self.names):
            from .remote import configured_hosts

            self.hosts = configured_hosts(home)

    def client(self, place: str | None) -> Client:
        """A client of ``place``'s daemon (raises UsageError for a host config.toml no longer has)."""
        if place is None:
            return Client(self.home)
        from .remote import client_for

        return client_for(place, home=self.home, hosts=self.hosts)

    def each(self, work: Callable[[Client, str | None], Any]) -> dict[str | None, Any]:
        """``work(client, place)`` on every place in parallel: {place: its result, or the TsmError
        that stopped it (an unreachable host within its timeout)}. Other exceptions propagate."""
        if len(self.names) == 1:
            with self.client(None) as c:
                return {None: work(c, None)}
        import threading

        out: dict[str | None, Any] = {}
        raised: list[BaseException] = []

        def one(place: str | None) -> None:
            try:
                with self.client(place) as c:
                    out[place] = work(c, place)
            except TsmError as exc:
                out[place] = exc
            except OSError as exc:
                from ..core.errors import HostUnreachable

                out[place] = HostUnreachable(f"host {place}: {exc}", host=place)
            except BaseException as exc:  # noqa: BLE001 -- re-raised in the caller's thread
                raised.append(exc)

        threads = [threading.Thread(target=one, args=(p,), name=f"tsm-stack-host-{p or 'local'}", daemon=True)
                   for p in self.names]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        if raised:
            raise raised[0]
        return {p: out[p] for p in self.names}


def remote_spec(c: Client, app: Any, i: int, stack: str) -> tuple[LaunchSpec, dict[str, str]]:
    """(instance ``i`` of ``app`` built by the daemon of ``c``'s host, the environment a child
    started there inherits). Raises UsageError naming the host when the host cannot build it
    (a cwd or a program it does not have)."""
    from ..core.errors import UsageError

    try:
        got = c.call("build_spec", build=app.builds[i])
    except UsageError as exc:
        raise UsageError(f"on host {app.host}: {exc.message}", host=app.host) from None
    return instance_spec(LaunchSpec.from_dict(got["spec"]), app, i, stack), got["env"]
