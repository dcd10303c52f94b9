"""Cron schedules: ``--cron-restart EXPR`` restarts an online process on schedule, ``--cron EXPR``
starts a one-shot job on schedule.

Expressions are read by ``croniter`` in the daemon's **local time** (its time zone, daylight saving
included): five fields (minute hour day month weekday), or six with seconds first (as PM2's cron
takes them), or an alias such as ``@daily``. The schedule lives in the process's spec, so it
survives ``save``/``resurrect``, daemon recovery and ``tsm update``; runs missed while no daemon
was up are not made up. A job still running at its next time is not started twice (a
``cron-skip`` event says so); every scheduled run is a ``cron`` event, every scheduled restart a
``cron-restart`` event.
"""

from __future__ import annotations

import asyncio
import datetime
import logging
import time
from typing import TYPE_CHECKING, Callable

from ..core import states
from ..core.errors import TsmError, UsageError

if TYPE_CHECKING:
    from .managed import Managed
    from .supervisor import Supervisor

log = logging.getLogger("tsm.daemon")

KINDS = ("cron_restart", "cron")
TICK = 1.0  # seconds: the longest sleep between two looks at the schedules


def next_time(expr: str, after: float) -> float:
    """The first time (epoch seconds) strictly after ``after`` that ``expr`` names, in local time.

    Raises :class:`UsageError` for an expression croniter refuses."""
    from croniter import croniter  # only a daemon with a schedule pays for it

    start = datetime.datetime.fromtimestamp(after).astimezone()
    try:
        it = croniter(expr, start, second_at_beginning=len(expr.split()) == 6)
        return float(it.get_next(float))
    except (ValueError, KeyError, TypeError) as exc:  # croniter's errors derive from ValueError
        raise UsageError(f"invalid cron expression '{expr}': {exc}") from None


def check(spec) -> None:
    """Refuse a spec whose schedules croniter cannot read (the client checked only their shape)."""
    now = time.time()
    for kind in KINDS:
        expr = getattr(spec, kind, None)
        if expr:
            try:
                next_time(expr, now)
            except UsageError as exc:
                raise UsageError(f"--{kind.replace('_', '-')}: {exc.message}") from None


class Cron:
    """The schedules of every process; :meth:`run` is the daemon's periodic task."""

    def __init__(self, sup: Supervisor, *, on_event: Callable[..., None], clock: Callable[[], float] = time.time):
        self.sup = sup
        self.on_event = on_event
        self.clock = clock
        self.due: dict[tuple[str, str], tuple[str, float]] = {}  # (name, kind) -> (expr, next time)

    def tick(self) -> float:
        """Act on every schedule that is due; return the seconds until the next one (at most TICK)."""
        now = self.clock()
        seen = set()
        soonest = now + TICK
        for m in list(self.sup.procs.values()):
            for kind in KINDS:
                expr = getattr(m.spec, kind, None)
                if not expr:
                    continue
                key = (m.name, kind)
                seen.add(key)
                known = self.due.get(key)
                try:
                    if known is None or known[0] != expr:
                        known = (expr, next_time(expr, now))
                    elif now >= known[1]:
                        self._fire(m, kind, expr)
                        known = (expr, next_time(expr, now))
                except UsageError as exc:
                    m.problems["cron"] = exc.message
                    continue
                self.due[key] = known
                soonest = min(soonest, known[1])
        for key in set(self.due) - seen:
            del self.due[key]
        return max(0.0, soonest - self.clock())

    def _fire(self, m: Managed, kind: str, expr: str) -> None:
        loop = asyncio.get_running_loop()
        if kind == "cron_restart":
            if m.status != states.ONLINE:
                return  # a stopped or crashed process is not brought up by its restart schedule
            self.on_event(m, "cron-restart", pid=m.pid, reason=f"schedule '{expr}'")
            loop.create_task(self._guard(m, self.sup.restart(m)))
        else:
            if m.status in states.ALIVE or m.status == states.WAITING:
                self.on_event(m, "cron-skip", pid=m.pid, reason=f"schedule '{expr}': still running")
                return
            self.on_event(m, "cron", reason=f"schedule '{expr}'")
            loop.create_task(self._guard(m, self.sup.start_existing(m)))

    async def _guard(self, m: Managed, action) -> None:
        try:
            await action
        except TsmError as exc:  # recorded as errored by the supervisor; the schedule goes on
            log.warning("%s: scheduled run failed: %s", m.name, exc)

    async def run(self) -> None:
        """Forever: look at the schedules, sleep until the next is due (or a second)."""
        while True:
            try:
                wait = self.tick()
            except Exception:  # a bug here must not end the schedules
                log.exception("cron tick failed")
                wait = TICK
            await asyncio.sleep(min(TICK, wait + 0.001))
