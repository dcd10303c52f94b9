"""Write one stream of a child's output to ``current.<stream>``, rotating and compressing it.

The daemon reads a child's pipe in large chunks and hands each chunk to :meth:`LogWriter.write`.
Every chunk goes to an ``O_APPEND`` file descriptor with ``os.write`` (no user-space buffer, so
readers see it at once), in the order received, exactly once. Rotation renames
``current.<stream>`` to ``<stream>-<stamp>.log`` (the stamp is when the file ended, UTC, µs, so
names sort chronologically) and opens a new ``current.<stream>``; it happens only at a line
boundary, so no line is ever split between two files. The rotated files are then compressed and
pruned off the event loop (:mod:`.logretention`).

Failures (a full disk, a directory that is gone) never raise: the writer keeps the bytes it could
not write (:attr:`LogWriter.pending`), reports the error (:attr:`LogWriter.problem`) and tries again
on :meth:`LogWriter.retry` and :meth:`LogWriter.tick`; the caller stops reading the pipe while
bytes are pending, which pushes back on the child instead of growing memory.
"""

from __future__ import annotations

import os
import stat
import threading
import time
from concurrent.futures import Executor, Future
from concurrent.futures import wait as wait_futures
from pathlib import Path
from typing import Callable

from ..core.logread import rotated_name
from .logretention import DEFER_MAX, RotatedFiles, describe

__all__ = ["LogWriter"]

# O_NOFOLLOW: a symlink planted at current.out must not get output appended to its target
_OPEN_FLAGS = os.O_WRONLY | os.O_APPEND | os.O_CREAT | os.O_NOFOLLOW | getattr(os, "O_CLOEXEC", 0)
IDLE_CHECK = 5.0  # seconds between path checks of a writer that has nothing to do
class LogWriter(RotatedFiles):
    """Appends one stream ("out" or "err") of a process to ``<directory>/current.<stream>``.

    Size rotation happens at a line boundary once the file reaches ``max_size`` bytes: the lines
    of a chunk up to the one that reaches it stay in the old file, the rest starts the new one.
    A line longer than ``max_size`` is never split (it makes its file larger), and an unfinished
    line delays rotation until its newline arrives. Time rotation (every ``rotate_every``
    seconds, None for never) and :meth:`rotate` follow the same rule. ``retain`` (count) and
    ``max_age`` (seconds, by the stamp in the name) bound the rotated files; None means no bound.

    ``timestamps=True`` starts each line with ``2026-11-28T23:01:02.123Z `` (UTC, milliseconds):
    when the chunk holding the line's first byte was received. ``clock`` (epoch seconds) is the
    seam tests replace; ``compressor`` is the executor that gzips rotated files (default: the
    module's two low-priority threads), the seam that shows where compression runs. A new writer starts on a new line: if ``current.<stream>`` ends with an
    unfinished line left by an earlier writer, a newline is added first so two runs never share
    a line. The constructor, :meth:`write`, :meth:`retry`, :meth:`tick`, :meth:`rotate` and
    :meth:`flush_logs` never raise ``OSError``. Use from one thread (the event loop's).
    """

    def __init__(
        self,
        directory: Path,
        stream: str,
        *,
        max_size: int = 10 * 1024**2,
        rotate_every: float | None = 86400.0,
        retain: int | None = 10,
        max_age: float | None = 7 * 86400.0,
        compress: bool = True,
        timestamps: bool = False,
        clock: Callable[[], float] = time.time,
        compressor: Executor | None = None,
    ) -> None:
        if stream not in ("out", "err"):
            raise ValueError(f"stream must be 'out' or 'err', not {stream!r}")
        if max_size <= 0:
            raise ValueError(f"max_size must be positive, not {max_size!r}")
        self.directory = Path(directory)
        self.stream = stream
        self.path = self.directory / f"current.{stream}"
        self._max_size = max_size
        self._rotate_every = rotate_every
        self._retain = retain
        self._max_age = max_age
        self._compress = compress
        self._timestamps = timestamps
        self._clock = clock
        self._gzip_pool = compressor

        self._fd: int | None = None
        self._ident: tuple[int, int] | None = None  # (st_dev, st_ino) of the open file
        self._size = 0  # bytes in the open file
        self._file_nl = True  # the open file is empty or ends with a newline
        self._accept_nl = True  # the next byte accepted starts a line (where a prefix goes)
        self._pending = bytearray()
        self._first_open = True
        self._opened_at = clock()
        self._rotate_requested = False
        self._rotate_blocked = False  # a rotation failed: write on, try again at the next tick
        self._write_problem: str | None = None
        self._rotate_problem: str | None = None
        self._compress_problem: str | None = None
        self._last_stamp_us = 0
        self._newest_stamp_us = 0
        self._jobs: dict[int, Future[None]] = {}
        self._failed_compressions: list[int] = []
        self._lock = threading.Lock()  # guards _generation against the compression threads
        self._generation = 0  # bumped by flush_logs: compressions started before it are dropped
        self._prune_due = True
        self._next_age_check = 0.0
        self._active = True  # written to (or changed) since the last full tick
        self._quiet_until = 0.0  # clock time before which an idle tick has nothing to do
        self._deferred: list[int] = []  # rotated while the stream was busy: compressed once it calms
        self._last_check = float("-inf")
        self._prefix_second = -1
        self._prefix_head = b""
        self._closed = False
        self._recover()
        self._open()

    # -- public -----------------------------------------------------------------------------

    @property
    def problem(self) -> str | None:
        """The last write, rotation or compression error (e.g. "No space left on device (writing
        current.out)"), or None when healthy."""
        return self._write_problem or self._rotate_problem or self._compress_problem

    @property
    def closed(self) -> bool:
        """True after :meth:`close`: :meth:`write` would raise."""
        return self._closed

    @property
    def pending(self) -> int:
        """Bytes accepted but not yet written (after an ``OSError``); the caller stops reading while > 0."""
        return len(self._pending)

    def write(self, data: bytes) -> bool:
        """Accept a chunk; True if all accepted bytes are now in the file, False if some are pending.

        Never raises ``OSError``: on a failure the rest is kept, :attr:`problem` is set and
        :meth:`retry` (or :meth:`tick`) writes it later, before anything accepted afterwards.
        Raises ``ValueError`` after :meth:`close`.
        """
        if self._closed:
            raise ValueError("write to a closed LogWriter")
        if not data:
            return not self._pending
        self._active, self._quiet_until = True, 0.0
        data = self._stamped(data) if self._timestamps else bytes(data)
        if self._pending:
            self._pending += data
            return self._drain_pending()
        n = len(data)
        if self._fd is not None and not self._rotate_requested and self._size + n < self._max_size:
            pos = self._put(data, 0, n)  # the common case: one os.write, no rotation to consider
        else:
            pos = self._drain(data)
        if pos < n:
            self._pending += memoryview(data)[pos:]
            return False
        self._write_problem = None
        return True

    def retry(self) -> bool:
        """Try to write what is pending; True when nothing is pending any more."""
        if self._closed:
            return not self._pending
        return self._drain_pending()

    def tick(self) -> None:
        """Periodic upkeep, about once a second: retries, time rotation, compression results, pruning.

        Retries a failed rotation and pending bytes; rotates when ``rotate_every`` seconds have
        passed since the current file was opened (at once if non-empty and at a line boundary,
        else at the next newline); reopens ``current.*`` if it was deleted under the writer, and
        follows the path when the file there was replaced, renamed away or its directory moved (at
        a line boundary); removes rotated files beyond ``retain`` or older than ``max_age`` whose
        compression has finished. Costs a ``fstat`` and a ``stat``, and for a writer with nothing
        to do only every ``IDLE_CHECK`` seconds: in between, its tick is one comparison."""
        if self._closed:
            return
        now = self._clock()
        if now < self._quiet_until:
            return  # idle, nothing due yet: one comparison (a daemon ticks hundreds of these)
        rotate_at = float("inf") if self._rotate_every is None or not self._size else self._opened_at + self._rotate_every
        if (
            not (self._active or self._pending or self._jobs or self._rotate_requested or self._prune_due
                 or self._deferred)
            and self._fd is not None
            and now - self._last_check < IDLE_CHECK
            and now < self._next_age_check
            and now < rotate_at
        ):
            # quiet until the first thing due, or a call that may change that (write, rotate, ...)
            self._quiet_until = min(self._last_check + IDLE_CHECK, self._next_age_check, rotate_at)
            return
        was_active, self._active = self._active, False
        self._last_check = now
        if self._deferred and not was_active:
            self._submit_deferred()  # the stream calmed: compress what rotated during the burst
        self._collect_jobs()
        self._rotate_blocked = False
        if self._fd is not None:
            try:
                deleted = os.fstat(self._fd).st_nlink == 0
            except OSError:
                deleted = True
            if deleted:  # removed under us: writing on would pour the log into nowhere
                self._close_fd()
                self._ident = None
            elif self._file_nl and self._path_moved():
                # Someone else's file now (or none): readers look at the path, so follow it.
                self._close_fd()
                self._ident = None
        if (
            self._rotate_every is not None
            and self._size > 0
            and self._clock() - self._opened_at >= self._rotate_every
        ):
            self._rotate_requested = True
        if self._pending:
            self._drain_pending()
        elif self._fd is None:
            self._open()
        if self._rotation_due(False):
            self._rotate()
        self._prune()

    def recheck(self) -> None:
        """Check the path now rather than at the next idle check (SIGUSR1: an outside rotation
        moved the file), reopening ``current.*`` if it moved."""
        self._last_check = self._quiet_until = float("-inf")
        self.tick()

    def end_line(self) -> bool:
        """End an unfinished last line with a newline (when a run's pipe closes); True if nothing is pending.

        What the next run writes then starts a line of its own. Does nothing when the last byte
        accepted was a newline. Never raises ``OSError`` (a failed write stays pending, as in :meth:`write`).
        """
        if self._closed:
            return not self._pending
        last_nl = self._pending[-1:] == b"\n" if self._pending else self._file_nl
        if last_nl:
            return not self._pending
        return self.write(b"\n")

    def rotate(self) -> bool:
        """Rotate now; True if it did. Mid-line it happens at the next newline instead (False).

        An empty current file is not rotated (False). A failure sets :attr:`problem` and is
        retried by :meth:`tick`.
        """
        if self._closed or (self._size == 0 and self._file_nl):
            return False
        self._quiet_until = 0.0
        self._rotate_blocked = False
        self._rotate_requested = True
        if self._fd is not None and self._file_nl:
            return self._rotate()
        return False

    def flush_logs(self) -> None:
        """Empty the log (``tsm flush``): truncate ``current.<stream>`` and delete its rotated files.

        Compressions running meanwhile are discarded when they finish. Pending bytes (not yet
        written) are kept and written afterwards.
        """
        self._quiet_until = 0.0
        with self._lock:
            self._generation += 1
        self._failed_compressions.clear()
        self._deferred.clear()
        try:
            if self._fd is not None:
                os.ftruncate(self._fd, 0)
            else:
                os.truncate(self.path, 0)
        except FileNotFoundError:
            pass
        except OSError as exc:
            self._write_problem = describe(exc, f"truncating {self.path.name}")
        self._size = 0
        self._file_nl = True
        self._opened_at = self._clock()
        self._rotate_requested = False
        for name, _ in self._rotated_names(include_tmp=True):
            self._unlink(name)
        self._newest_stamp_us = 0

    def close(self, timeout: float = 5.0) -> None:
        """Make a last attempt at pending bytes, close the file, wait up to ``timeout`` s for compressions.

        Bytes still pending after the last attempt are dropped. Idempotent; never raises ``OSError``.
        """
        if self._closed:
            return
        if self._pending:
            self._drain_pending()
        self._close_fd()
        self._closed = True
        if self._deferred and self._compress:
            self._submit_deferred()
        if self._jobs:
            wait_futures(list(self._jobs.values()), timeout=timeout)
        self._collect_jobs()

    def __enter__(self) -> "LogWriter":
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    # -- writing ----------------------------------------------------------------------------

    def _stamped(self, data: bytes) -> bytes:
        """``data`` with the receive-time prefix at the start of every line that starts in it."""
        data = bytes(data)
        millis = int(self._clock() * 1000)
        second, milli = divmod(millis, 1000)
        if second != self._prefix_second:
            self._prefix_head = time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(second)).encode()
            self._prefix_second = second
        prefix = b"%s.%03dZ " % (self._prefix_head, milli)
        ends_line = data.endswith(b"\n")
        # A newline that ends the chunk starts a line in the next chunk, which gets that chunk's time.
        if ends_line:
            body = data[:-1].replace(b"\n", b"\n" + prefix) + b"\n"
        else:
            body = data.replace(b"\n", b"\n" + prefix)
        if self._accept_nl:
            body = prefix + body
        self._accept_nl = ends_line
        return body

    def _put(self, data: bytes | bytearray, start: int, end: int) -> int:
        """Write ``data[start:end]`` to the open file; the position reached (< end after an OSError)."""
        pos = start
        with memoryview(data) as view:
            while pos < end:
                try:
                    written = os.write(self._fd, view[pos:end])  # type: ignore[arg-type]
                except OSError as exc:
                    self._write_problem = describe(exc, f"writing {self.path.name}")
                    # Reopen before the next try: the path may point elsewhere by then.
                    self._close_fd()
                    break
                if written <= 0:
                    self._write_problem = f"nothing written ({self.path.name})"
                    self._close_fd()
                    break
                pos += written
                self._size += written
        if pos > start:
            self._file_nl = data[pos - 1] == 0x0A
        return pos

    def _rotation_due(self, boundary: bool) -> bool:
        return (
            self._fd is not None
            and self._file_nl
            and self._size > 0
            and not self._rotate_blocked
            and (boundary or self._rotate_requested or self._size >= self._max_size)
        )

    def _drain(self, data: bytes | bytearray) -> int:
        """Write ``data``, rotating at the line boundaries the rules pick; the position reached."""
        n = len(data)
        pos = 0
        boundary = False  # rotate at the line boundary just reached
        while pos < n:
            if self._fd is None and not self._open():
                return pos
            if self._rotation_due(boundary):
                boundary = False
                self._rotate()
                continue
            boundary = False
            if self._rotate_requested and self._size == 0:
                self._rotate_requested = False
            if self._rotate_blocked:
                cut = n
            else:
                room = 0 if self._rotate_requested else self._max_size - self._size
                if n - pos < room:
                    cut = n
                else:
                    # The first line boundary at or after the byte that brings the file to
                    # max_size; failing that, the last one before it (the rest starts anew).
                    cross = pos + max(room, 1) - 1
                    nl = data.find(b"\n", cross)
                    if nl < 0:
                        nl = data.rfind(b"\n", pos, cross)
                    if nl >= 0:
                        cut = nl + 1
                        boundary = True
                    elif self._file_nl and self._size > 0:
                        boundary = True  # an unfinished line that would overflow: start it anew
                        continue
                    else:
                        cut = n  # the rest of a line longer than max_size: never split it
            reached = self._put(data, pos, cut)
            if reached < cut:
                return reached
            pos = reached
        if self._rotation_due(boundary):
            self._rotate()
        return pos

    def _drain_pending(self) -> bool:
        if not self._pending:
            return True
        written = self._drain(self._pending)
        del self._pending[:written]
        if self._pending:
            return False
        self._write_problem = None
        return True

    # -- files ------------------------------------------------------------------------------

    def _open(self) -> bool:
        """Open ``current.<stream>`` for appending; False (problem set) if it cannot be."""
        try:
            fd = os.open(self.path, _OPEN_FLAGS, 0o644)
        except OSError as exc:
            self._write_problem = describe(exc, f"opening {self.path.name}")
            return False
        try:
            st = os.fstat(fd)
        except OSError as exc:
            os.close(fd)
            self._write_problem = describe(exc, f"opening {self.path.name}")
            return False
        ident = (st.st_dev, st.st_ino)
        self._size = st.st_size
        if ident != self._ident:
            self._file_nl = not st.st_size or not stat.S_ISREG(st.st_mode) or self._ends_with_newline()
            if self._first_open and not self._file_nl:
                self._pending[0:0] = b"\n"
            if self._first_open and st.st_size and self._newest_stamp_us:
                # The current file was created when the newest rotated one ended.
                self._opened_at = min(self._opened_at, self._newest_stamp_us / 1e6)
        self._fd = fd
        self._ident = ident
        self._first_open = False
        return True

    def _path_moved(self) -> bool:
        """True when ``current.<stream>`` no longer names the open file (replaced, gone, directory moved)."""
        try:
            st = os.stat(self.path)
        except OSError:
            return True
        return (st.st_dev, st.st_ino) != self._ident

    def _ends_with_newline(self) -> bool:
        try:
            with open(self.path, "rb") as f:
                f.seek(-1, os.SEEK_END)
                return f.read(1) == b"\n"
        except OSError:
            return True

    def _close_fd(self) -> None:
        if self._fd is not None:
            try:
                os.close(self._fd)
            except OSError:
                pass
            self._fd = None

    def _rotate(self) -> bool:
        """Rename current to its stamped name and open a new current; False (problem set) on failure."""
        now = self._clock()
        stamp = max(int(now * 1_000_000), self._last_stamp_us + 1)
        target = self.directory / rotated_name(self.stream, stamp)
        try:
            os.rename(self.path, target)
        except OSError as exc:
            self._rotate_problem = describe(exc, f"rotating {self.path.name}")
            self._rotate_blocked = True
            return False
        self._last_stamp_us = self._newest_stamp_us = stamp
        try:
            fd = os.open(self.path, _OPEN_FLAGS, 0o644)
            st = os.fstat(fd)
        except OSError as exc:
            try:
                os.rename(target, self.path)  # undo, and keep appending to the old file
            except OSError:
                # The old file is complete under its rotated name; current opens on a retry.
                self._close_fd()
                self._ident = None
                self._write_problem = describe(exc, f"opening {self.path.name}")
                self._rotated(stamp, now)
                return True
            self._rotate_problem = describe(exc, f"rotating {self.path.name}")
            self._rotate_blocked = True
            return False
        self._close_fd()
        self._fd = fd
        self._ident = (st.st_dev, st.st_ino)
        self._size = st.st_size
        self._file_nl = True
        self._rotate_problem = None
        self._rotated(stamp, now)
        return True

    def _rotated(self, stamp: int, now: float) -> None:
        self._opened_at = now
        self._rotate_requested = False
        self._prune_due = True
        if self._compress:
            retry, self._failed_compressions = self._failed_compressions, []
            for old in retry:
                self._submit(old)
            # Compressing while the child floods would take CPU from it (on two cores, a lot):
            # wait until a tick finds the stream quiet, or until DEFER_MAX files are waiting.
            self._deferred.append(stamp)
            if len(self._deferred) >= DEFER_MAX:
                self._submit_deferred()
