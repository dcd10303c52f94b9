"""Stopping runs, one or hundreds at once, with the guarantees of a single stop.

A stop (:meth:`Supervisor.stop`) hands its run to the :class:`Stopper` and waits. Every stop
handed over in the same turn of the loop (``stop all``, a stack's layer, the daemon's shutdown)
forms one batch: the batch reads ``/proc`` once, then signals every process group, every marked
descendant and every cgroup of it. One waiter then watches every run being stopped, whichever
batch it came from: each run has its own deadline (its ``kill_timeout`` from its signal), and the
runs still alive at their deadline get SIGKILL to the whole tree together, from one scan; the runs
that ended are swept (SIGKILL to anything of theirs forked meanwhile) together too, and only then
recorded ``stopped`` with their ``stop`` event. So a stop of N processes that ignore their stop
signal takes about one kill timeout, not N, and a pass of the waiter costs a few attribute reads
per run, plus a syscall or two for a run whose leader exited but whose tree lingers.

``stopping`` is written to ``meta.json`` only for a stop still going after
:data:`PERSIST_AFTER`: recovery reads ``stopping`` and a running state alike (the process was
meant to run), so a run that ends sooner goes straight to ``stopped`` on disk.

The waiter also reaps: a flood of exits can overflow the loop's signal wakeup pipe, and a SIGCHLD
lost there would leave a stopped leader a zombie nobody collects until the next one.
"""

from __future__ import annotations

import asyncio
import logging
import signal
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from ..core import marker
from .managed import Managed, Run
from .proctree import decode, group_alive, signum

if TYPE_CHECKING:
    from .supervisor import Supervisor

log = logging.getLogger("tsm.daemon")

#: seconds between two looks at the runs being stopped
POLL = 0.01
#: seconds a run is given to be reaped after its SIGKILL
REAP_WAIT = 5.0
#: seconds a stop lasts before ``stopping`` is written to ``meta.json``: a run that ends sooner
#: goes from its running state to ``stopped`` on disk, saving 500 writes in a stop of 500 (on disk
#: the two mean the same to recovery: the process was meant to run)
PERSIST_AFTER = 0.1


@dataclass(eq=False)
class Stopping:
    """One run being stopped: where it is in its stop, and what to record at the end."""

    m: Managed
    run: Run
    final: str
    event: str
    reason: str | None
    done: asyncio.Future
    deadline: float = 0.0  # loop time: SIGKILL if the tree is still alive then
    extra: list[int] = field(default_factory=list)  # pids signalled besides the group
    killed: bool = False
    persist_at: float = 0.0  # loop time: write "stopping" to meta.json if the stop lasts until then


class Stopper:
    """The runs of one supervisor being stopped, signalled by batch and watched together."""

    def __init__(self, sup: Supervisor):
        self.sup = sup
        self.loop = sup.loop
        self.queued: list[Stopping] = []  # handed over this turn, not yet signalled
        self.waiting: list[Stopping] = []  # signalled, tree not yet gone
        self._waiter: asyncio.Task | None = None

    async def stop(self, m: Managed, run: Run, *, final: str, event: str, reason: str | None) -> None:
        """Stop ``run`` of ``m`` (already marked stopping in memory) and record ``final``; returns
        once its tree is gone. The stop completes even if the caller is cancelled."""
        run.stopping = True  # its exit is swept by the stop, not by the reaper
        entry = Stopping(m, run, final, event, reason, self.loop.create_future())
        if not self.queued:
            self.loop.call_soon(self._signal_queued)  # after every stop handed over this turn
        self.queued.append(entry)
        await asyncio.shield(entry.done)

    def _signal_queued(self) -> None:
        queued, self.queued = self.queued, []
        # a leader whose exit was collected since its stop was handed over is signalled by pid too
        # (checked): only an unreaped leader's pid is sure not to have been reused
        live = [e for e in queued if not e.run.exited.done()]
        batch = live + [e for e in queued if e.run.exited.done()]
        extras: list[list[int]] = []
        try:
            # the whole run: its group, and by marker (or cgroup) what left the group
            for part, unreaped in ((batch[:len(live)], True), (batch[len(live):], False)):
                if part:
                    extras += self.sup.tracker.signal_runs(
                        [(e.run.pid, e.run.token, signum(e.m.spec.stop_signal)) for e in part], unreaped=unreaped)
        except Exception:  # never leave a stop hanging on a bug: the deadline kills them
            log.exception("signalling %d processes failed", len(batch))
            extras = [[] for _ in batch]
        now = self.loop.time()
        for e, extra in zip(batch, extras):
            e.extra = extra
            e.deadline = now + e.m.spec.kill_timeout
            e.persist_at = now + PERSIST_AFTER
        self.waiting.extend(batch)
        if self._waiter is None or self._waiter.done():
            self._waiter = self.loop.create_task(self._watch())

    async def _watch(self) -> None:
        while self.waiting:
            try:
                self._pass()
            except Exception:  # the daemon never stops supervising over a bug here
                log.exception("a pass over the stopping processes failed")
            await asyncio.sleep(POLL)

    def _pass(self) -> None:
        self.sup.reap()
        now = self.loop.time()
        expired, finished = [], []
        for e in self.waiting:
            exited = e.run.exited.done()
            if e.killed:
                if exited or now >= e.deadline:
                    finished.append(e)
            elif exited and not group_alive(e.run.pid) and not marker.any_alive(e.extra):
                finished.append(e)
            else:
                if e.persist_at and now >= e.persist_at:
                    e.persist_at = 0.0
                    self.sup.save_meta(e.m)
                if now >= e.deadline:
                    expired.append(e)
        if expired:
            self.sup.tracker.signal_runs([(e.run.pid, e.run.token, signal.SIGKILL) for e in expired], fresh=True)
            for e in expired:
                e.killed, e.deadline = True, now + REAP_WAIT
                self.sup.on_event(e.m, "kill", pid=e.run.pid,
                                  reason=f"still alive after kill_timeout {e.m.spec.kill_timeout}s")
        if finished:
            gone = set(finished)
            self.waiting = [e for e in self.waiting if e not in gone]
            # anything forked during the stop
            self.sup.tracker.signal_runs([(e.run.pid, e.run.token, signal.SIGKILL) for e in finished], fresh=True)
            for e in finished:
                self._finish(e)

    def _finish(self, e: Stopping) -> None:
        run, m = e.run, e.m
        try:
            if not run.exited.done():
                log.error("%s: pid %s did not exit after SIGKILL", m.name, run.pid)
            code, sig = decode(run.exited.result()) if run.exited.done() else (None, None)
            m.exit_code, m.exit_signal = code, sig
            self.sup.set_status(m, e.final, e.event, pid=run.pid, exit_code=code, signal=sig, reason=e.reason)
        except Exception as exc:
            log.exception("%s: finishing its stop failed", m.name)
            if not e.done.done():
                e.done.set_exception(exc)
            return
        if not e.done.done():
            e.done.set_result(None)
