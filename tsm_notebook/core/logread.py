"""Read a process's logs straight from its directory: the last lines, new lines as they come.

Used by ``tsm logs`` and the notebook; it never asks the daemon (following new lines as they
come is :mod:`.logfollow`'s). The files of one process::

    current.out  current.err                          live files, appended by the daemon
    out-20261128T230102.123456Z.log.gz                rotated files: the stamp is when the file
    err-20261128T230102.123456Z.log                   ended (UTC); .log until compressed

A stamp may briefly exist as both ``.log`` and ``.log.gz`` (the ``.gz`` is renamed into place
complete, then the ``.log`` removed): it is one file, read from the ``.log`` while it exists.

A line may start with a timestamp prefix ``2026-11-28T23:01:02.123Z `` (UTC, milliseconds), the
time the daemon received it; :class:`LogLine` parses it. The naming and prefix helpers here are
shared with :mod:`tsm_notebook.engine.logwriter`, which imports this module (not the other way round).
"""

from __future__ import annotations

import calendar
import collections
import gzip
import os
import re
import time
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import BinaryIO, Iterator

from .errors import UsageError
from .units import parse_duration

__all__ = [
    "LogLine",
    "log_files",
    "tail",
    "parse_since",
    "rotated_name",
    "parse_rotated_name",
    "PREFIX_LEN",
]

STREAMS = ("out", "err")
PREFIX_LEN = len("2026-11-28T23:01:02.123Z ")
_BLOCK = 64 * 1024
_ROTATED_RE = re.compile(r"^(out|err)-(\d{8}T\d{6})\.(\d{6})Z\.log(\.gz)?$")
_PREFIX_RE = re.compile(rb"(\d{4})-(\d\d)-(\d\d)T(\d\d):(\d\d):(\d\d)\.(\d{3})Z ")


def rotated_name(stream: str, stamp_us: int) -> str:
    """The name of a rotated, uncompressed file of ``stream`` ended at ``stamp_us`` (epoch µs, UTC).

    Names sort chronologically as strings (``out-20261128T230102.123456Z.log``); the compressed
    file adds ``.gz``.
    """
    seconds, micros = divmod(stamp_us, 1_000_000)
    return f"{stream}-{time.strftime('%Y%m%dT%H%M%S', time.gmtime(seconds))}.{micros:06d}Z.log"


def parse_rotated_name(name: str) -> tuple[str, int, bool] | None:
    """``(stream, stamp_us, compressed)`` for a rotated file name, or None for any other name."""
    m = _ROTATED_RE.match(name)
    if m is None:
        return None
    try:
        seconds = calendar.timegm(time.strptime(m.group(2), "%Y%m%dT%H%M%S"))
    except ValueError:  # digits that are not a date, e.g. month 13
        return None
    return m.group(1), seconds * 1_000_000 + int(m.group(3)), m.group(4) is not None


_second_cache: dict[bytes, int] = {}


def _prefix_time(raw: bytes) -> float | None:
    """Epoch seconds of a timestamp prefix at the start of ``raw``, or None without one."""
    if len(raw) < PREFIX_LEN or raw[23] != 0x5A or raw[10] != 0x54:  # quick reject: 'Z', 'T'
        return None
    m = _PREFIX_RE.match(raw)
    if m is None:
        return None
    key = raw[:19]
    seconds = _second_cache.get(key)
    if seconds is None:
        try:
            seconds = calendar.timegm(tuple(int(g) for g in m.groups()[:6]) + (0, 0, 0))
            datetime(*(int(g) for g in m.groups()[:6]))  # rejects 2026-13-45 that timegm accepts
        except ValueError:
            return None
        if len(_second_cache) > 4096:
            _second_cache.clear()
        _second_cache[key] = seconds
    return seconds + int(m.group(7)) / 1000.0


@dataclass(frozen=True)
class LogLine:
    """One line of a log file.

    ``raw`` is the line exactly as stored, timestamp prefix included, without its newline;
    ``time`` is the epoch seconds of the prefix, None when the line has none; ``name`` is the
    process's name where the reader knows it (:func:`tsm_notebook.logs` sets it), else None.
    """

    stream: str
    raw: bytes
    time: float | None
    name: str | None = None

    @classmethod
    def parse(cls, stream: str, raw: bytes) -> "LogLine":
        """The line ``raw`` (no trailing newline) of ``stream``, its prefix time parsed."""
        return cls(stream, raw, _prefix_time(raw))

    @property
    def text(self) -> str:
        """``raw`` decoded as UTF-8 (invalid bytes replaced), without the timestamp prefix."""
        body = self.raw[PREFIX_LEN:] if self.time is not None else self.raw
        return body.decode("utf-8", errors="replace")


def _check_stream(stream: str) -> tuple[str, ...]:
    if stream == "both":
        return STREAMS
    if stream in STREAMS:
        return (stream,)
    raise UsageError(f"invalid stream {stream!r}: use 'out', 'err' or 'both'")


def _rotated(directory: Path, stream: str) -> list[tuple[int, Path]]:
    """``(stamp_us, path)`` of the rotated files of ``stream``, oldest first, one per stamp."""
    try:
        names = os.listdir(directory)
    except (FileNotFoundError, NotADirectoryError):
        return []
    found: dict[int, Path] = {}
    for name in names:
        parsed = parse_rotated_name(name)
        if parsed is None or parsed[0] != stream:
            continue
        stamp, compressed = parsed[1], parsed[2]
        # The .log is complete whenever it exists (the .gz is made from it), so prefer it.
        if stamp not in found or not compressed:
            found[stamp] = directory / name
    return sorted(found.items())


def log_files(directory: Path, stream: str) -> list[Path]:
    """The files of ``stream`` ("out" or "err") in ``directory``: rotated ones oldest first, then current.

    A stamp present as both ``.log`` and ``.log.gz`` (mid-compression) is listed once, as the
    ``.log``; open it with a fallback to the ``.gz``, which replaces it a moment later.
    ``current.<stream>`` is listed last when it exists. A missing directory gives ``[]``.
    """
    if stream not in STREAMS:
        raise UsageError(f"invalid stream {stream!r}: log_files reads 'out' or 'err'")
    directory = Path(directory)
    files = [path for _, path in _rotated(directory, stream)]
    current = directory / f"current.{stream}"
    if current.exists():
        files.append(current)
    return files


def _open_log(path: Path) -> BinaryIO:
    """Open a log file for reading: gzip transparently; a vanished ``.log`` falls back to its ``.gz``."""
    if path.name.endswith(".gz"):
        return gzip.open(path, "rb")
    try:
        return open(path, "rb")
    except FileNotFoundError:
        if not path.name.endswith(".log"):
            raise
        return gzip.open(path.with_name(path.name + ".gz"), "rb")


def _lines_backward(f: BinaryIO, end: int) -> Iterator[bytes]:
    """The lines of a seekable file's first ``end`` bytes, last first, read in blocks from the end.

    A last line without a newline is yielded too; the empty text after a final newline is not.
    """
    held: list[bytes] = []  # blocks without a newline yet, newest first: one long line
    pos = end
    at_eof = True
    while pos > 0:
        size = min(_BLOCK, pos)
        pos -= size
        f.seek(pos)
        block = f.read(size)
        if b"\n" not in block:
            held.append(block)
            continue
        held.reverse()
        parts = (block + b"".join(held)).split(b"\n")
        held = [parts[0]]
        for piece in reversed(parts[1:]):
            if at_eof:
                at_eof = False
                if not piece:
                    continue
            yield piece
    if end > 0:
        first = b"".join(reversed(held))
        if not (at_eof and not first):
            yield first


def _split(rest: bytes, data: bytes, out: list[bytes]) -> bytes:
    """Append to ``out`` the complete lines of ``rest + data``; return the unfinished remainder."""
    data = rest + data if rest else data
    cut = data.rfind(b"\n")
    if cut < 0:
        return data
    out.extend(data[:cut].split(b"\n"))
    return data[cut + 1 :]


def _lines_forward(f: BinaryIO) -> Iterator[bytes]:
    """Every line of ``f`` from its current position, a last one without newline included."""
    rest = b""
    while True:
        data = f.read(1 << 20)
        if not data:
            break
        lines: list[bytes] = []
        rest = _split(rest, data, lines)
        yield from lines
    if rest:
        yield rest


def _lines_backward_gz(f: BinaryIO, keep: int | None) -> Iterator[bytes]:
    """The last ``keep`` lines (all if None) of a compressed file, last first.

    A gzip stream cannot be read from its end: it is decompressed once, holding only ``keep`` lines.
    """
    return reversed(collections.deque(_lines_forward(f), maxlen=keep))


def _current_ident(path: Path) -> tuple[int, int] | None:
    try:
        return _ident(os.stat(path))
    except (FileNotFoundError, NotADirectoryError):
        return None


def _ident(st: os.stat_result) -> tuple[int, int]:
    return (st.st_dev, st.st_ino)


def _snapshot(directory: Path, stream: str) -> tuple[list[tuple[int, Path]], BinaryIO | None]:
    """The rotated files and ``current.<stream>`` opened (None if absent), with no rotation between.

    Current is opened first, then the rotated files listed; if current was replaced meanwhile,
    once more. A rotation before the opening shows in the list; one after it only renames the
    file held open: either way no file is missed or counted twice.
    """
    current = directory / f"current.{stream}"
    for _ in range(10):
        try:
            f: BinaryIO | None = open(current, "rb", buffering=0)
        except (FileNotFoundError, NotADirectoryError):
            f = None
        rotated = _rotated(directory, stream)
        if f is None or _ident(os.fstat(f.fileno())) == _current_ident(current):
            return rotated, f
        f.close()
    return rotated, None


def _tail_stream(directory: Path, stream: str, count: int | None, since: float | None) -> list[LogLine]:
    rotated, current = _snapshot(directory, stream)
    try:
        end = os.fstat(current.fileno()).st_size if current is not None else 0
        return _tail_snapshot(stream, rotated, current, end, count, since)
    finally:
        if current is not None:
            current.close()


def _tail_snapshot(
    stream: str,
    rotated: list[tuple[int, Path]],
    current: BinaryIO | None,
    end: int,
    count: int | None,
    since: float | None,
) -> list[LogLine]:
    """The tail of one stream's files as :func:`_snapshot` found them, ``current`` read up to ``end``.

    Moves ``current``'s position; the caller owns (and closes) it.
    """
    sources: list[tuple[float, Path | None]] = [(stamp / 1e6, path) for stamp, path in rotated]
    newest_first: list[LogLine] = []
    if current is not None:
        st = os.fstat(current.fileno())
        sources.append((st.st_mtime, None))
    for ended, path in reversed(sources):
        if count is not None and len(newest_first) >= count:
            break
        # Every line of a file was received before it ended; a rotated file's stamp comes from
        # the writer's clock like the prefixes do, while current's mtime is the filesystem's:
        # there a line's own timestamp, when it has one, is trusted over the mtime.
        ended_before = since is not None and ended < since
        if ended_before and path is not None:
            break
        if path is None:
            assert current is not None
            raw_lines = _lines_backward(current, end)
            f = None
        else:
            try:
                f = _open_log(path)
            except FileNotFoundError:  # pruned meanwhile
                continue
            need = None if count is None else count - len(newest_first)
            raw_lines = (
                _lines_backward_gz(f, need)
                if isinstance(f, gzip.GzipFile)
                else _lines_backward(f, os.fstat(f.fileno()).st_size)
            )
        try:
            done = False
            for raw in raw_lines:
                line = LogLine.parse(stream, raw)
                if since is not None and (line.time < since if line.time is not None else ended_before):
                    done = True
                    break
                newest_first.append(line)
                if count is not None and len(newest_first) >= count:
                    break
        finally:
            if f is not None:
                f.close()
        if done:
            break
    newest_first.reverse()
    return newest_first


def _merge(per_stream: list[list[LogLine]]) -> list[LogLine]:
    """One list: by time when every line has a timestamp, else each stream's lines in turn."""
    lines = [line for group in per_stream for line in group]
    if len(per_stream) > 1 and all(line.time is not None for line in lines):
        lines.sort(key=lambda line: line.time)  # stable: out before err on equal times
    return lines


def tail(
    directory: Path, *, stream: str = "both", lines: int | None = 50, since: float | None = None
) -> list[LogLine]:
    """The last ``lines`` lines of ``stream`` ("out", "err" or "both": that many of each), oldest first.

    Rotated and compressed files are read transparently, newest first, and only as far back as
    needed: plain files are read from their end in 64 KiB blocks; a ``.gz`` file (read only when
    the newer files hold too few lines) is decompressed once, keeping only the lines needed.
    ``lines=None`` means no limit. The last line of ``current.*`` is included even without its
    newline yet.

    ``since`` (epoch seconds) keeps lines received at or after it. A line with a timestamp prefix
    is judged by it. A line without one is judged by its file's time range: a rotated file's stamp
    is when it ended and ``current.*``'s modification time when it was last written, so a file that
    ended before ``since`` is dropped whole and a file that ended after it is kept whole (its older
    lines included: without timestamps their own times are unknown).

    With "both", lines are merged by time when all carry timestamps, else the out lines come
    first, then the err lines. A missing directory gives ``[]``. Raises :class:`UsageError` for a
    bad ``stream``.
    """
    streams = _check_stream(stream)
    if lines is not None and lines <= 0:
        return []
    directory = Path(directory)
    return _merge([_tail_stream(directory, s, lines, since) for s in streams])


_AGE_RE = re.compile(r"^\s*(\d+(?:\.\d+)?|\.\d+)\s*([a-z]+)\s*$", re.IGNORECASE)


def parse_since(text: str, *, now: float | None = None) -> float:
    """Epoch seconds for a ``--since`` value: an age ("500ms", "30s", "10m", "2h", "1d", "1w") or an ISO time.

    An age is a duration of :mod:`~tsm_notebook.core.units` (its unit is required) and counts
    back from ``now`` (default: the current time). An ISO-8601 time ("2026-11-28T23:00",
    "2026-11-28 23:00:05", "2026-11-28") may end in ``Z`` or an offset (``+01:00``); without either
    it is local time. Raises :class:`UsageError` for anything else.
    """
    if isinstance(text, str) and _AGE_RE.match(text):
        try:
            age = parse_duration(text, "--since", bare=None)
        except UsageError:
            age = None
        if age is not None:
            return (time.time() if now is None else now) - age
    iso = text.strip() if isinstance(text, str) else ""
    if iso[-1:] in ("Z", "z"):
        iso = iso[:-1] + "+00:00"
    try:
        if not iso[:4].isdigit():
            raise ValueError(text)
        return datetime.fromisoformat(iso).timestamp()
    except (ValueError, OverflowError, OSError):
        raise UsageError(
            f"invalid time {text!r}: use an age like 500ms, 30s, 10m, 2h, 1d "
            "or an ISO time like 2026-11-28T23:00 (Z or +01:00 for UTC or an offset)"
        ) from None
