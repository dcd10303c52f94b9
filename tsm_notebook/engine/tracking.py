"""Descendant tracking: every process of a run, wherever it went, found by its marker.

A run's processes are its leader's process group plus everything carrying the run's token
(``TSM_RUN``) in its environment: a ``setsid`` or double-forked descendant leaves the group but
keeps the token. The daemon is also the child subreaper, so such escapees are reparented to it
and reaped. One scan of ``/proc`` serves every stop that asks within :data:`SCAN_TTL` seconds
(stopping 500 processes at once reads ``/proc`` a few times, not 500 times); nothing scans on a
periodic tick. Where the machine allows it, each run also has its own cgroup
(:mod:`tsm_notebook.core.cgroups`): its members are the run's by construction, even one that
wiped its environment and left the group, so they are added to the marked ones.
"""

from __future__ import annotations

import os
import time

from ..core import marker
from ..core.cgroups import Cgroups
from .proctree import killpg

#: seconds one scan of /proc is reused by stops asking at the same moment
SCAN_TTL = 0.1
#: the same for a "fresh" scan (after a leader's exit): exits of a mass stop share scans too
FRESH_TTL = 0.02


class Tracker:
    """The marked processes of one home, scanned on demand."""

    def __init__(self, home: str, *, clock=time.monotonic, cgroups: Cgroups | None = None):
        self.home = home
        self.cgroups = cgroups if cgroups is not None else Cgroups(home)
        self.clock = clock
        self._scan: dict[int, tuple[int | None, str | None]] = {}
        self._at = -1e9

    def scan(self, *, fresh: bool = False) -> dict[int, tuple[int | None, str | None]]:
        """``{pid: (tsm_id, token)}`` of every marked process of the home (never the daemon)."""
        now = self.clock()
        if now - self._at > (FRESH_TTL if fresh else SCAN_TTL):
            try:
                self._scan = marker.marked(self.home, exclude=(os.getpid(),))
            except OSError:  # out of descriptors: nothing can be proven ours now
                self._scan = {}
            self._at = now
        return self._scan

    def of_run(self, token: str | None, *, fresh: bool = False) -> list[int]:
        """The live pids carrying run ``token``, and those in the run's cgroup."""
        if not token:
            return []
        pids = [p for p, (_, t) in self.scan(fresh=fresh).items() if t == token]
        return pids + [p for p in self.cgroups.pids(token) if p not in pids]

    def of_id(self, tsm_id: int, *, fresh: bool = False) -> list[int]:
        """The live pids carrying ``tsm_id`` (any run)."""
        return [p for p, (i, _) in self.scan(fresh=fresh).items() if i == tsm_id]

    def signal_run(self, leader: int, token: str | None, sig: int, *, fresh: bool = False) -> list[int]:
        """Signal the leader's group and every process of the run (marked, or in its cgroup);
        return their pids."""
        return self.signal_runs([(leader, token, sig)], fresh=fresh)[0]

    def signal_runs(self, runs: list[tuple[int, str | None, int]], *, fresh: bool = False,
                    unreaped: bool = False) -> list[list[int]]:
        """:meth:`signal_run` for many ``(leader, token, signal)`` at once, from one scan of
        ``/proc`` (a stop of 500 processes reads it once, not once per process); the pids, run by
        run. With ``unreaped`` (no leader has been reaped yet, so no leader's pid can have been
        reused) each leader is signalled through its group only, not once more by pid."""
        by_token: dict[str, list[int]] = {}
        for p, (_, t) in self.scan(fresh=fresh).items():
            if t:
                by_token.setdefault(t, []).append(p)
        out = []
        for leader, token, sig in runs:
            killpg(leader, sig)
            pids = list(by_token.get(token, ())) if token else []
            skip = leader if unreaped else None
            marker.signal_marked([p for p in pids if p != skip], sig, self.home)
            # cgroup members are ours by construction: signalled without the marker check
            out.append(pids + [p for p in self.cgroups.signal(token, sig, signalled=skip) if p not in pids])
        return out

    def forget(self) -> None:
        """Drop the cached scan (after a spawn, so the next stop sees the new run)."""
        self._at = -1e9
