"""Port checks for the daemon: is a port free, who holds it, which ports a process tree listens on."""

from __future__ import annotations

import errno
import socket

import psutil


def is_free(port: int) -> bool:
    """True when a server could bind ``port`` on every interface right now.

    SO_REUSEADDR is set as servers set it, so sockets in TIME_WAIT do not count as taken.
    """
    for family, addr in ((socket.AF_INET, "0.0.0.0"), (socket.AF_INET6, "::")):
        try:
            s = socket.socket(family, socket.SOCK_STREAM)
        except OSError:
            continue
        try:
            s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            if family == socket.AF_INET6:
                s.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 1)
            s.bind((addr, port))
        except OSError as exc:
            if exc.errno == errno.EADDRINUSE or exc.errno == errno.EACCES:
                return False
            if family == socket.AF_INET:
                return False
        finally:
            s.close()
    return True


def first_free(start: int, limit: int = 65535) -> int | None:
    """The first free port >= ``start``, or None."""
    for port in range(start, limit + 1):
        if is_free(port):
            return port
    return None


def holder(port: int) -> tuple[int | None, str | None]:
    """(pid, command line) of the process listening on ``port``, or (None, None) if unknown."""
    try:
        conns = psutil.net_connections("tcp")
    except (psutil.AccessDenied, OSError):
        return None, None
    for c in conns:
        if c.status == psutil.CONN_LISTEN and c.laddr and c.laddr.port == port and c.pid:
            try:
                return c.pid, " ".join(psutil.Process(c.pid).cmdline())
            except psutil.Error:
                return c.pid, None
    return None, None


def accepts(port: int, host: str = "127.0.0.1", timeout: float = 0.2) -> bool:
    """True when a TCP connection to ``host:port`` succeeds now."""
    try:
        with socket.create_connection((host, port), timeout=timeout):
            return True
    except OSError:
        return False


def tree_pids(pid: int) -> list[int]:
    """``pid`` and all its live descendants (empty if it is gone)."""
    try:
        p = psutil.Process(pid)
        return [pid] + [c.pid for c in p.children(recursive=True)]
    except psutil.Error:
        return []


def listening(pids: list[int]) -> list[int]:
    """Sorted TCP ports on which any of ``pids`` listens."""
    wanted = set(pids)
    if not wanted:
        return []
    try:
        conns = psutil.net_connections("tcp")
    except (psutil.AccessDenied, OSError):
        return []
    return sorted({c.laddr.port for c in conns if c.status == psutil.CONN_LISTEN and c.pid in wanted and c.laddr})
