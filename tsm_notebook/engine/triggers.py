"""What acts on its own in the daemon: event hooks, file watching, cron schedules; and the
requests that go with them (``reset``).

:class:`Triggers` is the one object the daemon holds for all three: it is told every event
(:meth:`on_event`), runs the schedules (:meth:`run`) and is closed at exit (:meth:`close`).
"""

from __future__ import annotations

import asyncio
import logging
from typing import TYPE_CHECKING, Any

from . import cron as cron_mod
from .cron import Cron
from .handlers import command
from .hooks import Hooks
from .watch import Watcher

if TYPE_CHECKING:
    from .daemon import Daemon
    from .managed import Managed

log = logging.getLogger("tsm.daemon")

check_spec = cron_mod.check  # what the daemon refuses in a start that the client could not check


class Triggers:
    """Hooks, the watcher and the schedules of one daemon (made once its supervisor exists)."""

    def __init__(self, d: Daemon) -> None:
        sup = d.sup
        assert sup is not None
        self.d = d
        self.loop = asyncio.get_running_loop()
        self.hooks = Hooks(d.home, d.config, on_event=d.event, children=sup.children)
        self.watch = Watcher(sup, str(d.home.root), restart=self._watch_restart, on_event=d.event)
        self.cron = Cron(sup, on_event=d.event)

    def on_event(self, m: Managed | None, event: str, fields: dict[str, Any]) -> None:
        """Every event the daemon records: run its hook, and follow status changes of watched processes."""
        self.hooks.fire(m, event, fields)
        if m is not None and (m.spec.watch or m.name in self.watch.watched):
            self.watch.refresh()

    def _watch_restart(self, m: Managed, reason: str) -> None:
        self.d.event(m, "watch", pid=m.pid, reason=reason)

        async def go() -> None:
            try:
                await self.d.sup.restart(m)
            except Exception as exc:  # StartFailed and the like are recorded as events already
                log.warning("%s: restart after a change failed: %s", m.name, exc)

        self.loop.create_task(go())

    async def run(self) -> None:
        """The daemon's periodic task for the cron schedules."""
        await self.cron.run()

    async def close(self) -> None:
        """At daemon exit: stop watching, let running hooks finish briefly."""
        self.watch.close()
        await self.hooks.close()


@command("reset")
async def cmd_reset(d: Daemon, args: dict) -> list:
    """args: {target} -> rows after clearing restart counters (restarts, unstable restarts)."""
    ms = d.sup.resolve(args.get("target"))
    for m in ms:
        m.restarts = m.unstable_restarts = 0
        m.consecutive_unstable = m.consecutive_crashes = 0
        d.sup.save_meta(m)
        d.event(m, "reset", reason="restart counters cleared")
    return [d.row(m) for m in ms]
