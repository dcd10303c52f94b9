"""Process groups and signals: what the supervisor uses to stop, kill and watch a process tree.

Every managed child leads its own session, so its process group id is its pid.
"""

from __future__ import annotations

import ctypes
import errno
import os
import signal


def set_subreaper() -> None:
    """Make orphaned grandchildren reparent to this process so the daemon reaps them (Linux)."""
    try:
        libc = ctypes.CDLL(None, use_errno=True)
        libc.prctl(36, 1, 0, 0, 0)  # PR_SET_CHILD_SUBREAPER
    except (OSError, AttributeError):
        pass


def signum(name: str) -> int:
    return int(getattr(signal, name))


def decode(status: int) -> tuple[int | None, int | None]:
    code = os.waitstatus_to_exitcode(status)
    return (code, None) if code >= 0 else (None, -code)


def killpg(pgid: int, sig: int) -> None:
    try:
        os.killpg(pgid, sig)
    except (ProcessLookupError, PermissionError):
        pass


def kill(pid: int, sig: int) -> None:
    try:
        os.kill(pid, sig)
    except (ProcessLookupError, PermissionError):
        pass


def group_alive(pgid: int) -> bool:
    """True while any process of group ``pgid`` exists."""
    try:
        os.killpg(pgid, 0)
        return True
    except (ProcessLookupError, PermissionError):
        return False
    except OSError as exc:
        return exc.errno != errno.ESRCH
