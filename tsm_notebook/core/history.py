"""Readers of the history database (``$TSM_HOME/db/tsm.sqlite``), for every side.

The daemon's :class:`tsm_notebook.engine.store.Store` is the only writer; the command line, the
pandas layer and the panel read the same file here, read-only: a reader never creates, migrates or
locks it. The file is in WAL mode, so readers never block the writer. Times are epoch seconds
(float), sizes bytes (int), ``None`` is unknown.
"""

from __future__ import annotations

import sqlite3
from pathlib import Path
from typing import Any
from urllib.request import pathname2url

from .errors import TsmError

__all__ = ["EVENT_COLUMNS", "METRIC_COLUMNS", "read_events", "read_metrics", "latest_metrics"]

EVENT_COLUMNS = ("time", "tsm_id", "name", "event", "pid", "exit_code", "signal", "reason")
METRIC_COLUMNS = (
    "time", "tsm_id", "name", "pid", "cpu", "rss", "vms", "threads", "fds",
    "read_bytes", "write_bytes", "children", "ports",
)  # fmt: skip

READ_TIMEOUT = 1.0


def _read(path: Path, sql: str, params: tuple = ()) -> list[sqlite3.Row]:
    """Rows of a read-only query; ``[]`` if the database or its tables do not exist yet."""
    path = Path(path)
    if not path.exists():
        return []
    try:
        conn = sqlite3.connect(
            f"file:{pathname2url(str(path.absolute()))}?mode=ro", uri=True, timeout=READ_TIMEOUT
        )
    except sqlite3.Error as exc:
        raise TsmError(f"history database is unreadable: {exc}", path=str(path)) from None
    try:
        conn.row_factory = sqlite3.Row
        return conn.execute(sql, params).fetchall()
    except sqlite3.OperationalError as exc:
        if str(exc).startswith("no such table"):  # created, schema not written yet
            return []
        raise TsmError(f"history database is unreadable: {exc}", path=str(path)) from None
    except sqlite3.Error as exc:
        raise TsmError(f"history database is unreadable: {exc}", path=str(path)) from None
    finally:
        conn.close()


def _metric_dict(row: sqlite3.Row) -> dict[str, Any]:
    out = {c: row[c] for c in METRIC_COLUMNS}
    ports = out["ports"]
    out["ports"] = None if ports is None else [int(p) for p in ports.split(",") if p]
    return out


def read_events(
    path: Path, *, name: str | None = None, since: float | None = None, limit: int | None = None
) -> list[dict]:
    """Events oldest first, optionally of one process ``name`` and at or after ``since``.

    ``limit`` keeps the newest ``limit`` events (still oldest first). Each dict has ``id`` and
    the keys of :data:`EVENT_COLUMNS`. A missing database gives ``[]``; an unreadable one raises
    :class:`TsmError`.
    """
    where, params = _where(name, since)
    sql = f"SELECT id, {', '.join(EVENT_COLUMNS)} FROM events{where} ORDER BY time DESC, id DESC"
    if limit is not None:
        sql += " LIMIT ?"
        params += (int(limit),)
    rows = _read(path, sql, params)
    return [dict(row) for row in reversed(rows)]


def read_metrics(path: Path, *, name: str | None = None, since: float | None = None) -> list[dict]:
    """Metric samples oldest first, optionally of one process ``name`` and at or after ``since``.

    Keys are those of :data:`METRIC_COLUMNS`, ``ports`` a sorted list of ints (``None`` if not
    sampled). A missing database gives ``[]``; an unreadable one raises :class:`TsmError`.
    """
    where, params = _where(name, since)
    sql = f"SELECT {', '.join(METRIC_COLUMNS)} FROM metrics{where} ORDER BY time, rowid"
    return [_metric_dict(row) for row in _read(path, sql, params)]


def latest_metrics(path: Path) -> dict[int, dict]:
    """The newest metric sample of each process, keyed by ``tsm_id`` (for listings without a daemon).

    Costs one index lookup per distinct process name, not a scan of the history. A missing
    database gives ``{}``; an unreadable one raises :class:`TsmError`.
    """
    # A skip-scan over the (name, time) index: step from one name to the next, then take the
    # newest row of each; GROUP BY would read every row of a week of history.
    sql = f"""
        WITH RECURSIVE names(name) AS (
            SELECT (SELECT name FROM metrics WHERE name IS NOT NULL ORDER BY name LIMIT 1)
            UNION ALL
            SELECT (SELECT name FROM metrics WHERE name > names.name ORDER BY name LIMIT 1)
            FROM names WHERE names.name IS NOT NULL
        )
        SELECT {', '.join('m.' + c for c in METRIC_COLUMNS)} FROM names JOIN metrics m
        ON m.rowid = (SELECT rowid FROM metrics WHERE name = names.name ORDER BY time DESC LIMIT 1)
    """
    latest: dict[int, dict] = {}
    for row in _read(path, sql):
        sample = _metric_dict(row)
        tsm_id = sample["tsm_id"]
        if tsm_id is not None and (tsm_id not in latest or sample["time"] > latest[tsm_id]["time"]):
            latest[tsm_id] = sample
    return latest


def _where(name: str | None, since: float | None) -> tuple[str, tuple]:
    clauses, params = [], []
    if name is not None:
        clauses.append("name = ?")
        params.append(name)
    if since is not None:
        clauses.append("time >= ?")
        params.append(float(since))
    return (" WHERE " + " AND ".join(clauses) if clauses else "", tuple(params))


def events_after(path: Path, after_id: int | None, *, limit: int = 1000) -> list[dict]:
    """Events recorded after the one with id ``after_id``, oldest first (at most ``limit``).

    ``after_id=None`` gives none but tells where the history ends: a single dict
    ``{"id": newest id}`` (0 for an empty history), for a poller to start from now.
    """
    if after_id is None:
        rows = _read(path, "SELECT COALESCE(MAX(id), 0) AS id FROM events")
        return [dict(rows[0])] if rows else [{"id": 0}]
    sql = f"SELECT id, {', '.join(EVENT_COLUMNS)} FROM events WHERE id > ? ORDER BY id LIMIT ?"
    return [dict(row) for row in _read(path, sql, (int(after_id), int(limit)))]
