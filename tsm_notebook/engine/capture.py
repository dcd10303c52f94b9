"""Output capture: children's stdout and stderr flow from their pipes, read on the daemon's loop
with large non-blocking reads, into each process's log writers. A writer that cannot write (a
full disk, a vanished directory) pauses its pipe, so the child blocks instead of the daemon's
memory growing, and reading resumes once the writer has caught up: nothing is lost.
"""

from __future__ import annotations

import asyncio
import fcntl
import os
from typing import Callable

from .managed import Managed, Run

PIPE_SIZE = 1 << 20
READ_SIZE = 1 << 20
GROW_PIPE_AT = 1 << 16  # a read this big found the pipe full at its default capacity
F_SETPIPE_SZ = 1031
F_GETPIPE_SZ = 1032
STREAMS = ("out", "err")


class Capture:
    """Reads every child's pipes into its writers; ``on_event`` and ``save_meta`` are the
    supervisor's, used to report a log problem when it appears and when it clears."""

    def __init__(self, loop: asyncio.AbstractEventLoop, *, on_event: Callable[..., None],
                 save_meta: Callable[[Managed], None]):
        self.loop = loop
        self.on_event = on_event
        self.save_meta = save_meta

    @staticmethod
    def pipes() -> dict[str, tuple[int, int]]:
        """A (read, write) pipe per stream, default-sized (64 KiB) until the child floods it."""
        made: dict[str, tuple[int, int]] = {}
        try:
            for stream in STREAMS:
                made[stream] = os.pipe()
        except OSError:
            for r, w in made.values():
                os.close(r)
                os.close(w)
            raise
        return made

    def attach(self, m: Managed, run: Run, pipes: dict[str, tuple[int, int]]) -> None:
        """Start reading the read ends of ``pipes`` for ``run`` (the write ends are the child's)."""
        for stream, (r, _) in pipes.items():
            os.set_blocking(r, False)
            run.fds[stream] = r
            self.loop.add_reader(r, self.on_readable, m, run, stream, r)

    def forget(self, m: Managed) -> None:
        """Close the pipes paused for back-pressure of a process being deleted."""
        for fd, (run, stream) in list(m.stalled.items()):
            self.close_fd(run, stream, fd)
        m.stalled.clear()


    def on_readable(self, m: Managed, run: Run, stream: str, fd: int) -> None:
        self.pump(m, run, stream, fd)

    def pump(self, m: Managed, run: Run, stream: str, fd: int) -> bool:
        """One read of a child's pipe into its log writer; False when nothing more can be read now
        (the pipe is empty or closed, or the writer stalled)."""
        try:
            data = os.read(fd, READ_SIZE)
        except BlockingIOError:
            return False
        except OSError:
            data = b""
        if len(data) >= GROW_PIPE_AT:
            _grow_pipe(fd)
        writer = m.writers[stream]
        if not data or writer.closed:  # closed: deleted, or the daemon is ending
            # a last line without newline must not run into the first line of the next run
            writer.end_line()
            self.close_fd(run, stream, fd)
            return False
        if writer.write(data):
            return True
        # the disk refused: stop draining so the child blocks instead of memory growing
        self.loop.remove_reader(fd)
        m.stalled[fd] = (run, stream)
        self.note_problem(m, stream)
        return False

    def drain(self, m: Managed, run: Run) -> None:
        """Read what an exited child left in its pipes, so its last words are on disk before its
        exit is reported (``tsm logs`` right after an exit sees everything). Bounded: a grandchild
        still holding the pipe may write on; the loop's readers take the rest."""
        for stream, fd in list(run.fds.items()):
            if fd in m.stalled:
                continue
            for _ in range(64):
                if not self.pump(m, run, stream, fd):
                    break

    def note_problem(self, m: Managed, stream: str) -> None:
        """Mirror a writer's problem into ``m.problems`` (describe, patrol) with an event when it
        appears and when it clears."""
        key = f"log-{stream}"
        problem = m.writers[stream].problem
        old = m.problems.get(key)
        if problem == old:
            return
        if problem:
            m.problems[key] = problem
        else:
            del m.problems[key]
        if old is None:
            self.on_event(m, "log-error", reason=f"{stream}: {problem}")
        elif problem is None:
            self.on_event(m, "log-resumed", reason=f"{stream}: capture resumed")
        self.save_meta(m)

    def close_fd(self, run: Run, stream: str, fd: int) -> None:
        self.loop.remove_reader(fd)
        try:
            os.close(fd)
        except OSError:
            pass
        run.fds.pop(stream, None)
        if not run.fds:
            run.pipes_closed.set()

    def tick(self, m: Managed) -> None:
        """Periodic log upkeep (called every second): the writers' ticks (retries, time rotation,
        pruning), resuming stalled pipes once their writer has caught up, problems reported."""
        writers = m.writers
        troubled = bool(m.problems)
        for w in writers.values():
            w.tick()
            if not troubled and w.problem:
                troubled = True
        if m.stalled:
            troubled = True  # a retry below may clear (or set) a writer's problem
            for fd, (run, stream) in list(m.stalled.items()):
                if writers[stream].retry():
                    del m.stalled[fd]
                    if run.fds.get(stream) == fd:  # the run may be over: its pipe is read to the end
                        self.loop.add_reader(fd, self.on_readable, m, run, stream, fd)
        # healthy writers and no problem recorded (every idle process, every second): nothing to mirror
        if troubled:
            for stream in writers:
                self.note_problem(m, stream)


def _grow_pipe(fd: int) -> None:
    """Raise a pipe's capacity to PIPE_SIZE (once it was found full: a chatty child).

    Big pipes let a flooding child run on while the daemon is busy elsewhere, but Linux counts
    pipe capacity against a per-user budget (fs.pipe-user-pages-soft, 64 MiB by default; past it
    an unprivileged user's new pipes, all of theirs, get one page), so quiet processes keep the
    default 64 KiB. Failure (over the budget, not Linux) just keeps the current size.
    """
    try:
        if fcntl.fcntl(fd, F_GETPIPE_SZ) < PIPE_SIZE:
            fcntl.fcntl(fd, F_SETPIPE_SZ, PIPE_SIZE)
    except OSError:
        pass
