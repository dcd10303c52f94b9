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
from pathlib import Path

from ..client.client import Client
from ..core.errors import UsageError
from ..core.logread import LogLine, parse_since, tail
from ..core.paths import Home

__all__ = ["logs"]


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
