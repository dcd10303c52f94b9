"""Which processes belong to a TSM home: the marker every descendant of a managed process carries.

Every child the daemon spawns gets ``TSM_HOME``, ``TSM_ID`` and ``TSM_RUN`` (a token unique to
that run) in its environment, and every descendant inherits them whatever it does to its session
(``setsid``, a double fork). A process is taken as ours only when it runs under our uid and its
environment carries our home; a recorded pid is ours only when, in addition, its start time
matches the recorded one. Nothing here trusts a pid alone, so a pid reused by a foreign process
is never signalled.

Pure standard library on Linux's ``/proc`` (the command line uses it when no daemon runs). Reading
``/proc`` costs about a process environment per process of our uid, so callers scan when they stop
something, never on a periodic tick.
"""

from __future__ import annotations

import os
import signal
import time

TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Iterable

PROC = "/proc"
#: two start times closer than this are the same process (psutil's create_time has 10 ms ticks)
SAME_START = 0.05

_boot: float | None = None


def _boot_time() -> float:
    global _boot
    if _boot is None:
        try:
            with open(f"{PROC}/stat", "rb") as f:
                for line in f:
                    if line.startswith(b"btime "):
                        _boot = float(line.split()[1])
                        break
        except OSError:
            pass
        if _boot is None:
            _boot = 0.0
    return _boot


def start_time(pid: int) -> float | None:
    """The epoch time ``pid`` started (as psutil's ``create_time``), or None if it is gone."""
    try:
        with open(f"{PROC}/{pid}/stat", "rb") as f:
            data = f.read()
    except OSError:
        return None
    try:
        fields = data[data.rindex(b")") + 2:].split()
        if fields[0] == b"Z":
            return None  # a zombie is dead; only its parent's wait is missing
        return _boot_time() + int(fields[19]) / os.sysconf("SC_CLK_TCK")
    except (ValueError, IndexError):
        return None


def uid_of(pid: int) -> int | None:
    """The real uid ``pid`` runs under, or None if it is gone."""
    try:
        return os.stat(f"{PROC}/{pid}").st_uid
    except OSError:
        return None


def environ_marker(pid: int) -> dict[str, str] | None:
    """The ``TSM_*`` variables of ``pid``'s environment, or None if they cannot be read."""
    try:
        with open(f"{PROC}/{pid}/environ", "rb") as f:
            data = f.read()
    except OSError:
        return None
    out = {}
    for item in data.split(b"\0"):
        if item.startswith(b"TSM_"):
            key, _, value = item.partition(b"=")
            out[key.decode(errors="replace")] = value.decode(errors="replace")
    return out


def marked(home: str, *, tsm_id: int | None = None, run: str | None = None,
           exclude: Iterable[int] = ()) -> dict[int, tuple[int | None, str | None]]:
    """Every live process of our uid marked for ``home``: ``{pid: (tsm_id, run token)}``.

    ``tsm_id`` and ``run`` narrow the set to one process or one of its runs. This process and
    ``exclude`` (e.g. the daemon's own pid) are never listed.
    """
    me = os.getuid()
    skip = {os.getpid(), *exclude}
    found: dict[int, tuple[int | None, str | None]] = {}
    try:
        entries = os.listdir(PROC)
    except OSError:
        return found
    for entry in entries:
        if not entry.isdigit():
            continue
        pid = int(entry)
        if pid in skip:
            continue
        try:
            if os.stat(f"{PROC}/{entry}").st_uid != me:
                continue
        except OSError:
            continue
        env = environ_marker(pid)
        if not env or env.get("TSM_HOME") != home:
            continue
        try:
            tid = int(env["TSM_ID"])
        except (KeyError, ValueError):
            continue  # a tsm command run inside a child carries TSM_HOME only if it has TSM_ID too
        token = env.get("TSM_RUN")
        if tsm_id is not None and tid != tsm_id:
            continue
        if run is not None and token != run:
            continue
        if start_time(pid) is None:
            continue  # zombie
        found[pid] = (tid, token)
    return found


def is_ours(pid: object, create_time: object, home: str, tsm_id: int | None = None) -> bool:
    """True only when ``pid`` runs under our uid, started at ``create_time`` and carries the
    marker of ``home`` (and of ``tsm_id`` when given). A missing start time is never a match."""
    if not isinstance(pid, int) or isinstance(pid, bool) or pid <= 1:
        return False
    if not isinstance(create_time, (int, float)) or isinstance(create_time, bool):
        return False
    started = start_time(pid)
    if started is None or abs(started - float(create_time)) > SAME_START:
        return False
    if uid_of(pid) != os.getuid():
        return False
    env = environ_marker(pid)
    if not env or env.get("TSM_HOME") != home:
        return False
    return tsm_id is None or env.get("TSM_ID") == str(tsm_id)


def recorded_leader(pid: object, create_time: object, home: str, tsm_id: int) -> bool:
    """True when ``pid`` is the leader the daemon recorded in ``meta.json``: our uid, the recorded
    start time, and either this home's marker for ``tsm_id`` or no tsm marker at all.

    Programs that set their process title (redis-server, nginx, postgres) overwrite the memory
    that ``/proc/PID/environ`` shows, so their marker cannot be read; the pid and its start time,
    both written by the daemon at the spawn, still prove them. A process showing another home's
    or another process's marker is never taken; a missing start time is never a match.
    """
    if is_ours(pid, create_time, home, tsm_id):
        return True
    if not isinstance(pid, int) or isinstance(pid, bool) or pid <= 1:
        return False
    if not isinstance(create_time, (int, float)) or isinstance(create_time, bool):
        return False
    started = start_time(pid)
    if started is None or abs(started - float(create_time)) > SAME_START or uid_of(pid) != os.getuid():
        return False
    env = environ_marker(pid)
    return env is not None and "TSM_HOME" not in env and "TSM_ID" not in env


def _signal_checked(pid: int, sig: int, still_ours, *, group: bool = False) -> None:
    """Send ``sig`` to ``pid`` if ``still_ours(pid)`` holds once a pidfd pins it (where the kernel
    has them), so a pid reused in between is never hit; with ``group``, to the process group it
    leads instead, when it leads one."""
    fd = None
    try:
        if hasattr(os, "pidfd_open"):
            fd = os.pidfd_open(pid)
        if not still_ours(pid):
            return
        if group and os.getpgid(pid) == pid:
            os.killpg(pid, sig)
        elif fd is not None:
            signal.pidfd_send_signal(fd, sig)
        else:
            os.kill(pid, sig)
    except OSError:
        pass
    finally:
        if fd is not None:
            os.close(fd)


def signal_leader(pid: int, create_time: float, sig: int) -> None:
    """Send ``sig`` to a :func:`recorded_leader` (its start time checked again) and to the process
    group it still leads."""

    def same_start(p: int) -> bool:
        started = start_time(p)
        return started is not None and abs(started - float(create_time)) <= SAME_START

    _signal_checked(pid, sig, same_start, group=True)


def signal_marked(pids: Iterable[int], sig: int, home: str) -> None:
    """Send ``sig`` to each pid still carrying ``home``'s marker (checked through a pidfd, where
    the kernel has them, so a pid reused in between is never hit)."""

    def marked_here(p: int) -> bool:
        env = environ_marker(p)
        return bool(env) and env.get("TSM_HOME") == home and uid_of(p) == os.getuid()

    for pid in pids:
        _signal_checked(pid, sig, marked_here)


def any_alive(pids: Iterable[int]) -> bool:
    """True while any of ``pids`` is alive (zombies do not count)."""
    return any(start_time(p) is not None for p in pids)


def stop_marked(home: str, pids: Iterable[int], *, timeout: float = 5.0) -> list[int]:
    """SIGTERM ``pids`` (and their groups' marked members), wait up to ``timeout``, SIGKILL the
    rest; blocking (the command line's fallback when no daemon runs). Returns the pids stopped."""
    pids = list(pids)
    signal_marked(pids, signal.SIGTERM, home)
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline and any_alive(pids):
        time.sleep(0.02)
    left = [p for p in pids if start_time(p) is not None]
    signal_marked(left, signal.SIGKILL, home)
    deadline = time.monotonic() + 2.0
    while time.monotonic() < deadline and any_alive(left):
        time.sleep(0.01)
    return pids
