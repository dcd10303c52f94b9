"""Follow a process's logs as they grow (``tsm logs -f``, ``LogTail``), across rotations.

Reads the files only, never the daemon: each stream is tracked by position in ``current.<stream>``;
when the file is rotated (or truncated) the rest of the old file is read from its rotated name
before the new one is followed. Lines of the two streams are merged by arrival.
"""

from __future__ import annotations

import collections
import os
import time
from pathlib import Path
from typing import BinaryIO, Callable, Iterator

from .logread import (
    _BLOCK,
    LogLine,
    _check_stream,
    _current_ident,
    _ident,
    _lines_forward,
    _merge,
    _open_log,
    _snapshot,
    _split,
    _tail_snapshot,
)

__all__ = ["POLL_BYTES", "follow", "follow_many"]

#: bytes of one file read by one poll at most: the memory a follower holds is bounded by this,
#: whatever was written since its last poll
POLL_BYTES = 4 << 20


class _Tracker:
    """Follows one stream by position, across rotations (however many between polls) and truncation.

    ``known`` holds the stamps of rotated files already accounted for. When ``current.*`` is
    replaced, the file held open is read to its end (the writer never writes to a file after
    renaming it), then the rotated files newer than ``known`` other than that one (rotations that
    came and went between two polls) in order, then the new ``current.*`` from its start.
    """

    def __init__(self, directory: Path, stream: str, backlog: int = 0, since: float | None = None) -> None:
        self.stream = stream
        self.directory = directory
        self.path = directory / f"current.{stream}"
        self.file: BinaryIO | None = None
        self.ident: tuple[int, int] | None = None
        self.rest = b""  # bytes of a line whose newline has not come yet
        # The tail (``backlog`` lines, -1 for all) up to where following starts, oldest first.
        self.backlog: list[LogLine] = []
        rotated, f = _snapshot(self.directory, self.stream)
        self.known = {stamp for stamp, _ in rotated}
        if f is not None:
            self._hold(f, at_end=True)
        if backlog != 0:
            # From the same snapshot and up to the very position held: no line shown twice or missed.
            start = self.file.tell() if self.file is not None else 0
            try:
                count = None if backlog < 0 else backlog
                self.backlog = _tail_snapshot(stream, rotated, self.file, start, count, since)
            finally:
                if self.file is not None:
                    self.file.seek(start)

    def _hold(self, f: BinaryIO, *, at_end: bool) -> None:
        st = os.fstat(f.fileno())
        self.ident = _ident(st)
        self.rest = b""
        if at_end and st.st_size:
            # Start at the beginning of an unfinished last line, so it is yielded whole.
            start = max(0, st.st_size - _BLOCK)
            f.seek(start)
            block = f.read(st.st_size - start)
            cut = block.rfind(b"\n")
            f.seek(start + cut + 1 if cut >= 0 else start)
        self.file = f

    def _read(self, out: list[bytes]) -> bool:
        """Read on to the end of the held file, or until :data:`POLL_BYTES` were read; True when
        it stopped there with more to read (the next poll goes on from that position)."""
        assert self.file is not None
        if os.fstat(self.file.fileno()).st_size < self.file.tell():  # truncated (tsm flush)
            self.file.seek(0)
            self.rest = b""
        got = 0
        while got < POLL_BYTES:
            data = self.file.read(min(1 << 20, POLL_BYTES - got))
            if not data:
                return False
            got += len(data)
            self.rest = _split(self.rest, data, out)
        return True

    def poll(self) -> list[bytes]:
        """The complete lines appended since the last poll, those of files rotated meanwhile
        included; at most about :data:`POLL_BYTES` of the held file per poll, so a flood is read
        a slice at a time (in order, nothing skipped) rather than into memory at once."""
        out: list[bytes] = []
        if self.file is not None:
            if self._read(out):
                return out
            if _current_ident(self.path) == self.ident:
                return out
            if self._read(out):  # replaced: finish it, a slice at a time
                return out
            if self.rest:
                out.append(self.rest)
            self.close()
            finished_one = True
        else:
            if _current_ident(self.path) is None:
                return out
            finished_one = False
        rotated, f = _snapshot(self.directory, self.stream)
        new = [(stamp, path) for stamp, path in rotated if stamp not in self.known]
        for _, path in new[1:] if finished_one else new:
            try:
                with _open_log(path) as g:
                    out.extend(_lines_forward(g))
            except FileNotFoundError:  # pruned before it could be read
                pass
        self.known.update(stamp for stamp, _ in rotated)
        if f is not None:
            self._hold(f, at_end=False)
            self._read(out)  # a flood goes on at the next poll
        return out

    def close(self) -> None:
        if self.file is not None:
            self.file.close()
            self.file = None
        self.rest = b""


class _Follower:
    """The iterator :func:`follow` returns; holds the followed files open until exhausted or closed."""

    def __init__(
        self,
        directory: Path,
        streams: tuple[str, ...],
        poll: float,
        stop: Callable[[], bool] | None,
        lines: int | None = 0,
        since: float | None = None,
    ) -> None:
        self._trackers: list[_Tracker] = []
        self._closed = False
        try:
            for s in streams:
                self._trackers.append(_Tracker(directory, s, -1 if lines is None else lines, since))
        except BaseException:
            self.close()
            raise
        self._poll = poll
        self._stop = stop
        self._ready: collections.deque[LogLine] = collections.deque(_merge([t.backlog for t in self._trackers]))
        for t in self._trackers:
            t.backlog = []

    def __iter__(self) -> "_Follower":
        return self

    def __next__(self) -> LogLine:
        try:
            while not self._ready:
                if self._closed or (self._stop is not None and self._stop()):
                    self.close()
                    raise StopIteration
                groups = [[LogLine.parse(t.stream, raw) for raw in t.poll()] for t in self._trackers]
                self._ready.extend(_merge(groups))
                if not self._ready:
                    time.sleep(self._poll)
            return self._ready.popleft()
        except BaseException as exc:  # KeyboardInterrupt included: release the files, re-raise
            if not isinstance(exc, StopIteration):
                self.close()
            raise

    def take(self) -> list[LogLine]:
        """The lines ready now (after one poll of the files when none is), without waiting."""
        if not self._ready and not self._closed:
            groups = [[LogLine.parse(t.stream, raw) for raw in t.poll()] for t in self._trackers]
            self._ready.extend(_merge(groups))
        out = list(self._ready)
        self._ready.clear()
        return out
    def ready(self, limit: int | None = None) -> list[LogLine]:
        """The lines available now (the tail first), at most ``limit``, without waiting: for a
        follower polled by requests (``tsm -H HOST logs -f``) rather than iterated."""
        if not self._ready and not self._closed:
            groups = [[LogLine.parse(t.stream, raw) for raw in t.poll()] for t in self._trackers]
            self._ready.extend(_merge(groups))
        n = len(self._ready) if limit is None else min(limit, len(self._ready))
        return [self._ready.popleft() for _ in range(n)]

    def close(self) -> None:
        """Stop following and close the files (idempotent)."""
        self._closed = True
        for tracker in getattr(self, "_trackers", ()):
            tracker.close()

    def __del__(self) -> None:
        self.close()


def follow(
    directory: Path,
    *,
    stream: str = "both",
    poll: float = 0.2,
    stop: Callable[[], bool] | None = None,
    lines: int | None = 0,
    since: float | None = None,
) -> Iterator[LogLine]:
    """Yield the complete lines appended to ``stream``'s current files from now on, as they come.

    Positions are taken when ``follow`` is called (not at the first ``next``): lines written
    after the call are never missed. ``lines`` (per stream; None for all) and ``since`` first
    yield the tail that :func:`tail` would give, read up to exactly those positions, so no line
    falls between the tail and what follows, and none is yielded twice (``tsm logs -f``). An
    unfinished last line present at the call is yielded whole once its newline comes. Files are polled every ``poll`` seconds while idle. When
    ``current.*`` is replaced by a rotation, the old file is read to its end first, then the new
    one from its start, so nothing is lost or repeated; a truncation (``tsm flush``) restarts at 0;
    a ``current.*`` that does not exist yet is picked up when it appears.

    With "both", each poll's lines are merged by time when all carry timestamps, else out lines
    come before err lines. The iterator ends when ``stop()`` returns true (checked at every poll);
    without ``stop`` it never ends. An exception raised meanwhile (KeyboardInterrupt included)
    closes the files and propagates; ``close()`` on the iterator stops it early.
    Raises :class:`UsageError` for a bad ``stream``.
    """
    streams = _check_stream(stream)
    if lines is not None and lines < 0:
        lines = 0
    return _Follower(Path(directory), streams, poll, stop, lines, since)


def follow_many(
    sources: list[tuple[str, Path]],
    *,
    stream: str = "both",
    poll: float = 0.2,
    stop: Callable[[], bool] | None = None,
    lines: int | None = 0,
    since: float | None = None,
) -> Iterator[tuple[str, LogLine]]:
    """:func:`follow` for several processes at once: ``(name, line)`` pairs, one stream.

    ``sources`` are ``(name, directory)`` pairs. Each process's tail comes first, in order, then
    new lines as they come from any of them. The files are closed when the iterator is closed
    or garbage-collected, or when ``stop()`` returns true.
    """
    followers: list[tuple[str, _Follower]] = []
    try:
        for name, directory in sources:
            followers.append((name, follow(directory, stream=stream, poll=poll, lines=lines, since=since)))  # type: ignore[arg-type]
        while True:
            idle = True
            for name, f in followers:
                for line in f.take():
                    idle = False
                    yield name, line
            if stop is not None and stop():
                return
            if idle:
                time.sleep(poll)
    finally:
        for _, f in followers:
            f.close()

