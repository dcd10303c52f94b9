"""Measuring helpers for the benchmark: wall time, memory, CPU, ports, pids, summaries.

Every wait here polls against a ``time.monotonic()`` deadline and raises ``TimeoutError`` when the
deadline passes; nothing sleeps blindly. Times are seconds (float), memory is bytes (int).
"""

from __future__ import annotations

import os
import socket
import statistics
import subprocess
import time
from collections.abc import Callable, Collection, Iterable, Mapping
from typing import Any, TypeVar

import psutil

T = TypeVar("T")

#: How long a polling loop sleeps between looks, in seconds: short next to anything we time.
POLL = 0.002


def wall(
    argv: list[str],
    env: Mapping[str, str] | None = None,
    *,
    ok: Collection[int] | None = (0,),
    timeout: float = 300.0,
    cwd: str | os.PathLike[str] | None = None,
) -> float:
    """Run ``argv`` to completion and return its wall time in seconds.

    Output is captured (and dropped) so a chatty command costs what it costs through a pipe.
    Raises ``subprocess.CalledProcessError`` (with the output attached) when the exit code is not
    in ``ok`` (``None`` accepts any), and ``subprocess.TimeoutExpired`` after ``timeout`` seconds.
    """
    started = time.monotonic()
    done = subprocess.run(
        argv,
        env=dict(env) if env is not None else None,
        cwd=cwd,
        stdin=subprocess.DEVNULL,
        capture_output=True,
        timeout=timeout,
    )
    elapsed = time.monotonic() - started
    if ok is not None and done.returncode not in ok:
        raise subprocess.CalledProcessError(done.returncode, argv, done.stdout, done.stderr)
    return elapsed


def rss(pid: int) -> int:
    """Resident memory (VmRSS) of ``pid`` in bytes, read from ``/proc/<pid>/status``.

    Raises ``ProcessLookupError`` when the process is gone (or is a zombie, which has no VmRSS).
    """
    try:
        with open(f"/proc/{pid}/status", encoding="ascii", errors="replace") as status:
            for line in status:
                if line.startswith("VmRSS:"):
                    return int(line.split()[1]) * 1024
    except FileNotFoundError:
        pass
    raise ProcessLookupError(pid)


def cpu_seconds(pid: int) -> float:
    """User plus system CPU time consumed so far by ``pid`` itself (not its children), in seconds.

    Raises ``psutil.NoSuchProcess`` when the process is gone.
    """
    times = psutil.Process(pid).cpu_times()
    return times.user + times.system


def port_accepts(port: int, host: str = "127.0.0.1") -> bool:
    """True when a TCP connection to ``host:port`` is accepted right now."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.settimeout(0.5)
        try:
            sock.connect((host, port))
        except OSError:
            return False
        return True


def wait_port(port: int, timeout: float) -> float:
    """Poll until ``127.0.0.1:port`` accepts a connection; return the seconds that took.

    Raises ``TimeoutError`` after ``timeout`` seconds.
    """
    return wait_until(lambda: port_accepts(port), timeout, f"port {port} to accept")


def wait_until(predicate: Callable[[], Any], timeout: float, what: str = "condition") -> float:
    """Poll ``predicate`` until it returns a true value; return the seconds that took.

    Raises ``TimeoutError`` naming ``what`` after ``timeout`` seconds.
    """
    started = time.monotonic()
    deadline = started + timeout
    while True:
        if predicate():
            return time.monotonic() - started
        if time.monotonic() > deadline:
            raise TimeoutError(f"timed out after {timeout:g} s waiting for {what}")
        time.sleep(POLL)


def wait_pid_change(getter: Callable[[], T | None], old: T | None, timeout: float) -> tuple[float, T]:
    """Poll ``getter()`` until it returns a value that is neither ``None`` nor ``old``.

    Returns ``(seconds waited, new value)``. Raises ``TimeoutError`` after ``timeout`` seconds.
    The resolution is the cost of one ``getter()`` call plus a ~2 ms pause.
    """
    seen: list[T] = []

    def changed() -> bool:
        value = getter()
        if value is not None and value != old:
            seen.append(value)
            return True
        return False

    elapsed = wait_until(changed, timeout, f"a value other than {old!r}")
    return elapsed, seen[-1]


def pid_alive(pid: int) -> bool:
    """True when ``pid`` exists and is not a zombie (a zombie has exited; only its entry is left)."""
    try:
        return psutil.Process(pid).status() != psutil.STATUS_ZOMBIE
    except (psutil.NoSuchProcess, psutil.AccessDenied):
        return False


def wait_gone(pids: Iterable[int], timeout: float) -> float:
    """Poll until none of ``pids`` is alive (see :func:`pid_alive`); return the seconds that took.

    Raises ``TimeoutError`` naming the survivors after ``timeout`` seconds.
    """
    pending = set(pids)

    def gone() -> bool:
        pending.difference_update([pid for pid in pending if not pid_alive(pid)])
        return not pending

    try:
        return wait_until(gone, timeout, "processes to exit")
    except TimeoutError:
        raise TimeoutError(f"still alive after {timeout:g} s: {sorted(pending)}") from None


def free_port() -> int:
    """A TCP port on 127.0.0.1 that was free a moment ago (bound to port 0, then released)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def median_minmax(values: Iterable[float | int | None]) -> dict[str, Any]:
    """Summarise samples as ``{"median", "min", "max", "n"}``; ``None`` samples are left out.

    With no usable sample every statistic is ``None`` and ``n`` is 0.
    """
    kept = [v for v in values if v is not None]
    if not kept:
        return {"median": None, "min": None, "max": None, "n": 0}
    return {"median": statistics.median(kept), "min": min(kept), "max": max(kept), "n": len(kept)}
