"""A log stream's rotated files: compression off the event loop, retention by count and age.

:class:`RotatedFiles` is the part of :class:`~tsm_notebook.engine.logwriter.LogWriter` that looks
after ``<stream>-<stamp>.log`` files once they are rotated: a module-wide pool of two low-priority
threads gzips each one to ``.log.gz.tmp``, renames that to ``.log.gz`` and removes the ``.log``;
compression waits while the stream floods (at most :data:`DEFER_MAX` files); what a crash left
half-done is cleared or redone when a writer starts.
"""

from __future__ import annotations

import gzip
import os
import threading
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

from ..core.logread import parse_rotated_name, rotated_name

_GZIP_LEVEL = 1  # fast: on a 2-core box the compressor competes with the children it logs
DEFER_MAX = 16  # rotated files left uncompressed while a stream floods, at most
_COPY_SIZE = 256 * 1024
_pool_lock = threading.Lock()
_pool: ThreadPoolExecutor | None = None


def _compressor() -> ThreadPoolExecutor:
    """The module's compression threads, started on first use and shared by every writer."""
    global _pool
    with _pool_lock:
        if _pool is None:
            _pool = ThreadPoolExecutor(max_workers=2, thread_name_prefix="tsm-log-gzip", initializer=_background)
        return _pool


def _background() -> None:
    """Lower the calling thread's CPU priority (nice 10): compression then takes only the CPU
    that the children and the event loop leave over. Linux applies it to this thread alone."""
    try:
        os.setpriority(os.PRIO_PROCESS, threading.get_native_id(), 10)
    except (OSError, AttributeError):
        pass


def describe(exc: OSError, doing: str) -> str:
    return f"{exc.strerror or exc} ({doing})"



class RotatedFiles:
    """Compression and retention of one stream's rotated files; mixed into the log writer."""

    def _recover(self) -> None:
        """Learn the newest stamp; clear what a crash mid-compression left; compress leftovers."""
        uncompressed = []
        for name, parsed in self._rotated_names(include_tmp=True):
            if parsed is None:
                self._unlink(name)  # a .gz.tmp: the compression never finished
                continue
            self._last_stamp_us = max(self._last_stamp_us, parsed[1])
            if not parsed[2]:
                uncompressed.append(parsed[1])
        self._newest_stamp_us = self._last_stamp_us
        if self._compress:
            # A .log beside its .gz may be from a crash before the .gz was on disk: redo it.
            for stamp in sorted(uncompressed):
                self._submit(stamp)

    def _rotated_names(self, *, include_tmp: bool = False) -> list[tuple[str, tuple[str, int, bool] | None]]:
        """This stream's rotated files as ``(name, parse_rotated_name(name))`` (None for a ``.gz.tmp``)."""
        try:
            names = os.listdir(self.directory)
        except OSError:
            return []
        found: list[tuple[str, tuple[str, int, bool] | None]] = []
        for name in names:
            if name.endswith(".gz.tmp"):
                if include_tmp and name.startswith(self.stream + "-"):
                    found.append((name, None))
                continue
            parsed = parse_rotated_name(name)
            if parsed is not None and parsed[0] == self.stream:
                found.append((name, parsed))
        return found

    def _unlink(self, name: str) -> None:
        try:
            os.unlink(self.directory / name)
        except OSError:
            pass

    def _submit_deferred(self) -> None:
        deferred, self._deferred = self._deferred, []
        for stamp in deferred:
            if (self.directory / rotated_name(self.stream, stamp)).exists():  # not pruned or flushed meanwhile
                self._submit(stamp)

    def _submit(self, stamp: int) -> None:
        if stamp not in self._jobs:
            source = self.directory / rotated_name(self.stream, stamp)
            pool = self._gzip_pool or _compressor()
            self._jobs[stamp] = pool.submit(self._compress_file, source, self._generation)

    def _compress_file(self, source: Path, generation: int) -> None:
        """Gzip ``source`` beside itself, then drop it (runs on a compression thread)."""
        tmp = source.with_name(source.name + ".gz.tmp")
        try:
            # One reused buffer: a fresh 1 MiB bytes per read left each thread's malloc arena
            # holding several MB the daemon never gave back (seen as RSS growth under a flood).
            buf = bytearray(_COPY_SIZE)
            view = memoryview(buf)
            out_fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_NOFOLLOW, 0o644)
            with open(source, "rb", buffering=0) as fin, open(out_fd, "wb") as raw:
                with gzip.GzipFile(source.name, "wb", _GZIP_LEVEL, raw, mtime=0) as gz:
                    while True:
                        n = fin.readinto(buf)
                        if not n:
                            break
                        gz.write(view[:n])
            with self._lock:
                if generation != self._generation:  # flushed meanwhile
                    os.unlink(tmp)
                    return
                os.rename(tmp, source.with_name(source.name + ".gz"))
            os.unlink(source)
        except BaseException:
            try:
                os.unlink(tmp)
            except OSError:
                pass
            raise

    def _collect_jobs(self) -> None:
        """Note finished compressions: their errors become problems (and are retried later)."""
        for stamp, job in list(self._jobs.items()):
            if not job.done():
                continue
            del self._jobs[stamp]
            self._prune_due = True
            exc = job.exception()
            if exc is None:
                self._compress_problem = None
            elif isinstance(exc, FileNotFoundError):
                pass  # pruned or flushed meanwhile
            elif isinstance(exc, OSError):
                self._compress_problem = describe(exc, f"compressing {rotated_name(self.stream, stamp)}")
                self._failed_compressions.append(stamp)
            else:
                self._compress_problem = f"{type(exc).__name__}: {exc} (compressing)"

    def _prune(self) -> None:
        """Remove rotated files beyond ``retain`` or older than ``max_age``, once compressed."""
        now = self._clock()
        if not self._prune_due and now < self._next_age_check:
            return
        self._prune_due = False
        names: dict[int, list[str]] = {}
        for name, parsed in self._rotated_names():
            assert parsed is not None
            names.setdefault(parsed[1], []).append(name)
        stamps = sorted(names)
        doomed = set()
        if self._retain is not None and len(stamps) > self._retain:
            doomed.update(stamps[: len(stamps) - self._retain])
        if self._max_age is not None:
            oldest_kept = (now - self._max_age) * 1_000_000
            doomed.update(s for s in stamps if s < oldest_kept)
        kept = []
        for stamp in stamps:
            if stamp in doomed and stamp in self._jobs:
                self._prune_due = True  # still compressing: next time
            elif stamp in doomed:
                for name in names[stamp]:
                    self._unlink(name)
                continue
            kept.append(stamp)
        if self._max_age is not None and kept:
            self._next_age_check = kept[0] / 1e6 + self._max_age
        else:
            self._next_age_check = float("inf")
