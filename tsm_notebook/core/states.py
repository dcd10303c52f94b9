"""The process state table. Imports nothing: the daemon changes state only through transitions
listed here, and the front ends use the names for colours and filters.

::

    launching ──▶ online ──▶ stopping ──▶ stopped
        │           │  ▲         │
        │           ▼  │         ▼
        └────────▶ waiting ──▶ errored     (waiting: a restart is scheduled after a delay)

A crash of a launching or online process goes to ``waiting`` (a restart is due), to ``errored``
(too many unstable restarts) or to ``stopped`` (autorestart off).
"""

LAUNCHING = "launching"
ONLINE = "online"
STOPPING = "stopping"
STOPPED = "stopped"
WAITING = "waiting"
ERRORED = "errored"

ALL = (LAUNCHING, ONLINE, STOPPING, STOPPED, WAITING, ERRORED)

#: states in which a process is meant to be running (`tsm save` keeps these)
RUNNING = frozenset({LAUNCHING, ONLINE, WAITING})
#: states in which a child process exists
ALIVE = frozenset({LAUNCHING, ONLINE, STOPPING})

TRANSITIONS = {
    None: {LAUNCHING},
    LAUNCHING: {ONLINE, STOPPING, WAITING, ERRORED, STOPPED},
    ONLINE: {STOPPING, WAITING, ERRORED, STOPPED},
    STOPPING: {STOPPED, LAUNCHING},
    STOPPED: {LAUNCHING},
    WAITING: {LAUNCHING, STOPPED, STOPPING},
    ERRORED: {LAUNCHING, STOPPED},
}


class InvalidTransition(Exception):
    """A state change the table does not allow (a bug in the daemon, never user input)."""


def check(old, new):
    """Return ``new`` if ``old -> new`` is allowed, else raise :class:`InvalidTransition`."""
    if new not in TRANSITIONS.get(old, ()):
        raise InvalidTransition(f"{old} -> {new}")
    return new
