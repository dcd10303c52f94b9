"""``tsm bridge``: what ``ssh HOST tsm bridge`` runs for a client on another machine.

It joins its stdin and stdout to this home's daemon socket, so the remote client speaks the daemon's
own protocol through the ssh channel. It imports almost nothing: every remote request pays its start.
"""

from __future__ import annotations

import os
import sys

from ..core.paths import Home


def bridge(home: Home) -> int:
    """Join stdin/stdout to the daemon's socket (starting the daemon when none runs) until either
    side closes: what ``ssh HOST tsm bridge`` runs for a client on another machine."""
    import select
    import socket

    def connect() -> socket.socket:
        s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        try:
            s.connect(str(home.socket))
        except OSError:
            s.close()
            raise
        return s

    try:
        sock = connect()
    except OSError:
        from ..client.client import Client

        Client(home).call("ping")  # starts the daemon (ping answers whatever its version)
        sock = connect()
    inp, out = sys.stdin.fileno(), sys.stdout.fileno()
    open_in = True
    while True:
        ready, _, _ = select.select([sock] + ([inp] if open_in else []), [], [])
        if inp in ready:
            data = os.read(inp, 1 << 16)
            if data:
                sock.sendall(data)
            else:  # the client is done: let the daemon finish its replies, then stop
                open_in = False
                sock.shutdown(socket.SHUT_WR)
        if sock in ready:
            data = sock.recv(1 << 16)
            if not data:
                return 0
            view = memoryview(data)
            while view:
                view = view[os.write(out, view):]


__all__ = ["bridge"]
