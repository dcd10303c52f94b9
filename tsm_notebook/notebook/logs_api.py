"""``tsm_notebook.logs``: a process's last log lines as a list, for notebook code.

::

    import tsm_notebook as tsm

    for line in tsm.logs("web-8000", lines=20, stream="err", since="10m"):
        print(line.time, line.text)

One ``describe`` request asks the daemon where the process's directory is; the lines are then
read straight from its files (rotated and compressed ones included) by
:mod:`tsm_notebook.logread`, without going through the daemon.
"""

from __future__ import annotations

import os
from collections.abc import Iterable
from pathlib import Path
from typing import Any

from ..client.client import Client
from ..core.errors import UsageError
from ..core.logread import LogLine, parse_since, tail
from ..core import render
from ..core.paths import Home
from . import html as tsm_html

__all__ = ["LogLines", "logs"]


def logs(
    target: str | int,
    lines: int | None = 50,
    stream: str = "both",
    since: str | float | None = None,
    *,
    home: str | os.PathLike[str] | Home | None = None,
) -> list[LogLine]:
    """The last ``lines`` lines of ``stream`` ("out", "err" or "both": that many of each), oldest first.

    ``target`` is a name, a tsm_id or "all" (each process's lines in turn, by tsm_id); every
    :class:`~tsm_notebook.logread.LogLine` carries its process's ``name``, its ``stream``, its
    ``raw`` bytes exactly as written and its ``time`` (epoch seconds from the ``--time`` prefix,
    else None); ``.text`` decodes it. ``lines=None`` means every line kept. ``since`` is epoch
    seconds or a ``--since`` string ("30s", "10m", "2h", "1d", or an ISO time) and keeps the
    lines received at or after it (see :func:`tsm_notebook.logread.tail` for lines without a
    timestamp). With "both", lines are merged by time when all carry timestamps, else a process's
    out lines come before its err lines.

    Starts the daemon of ``home`` (default ``$TSM_HOME``, else ``~/.tsm``) if none is running.
    Raises :class:`~tsm_notebook.errors.ProcessNotFound` for an unknown target and
    :class:`~tsm_notebook.errors.UsageError` for a bad ``stream``, ``lines`` or ``since``.
    """
    if lines is not None and (isinstance(lines, bool) or not isinstance(lines, int) or lines < 0):
        raise UsageError(f"lines must be a number >= 0 or None, not {lines!r}")
    if isinstance(since, str):
        since = parse_since(since)
    elif since is not None and (isinstance(since, bool) or not isinstance(since, (int, float))):
        raise UsageError(f"since must be epoch seconds or a string like '10m', not {since!r}")
    if stream not in ("out", "err", "both"):
        raise UsageError(f"invalid stream {stream!r}: use 'out', 'err' or 'both'")
    with Client(home if isinstance(home, Home) else Home.resolve(home)) as client:
        rows = client.call("describe", target=str(target))
    found: list[LogLine] = []
    for row in sorted(rows, key=lambda r: r["tsm_id"]):
        name = row["name"]
        found.extend(
            LogLine(line.stream, line.raw, line.time, name)
            for line in tail(Path(row["dir"]), stream=stream, lines=lines, since=since)
        )
    return found


class LogLines(list):
    """Log lines (:class:`~tsm_notebook.logread.LogLine`) that show themselves as ``tsm logs``
    prints them: ``out | text``, or ``name|err | text`` when several processes are mixed.

    A plain list otherwise. ``labelled`` says whether lines carry their process's name (default:
    when they come from several processes). With ``raw`` the text repr shows the lines exactly as
    written (timestamp prefixes included, no labels); with ``plain`` without colour codes. The
    HTML repr is a scrolling box, err lines red, ANSI colours shown as colours.
    """

    def __init__(self, lines: Iterable[Any] = (), *, labelled: bool | None = None, raw: bool = False,
                 plain: bool = False) -> None:
        super().__init__(lines)
        self.labelled = labelled
        self.raw = raw
        self.plain = plain

    def _several(self) -> bool:
        return self.labelled if self.labelled is not None else len({line.name for line in self}) > 1

    def __repr__(self) -> str:
        if not self:
            return "(no log lines)"
        if self.raw:
            text = "\n".join(line.raw.decode("utf-8", errors="replace") for line in self)
        else:
            several = self._several()
            text = "\n".join(f"{line.name}|{line.stream} | {line.text}" if several else f"{line.stream} | {line.text}"
                             for line in self)
        return render.strip_ansi(text) if self.plain else text

    def _repr_html_(self) -> str:
        several = self._several()
        text = render.strip_ansi if self.plain else str
        return tsm_html.log_lines([(line.name if several else None, line.stream, text(line.text), line.time) for line in self])

    def to_dicts(self) -> list[dict[str, Any]]:
        """``[{name, stream, time, text}]``, as ``tsm logs --json`` prints them."""
        return [{"name": line.name, "stream": line.stream, "time": line.time, "text": line.text} for line in self]
