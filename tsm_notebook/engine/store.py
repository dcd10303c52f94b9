"""The history database: lifecycle events and metric samples in SQLite (``$TSM_HOME/db/tsm.sqlite``).

The daemon owns one :class:`Store`, the only writer. Its calls only append to an in-memory queue;
one background thread does every write, so a slow, locked or corrupt database can never stall or
kill the daemon's event loop. Clients (the ``tsm`` command line, the pandas layer) read the same
file read-only through :mod:`tsm_notebook.core.history`.

The file is in WAL mode, so readers never block the writer and the writer never blocks readers.
Times are epoch seconds (float), sizes bytes (int), ``None`` is unknown.
"""

from __future__ import annotations

import os
import sqlite3
import threading
import time
from collections import deque
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any

from ..core.history import EVENT_COLUMNS, METRIC_COLUMNS

__all__ = ["SCHEMA_VERSION", "Store"]

SCHEMA_VERSION = 1

_SCHEMA = f"""
CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT);
CREATE TABLE IF NOT EXISTS events (
    id INTEGER PRIMARY KEY, time REAL, tsm_id INTEGER, name TEXT, event TEXT, pid INTEGER,
    exit_code INTEGER, signal INTEGER, reason TEXT);
CREATE TABLE IF NOT EXISTS metrics (
    time REAL, tsm_id INTEGER, name TEXT, pid INTEGER, cpu REAL, rss INTEGER, vms INTEGER,
    threads INTEGER, fds INTEGER, read_bytes INTEGER, write_bytes INTEGER, children INTEGER,
    ports TEXT);
CREATE INDEX IF NOT EXISTS metrics_name_time ON metrics (name, time);
CREATE INDEX IF NOT EXISTS metrics_time ON metrics (time);
CREATE INDEX IF NOT EXISTS events_name_time ON events (name, time);
CREATE INDEX IF NOT EXISTS events_time ON events (time);
INSERT OR IGNORE INTO meta (key, value) VALUES ('schema_version', '{SCHEMA_VERSION}');
"""
_INSERT_EVENT = f"INSERT INTO events ({', '.join(EVENT_COLUMNS)}) VALUES ({', '.join('?' * len(EVENT_COLUMNS))})"
_INSERT_METRIC = f"INSERT INTO metrics ({', '.join(METRIC_COLUMNS)}) VALUES ({', '.join('?' * len(METRIC_COLUMNS))})"

PRUNE_BATCH = 5000
MAX_PENDING_ROWS = 100_000
BUSY_TIMEOUT = 0.5  # seconds SQLite itself waits on a lock before the writer backs off and retries
_BACKOFF_MIN, _BACKOFF_MAX = 0.05, 2.0

# SQLite primary result codes (sqlite3.h); Python >= 3.11 exposes them as ``sqlite_errorcode``.
_SQLITE_BUSY, _SQLITE_LOCKED, _SQLITE_CORRUPT, _SQLITE_NOTADB = 5, 6, 11, 26


def _error_kind(exc: sqlite3.Error) -> str:
    """``"busy"``, ``"corrupt"`` or ``"other"`` for a SQLite error (by code, else by message)."""
    code = getattr(exc, "sqlite_errorcode", None)
    if code is not None:
        code &= 0xFF
        if code in (_SQLITE_BUSY, _SQLITE_LOCKED):
            return "busy"
        if code in (_SQLITE_CORRUPT, _SQLITE_NOTADB):
            return "corrupt"
        return "other"
    text = str(exc)
    if "locked" in text or "busy" in text:
        return "busy"
    if "malformed" in text or "not a database" in text:
        return "corrupt"
    return "other"


def _ports_text(ports: Iterable[int] | None) -> str | None:
    return None if ports is None else ",".join(str(int(p)) for p in ports)


class Store:
    """The daemon's writer of the history database (WAL mode).

    Every public method returns at once and never raises: it only appends to a queue that one
    background thread writes out, each metrics tick in ONE transaction. While the database is
    locked the rows wait in memory and land when it frees; when more than ``max_pending`` metric
    rows wait, the oldest ticks are dropped (events never are) and counted in :attr:`dropped`.
    A corrupt file is moved aside to ``tsm.sqlite.corrupt-<epoch>`` (with its ``-wal``/``-shm``)
    and a fresh database continues, starting with a ``db-recovered`` event.

    :attr:`problem` holds the last database error (``"database is locked"``, ...), or ``None``
    while writes succeed.
    """

    def __init__(
        self,
        path: Path,
        *,
        retention: float = 7 * 86400.0,
        clock: Callable[[], float] = time.time,
        max_pending: int = MAX_PENDING_ROWS,
    ) -> None:
        """Start the writer thread for ``path`` (created with its directory on first write).

        ``retention`` is in seconds (see :meth:`prune`); ``clock`` gives epoch seconds for event
        times and the retention cutoff; ``max_pending`` bounds the metric rows held in memory.
        """
        self.path = Path(path)
        self.retention = float(retention)
        self.dropped = 0
        """Metric rows thrown away because too many waited, since start."""
        self._error: str | None = None  # the last failure, None once a write succeeds again
        self._drops_since_ok = 0
        self._clock = clock
        self._max_pending = max_pending
        self._cond = threading.Condition()
        self._queue: deque[tuple[str, Any]] = deque()
        self._pending_rows = 0  # metric rows queued or in the writer's hands
        self._prune_queued = False
        self._stopping = False
        self._conn: sqlite3.Connection | None = None
        self._conn_identity: tuple[int, int] | None = None
        self._thread = threading.Thread(target=self._run, name="tsm-store", daemon=True)
        self._thread.start()

    @property
    def problem(self) -> str | None:
        """The last database error (with the metric rows dropped since), or ``None`` when healthy."""
        parts = [self._error] if self._error else []
        if self._drops_since_ok:
            parts.append(f"{self._drops_since_ok} metric rows dropped")
        return "; ".join(parts) or None

    # -- the caller's side: enqueue only ---------------------------------------------------

    def event(
        self,
        *,
        tsm_id: int | None,
        name: str | None,
        event: str,
        pid: int | None = None,
        exit_code: int | None = None,
        signal: int | None = None,
        reason: str | None = None,
        time: float | None = None,
    ) -> None:
        """Queue one lifecycle event (``time`` defaults to the clock now). Never blocks or raises."""
        when = self._clock() if time is None else time
        self._put(("event", (when, tsm_id, name, event, pid, exit_code, signal, reason)), 0)

    def metrics(self, rows: list[dict]) -> None:
        """Queue one sampling tick, written in one transaction. Never blocks or raises.

        Row keys are those of :data:`METRIC_COLUMNS` (``ports`` a list of ints or ``None``);
        a missing key is stored as ``None``.
        """
        try:
            values = [
                tuple(_ports_text(row.get(c)) if c == "ports" else row.get(c) for c in METRIC_COLUMNS)
                for row in rows
            ]
        except Exception as exc:  # a caller's bug must not take the daemon down
            self._error = f"metrics rows refused: {exc!r}"
            return
        if values:
            self._put(("metrics", values), len(values))

    def prune(self) -> None:
        """Queue retention: delete events and metrics older than ``retention`` seconds.

        Deletes in batches of :data:`PRUNE_BATCH` rows, one short transaction each, so no single
        statement holds the write lock long. A prune already queued is not queued twice.
        """
        with self._cond:
            if self._prune_queued:
                return
            self._prune_queued = True
        self._put(("prune", None), 0)

    def flush(self, timeout: float = 5.0) -> bool:
        """Wait up to ``timeout`` seconds until everything queued so far is written (or refused).

        Returns ``False`` on timeout (e.g. the database stayed locked) or after :meth:`close`.
        """
        done = threading.Event()
        if not self._put(("flush", done), 0):
            return False
        return done.wait(timeout)

    def close(self, timeout: float = 5.0) -> None:
        """Write what is queued (waiting up to ``timeout`` seconds), then stop the writer thread.

        Whatever is still queued after that is lost and counted in :attr:`problem`.
        """
        self.flush(timeout)
        with self._cond:
            self._stopping = True
            self._cond.notify_all()
        self._thread.join(timeout=BUSY_TIMEOUT + 1.0)

    def _put(self, item: tuple[str, Any], rows: int) -> bool:
        with self._cond:
            if self._stopping:
                return False
            self._queue.append(item)
            self._pending_rows += rows
            if self._pending_rows > self._max_pending:
                self._drop_oldest_metrics()
            self._cond.notify()
            return True

    def _drop_oldest_metrics(self) -> None:
        """Drop whole oldest ticks until the bound holds again (called with the lock held)."""
        kept = []
        while self._queue and self._pending_rows > self._max_pending:
            item = self._queue.popleft()
            if item[0] == "metrics":
                self._pending_rows -= len(item[1])
                self.dropped += len(item[1])
                self._drops_since_ok += len(item[1])
            else:
                kept.append(item)
        self._queue.extendleft(reversed(kept))

    # -- the writer thread -----------------------------------------------------------------

    def _run(self) -> None:
        item: tuple[str, Any] | None = None
        backoff = _BACKOFF_MIN
        while True:
            with self._cond:
                if item is None:
                    while not self._queue and not self._stopping:
                        self._cond.wait()
                    if self._stopping:
                        break
                    item = self._queue.popleft()
                    if item[0] == "prune":
                        self._prune_queued = False
            if item[0] == "flush":
                item[1].set()
                item = None
                continue
            if self._write(item):
                with self._cond:
                    if item[0] == "metrics":
                        self._pending_rows -= len(item[1])
                item, backoff = None, _BACKOFF_MIN
                continue
            with self._cond:  # keep the item and retry later; close() wakes us at once
                self._cond.wait_for(lambda: self._stopping, timeout=backoff)
            backoff = min(backoff * 2, _BACKOFF_MAX)
        lost = sum(kind != "flush" for kind, _ in self._queue) + (item is not None)
        if lost:
            self._error = f"{self._error or 'closed'}; {lost} queued writes lost at close"
        for leftover in self._queue:
            if leftover[0] == "flush":
                leftover[1].set()
        self._disconnect()

    def _write(self, item: tuple[str, Any]) -> bool:
        """Write one item; ``True`` when done with it (written or refused), ``False`` to retry."""
        kind, payload = item
        try:
            conn = self._connect()
            if kind == "event":
                conn.execute(_INSERT_EVENT, payload)
            elif kind == "metrics":
                conn.execute("BEGIN IMMEDIATE")  # one transaction for the whole tick
                try:
                    conn.executemany(_INSERT_METRIC, payload)
                    conn.execute("COMMIT")
                finally:
                    if conn.in_transaction:
                        conn.execute("ROLLBACK")
            elif kind == "prune":
                self._prune(conn)
        except sqlite3.Error as exc:
            return self._failed(exc, kind)
        except OSError as exc:  # the db directory cannot be created (yet): keep the rows
            self._error = f"cannot create {self.path.parent}: {exc.strerror or exc}"
            return False
        except Exception as exc:  # a value SQLite cannot bind (a huge int, ...): refuse it
            self._error = f"{kind} refused: {exc!r}"
            return True
        self._error, self._drops_since_ok = None, 0
        return True

    def _failed(self, exc: sqlite3.Error, kind: str) -> bool:
        what = _error_kind(exc)
        if what == "busy":
            self._error = str(exc)
            return False
        if what == "corrupt":
            self._recover(str(exc))
            return False
        if isinstance(exc, sqlite3.OperationalError):
            # disk full, I/O error, read-only, cannot open: reopen and retry later, keeping the rows
            self._error = str(exc)
            self._disconnect()
            return False
        self._error = f"{kind} refused: {exc}"  # bad data (integrity, binding): retrying cannot help
        return True

    def _prune(self, conn: sqlite3.Connection) -> None:
        cutoff = self._clock() - self.retention
        for table in ("metrics", "events"):
            while True:
                cur = conn.execute(
                    f"DELETE FROM {table} WHERE rowid IN "
                    f"(SELECT rowid FROM {table} WHERE time < ? LIMIT {PRUNE_BATCH})",
                    (cutoff,),
                )
                if cur.rowcount < PRUNE_BATCH:
                    break

    def _connect(self) -> sqlite3.Connection:
        if self._conn is not None and self._identity() != self._conn_identity:
            # The file was deleted or replaced under us: writes would go to an unlinked inode.
            self._disconnect()
        if self._conn is None:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            # isolation_level=None: autocommit, so each transaction is exactly what we BEGIN
            conn = sqlite3.connect(self.path, timeout=BUSY_TIMEOUT, isolation_level=None)
            try:
                conn.execute("PRAGMA journal_mode=WAL")
                conn.execute("PRAGMA synchronous=NORMAL")
                conn.executescript(f"BEGIN IMMEDIATE;{_SCHEMA}COMMIT;")
            except BaseException:
                if conn.in_transaction:
                    try:
                        conn.execute("ROLLBACK")
                    except sqlite3.Error:
                        pass
                conn.close()
                raise
            self._conn, self._conn_identity = conn, self._identity()
        return self._conn

    def _identity(self) -> tuple[int, int] | None:
        try:
            st = os.stat(self.path)
        except OSError:
            return None
        return (st.st_dev, st.st_ino)

    def _disconnect(self) -> None:
        if self._conn is not None:
            try:
                self._conn.close()
            except sqlite3.Error:
                pass
            self._conn = None

    def _recover(self, message: str) -> None:
        """Move a corrupt database aside and start a fresh one whose first event says so."""
        self._disconnect()
        aside = self.path.with_name(f"{self.path.name}.corrupt-{int(time.time())}")
        n = 1
        while aside.exists():
            aside = self.path.with_name(f"{self.path.name}.corrupt-{int(time.time())}.{n}")
            n += 1
        try:
            os.replace(self.path, aside)
            for suffix in ("-wal", "-shm"):
                try:
                    os.replace(f"{self.path}{suffix}", f"{aside}{suffix}")
                except FileNotFoundError:
                    pass
        except OSError as exc:
            self._error = f"{message}; cannot move it aside: {exc}"
            return
        self._error = f"{message}; moved aside to {aside.name}"
        reason = f"{message}; the old file is {aside.name}"
        with self._cond:  # first thing in the new database, ahead of the retried item
            self._queue.appendleft(("event", (self._clock(), None, None, "db-recovered", None, None, None, reason)))
