"""Who is at the other end of a Unix socket (``SO_PEERCRED``), checked by both sides: the daemon
serves only its own user (and root), and a client talks only to a daemon of its own user, so a
listener another user planted on ``daemon.sock`` never receives a request and its environment."""

from __future__ import annotations

import os
import socket
import struct

_CRED = struct.Struct("3i")  # pid, uid, gid


def peer_uid(sock: socket.socket | None) -> tuple[int | None, int | None]:
    """(pid, uid) of the peer, or (None, None) where the platform cannot say."""
    opt = getattr(socket, "SO_PEERCRED", None)
    if sock is None or opt is None:
        return None, None
    try:
        pid, uid, _ = _CRED.unpack(sock.getsockopt(socket.SOL_SOCKET, opt, _CRED.size))
    except OSError:
        return None, None
    return pid, uid


def peer_refusal(sock: socket.socket | None, *, allow_root: bool) -> str | None:
    """Why the peer is refused, or None when it runs as us (or as root, if ``allow_root``)."""
    pid, uid = peer_uid(sock)
    if uid is None:
        return None
    me = os.geteuid()
    if uid == me or (allow_root and uid == 0):
        return None
    return f"the peer (pid {pid}) runs as uid {uid}, not as uid {me}"
