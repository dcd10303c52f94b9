"""History computations shared by ``tsm events`` / ``tsm report`` and the pandas layer.

Pure standard library (the command line imports it, so never pandas): reading events for a
target, the uptime report per process, and their text tables. :mod:`tsm_notebook.frames` wraps
the same functions into DataFrames, so the two front ends cannot disagree.

The uptime model, from the lifecycle events alone:

* a process is **up** from an ``online`` event until the next event that ends a run or starts a
  new one (:data:`DOWN_EVENTS`: exit, crash, stop, restart, errored, ...);
* it is **observed** from its first event (or ``since``, whichever is later) until now, or until
  its ``delete`` event; a deliberate stop counts as observed but not up;
* **availability** is up time / observed time in percent; **crashes** are the exits the daemon
  did not ask for (``exit`` events) other than a clean one (code 0, no signal); **MTBF** is up time / crashes (``None`` without a crash);
* mean and peak CPU (percent of one core) and memory (tree RSS, bytes) come from the metric
  samples in the window, aggregated inside SQLite.

Times are epoch seconds, durations seconds, memory bytes, ``None`` unknown.
"""

from __future__ import annotations

import datetime as _dt
import signal as _signal
import time
from collections.abc import Iterable
from typing import Any

from . import render
from .errors import UsageError
from .logread import parse_since
from .paths import Home
# _read is the history's one read-only query helper (missing file, no tables yet, errors as
# TsmError); the queries below are ones its public readers do not offer.
from .history import EVENT_COLUMNS, _read, read_events

__all__ = [
    "EVENT_NAMES", "UP_EVENTS", "DOWN_EVENTS", "REPORT_COLUMNS", "since_epoch", "signal_name",
    "events", "uptime", "uptime_report", "events_table", "report_table",
]  # fmt: skip

#: Every event name the daemon writes, in lifecycle order (the categories of the event column).
EVENT_NAMES = (
    "daemon-start", "recover", "orphan-stopped", "start", "online", "exit", "crash", "restart",
    "memory-limit", "kill", "stop", "errored", "delete", "log-error", "log-resumed", "db-recovered",
    "daemon-stop", "ready",
)  # fmt: skip
#: Events after which a process is up.
UP_EVENTS = frozenset({"online"})
#: Events after which a process is not up (a run ended, or a new one is still launching).
DOWN_EVENTS = frozenset({"start", "restart", "recover", "orphan-stopped", "exit", "crash", "stop", "kill", "errored", "delete"})
_STATE_EVENTS = UP_EVENTS | DOWN_EVENTS

#: Keys of one :func:`uptime` row, in table order.
REPORT_COLUMNS = (
    "tsm_id", "name", "availability", "online", "observed", "restarts", "crashes", "mtbf",
    "cpu_mean", "cpu_peak", "memory_mean", "memory_peak", "samples", "first_seen", "last_event",
)  # fmt: skip



def since_epoch(since: Any, *, now: float | None = None) -> float | None:
    """Epoch seconds for a ``since`` value, or ``None`` for ``None``.

    Accepts an age or ISO text (``"10m"``, ``"2h"``, ``"2026-11-28T23:00Z"``, as
    :func:`~tsm_notebook.logread.parse_since`), a :class:`datetime.datetime` (naive means local
    time, as ``datetime.timestamp`` has it; a pandas ``Timestamp`` is a datetime), a
    :class:`datetime.timedelta` (that long before ``now``), or epoch seconds (int or float).
    Raises :class:`UsageError` for anything else.
    """
    if since is None:
        return None
    if isinstance(since, str):
        return parse_since(since, now=now)
    if isinstance(since, _dt.datetime):
        return since.timestamp()
    if isinstance(since, _dt.timedelta):
        return (time.time() if now is None else now) - since.total_seconds()
    if isinstance(since, (int, float)) and not isinstance(since, bool):
        return float(since)
    raise UsageError(f"invalid since {since!r}: use 10m, 2h, an ISO time, a datetime or epoch seconds")


def signal_name(number: int | None) -> str | None:
    """``"SIGKILL"`` for 9; ``None`` for ``None``; ``"signal N"`` for a number Python does not name."""
    if number is None:
        return None
    try:
        return _signal.Signals(number).name
    except ValueError:
        return f"signal {number}"



def events(home: Home, target: str | int | None = None, since: Any = None, *, limit: int | None = None) -> list[dict]:
    """Events oldest first, each with ``signal_name`` added to the store's keys.

    ``target`` is ``None`` or ``"all"`` (every event, daemon ones included), a name, or a tsm_id
    (an int or a string of digits; names are never all digits). Processes deleted long ago can
    still be named. ``since`` is as :func:`since_epoch`; ``limit`` keeps the newest ``limit``.
    Raises :class:`TsmError` when the database is unreadable.
    """
    start = since_epoch(since)
    t = None if target is None else str(target)
    if t is None or t == "all":
        rows = read_events(home.db_file, since=start, limit=limit)
    elif t.isdigit():
        where = " WHERE tsm_id = ?" + (" AND time >= ?" if start is not None else "")
        params: tuple = (int(t),) + ((start,) if start is not None else ())
        sql = f"SELECT id, {', '.join(EVENT_COLUMNS)} FROM events{where} ORDER BY time DESC, id DESC"
        if limit is not None:
            sql += f" LIMIT {int(limit)}"
        rows = [dict(r) for r in reversed(_read(home.db_file, sql, params))]
    else:
        rows = read_events(home.db_file, name=t, since=start, limit=limit)
    for r in rows:
        r["signal_name"] = signal_name(r["signal"])
    return rows


# ---------------------------------------------------------------------- the uptime report


def uptime(events: Iterable[dict], *, since: float | None = None, now: float | None = None,
           samples: dict[int, dict] | None = None) -> list[dict]:
    """The uptime report rows, by tsm_id, from events (any order) and optional sample aggregates.

    ``events`` should hold every event at or after ``since`` plus, per process, the last event
    before it (the state the window opens in); older ones are harmless. ``samples`` maps tsm_id to
    ``{samples, cpu_mean, cpu_peak, memory_mean, memory_peak}``. A process deleted before
    ``since`` is left out. Keys of each row: :data:`REPORT_COLUMNS` (``online``, ``observed``,
    ``mtbf`` in seconds; ``availability`` in percent; ``first_seen`` epoch seconds).
    """
    now = time.time() if now is None else now
    samples = samples or {}
    by_id: dict[int, list[dict]] = {}
    for e in events:
        if e.get("tsm_id") is not None:
            by_id.setdefault(int(e["tsm_id"]), []).append(e)
    rows = []
    for tsm_id, evs in sorted(by_id.items()):
        evs.sort(key=lambda e: (e["time"], e.get("id") or 0))
        row = _one(tsm_id, evs, since, now)
        if row is None:
            continue
        agg = samples.get(tsm_id) or {}
        for key in ("cpu_mean", "cpu_peak", "memory_mean", "memory_peak"):
            row[key] = agg.get(key)
        row["samples"] = int(agg.get("samples") or 0)
        rows.append({k: row[k] for k in REPORT_COLUMNS})
    return rows


def _one(tsm_id: int, evs: list[dict], since: float | None, now: float) -> dict | None:
    up = False
    opened: float | None = None  # when the observed window started
    up_from = 0.0
    online = 0.0
    end = now
    restarts = crashes = 0
    last = None
    for e in evs:
        t = float(e["time"])
        name = e["event"]
        if since is not None and t < since:
            # before the window: only the state it opens in matters
            if name in _STATE_EVENTS:
                up = name in UP_EVENTS
                last = e
            continue
        if opened is None:
            opened = t if since is None or last is None else since
            up_from = opened
        if name in _STATE_EVENTS:
            if up and name not in UP_EVENTS:
                online += t - up_from
            if not up and name in UP_EVENTS:
                up_from = t
            up = name in UP_EVENTS
        restarts += name == "restart"
        # a clean exit (code 0, no signal: a job that finished) is not a crash
        crashes += name == "exit" and not (e.get("exit_code") == 0 and e.get("signal") is None)
        last = e
        if name == "delete":
            end = t
            break
    if opened is None:  # no event in the window
        if last is None or last["event"] == "delete":
            return None
        opened = up_from = since if since is not None else float(last["time"])
    if up:
        online += max(0.0, end - up_from)
    observed = max(0.0, end - opened)
    return {
        "tsm_id": tsm_id,
        "name": next((e["name"] for e in reversed(evs) if e.get("name")), None),
        "availability": 100.0 * online / observed if observed > 0 else None,
        "online": online,
        "observed": observed,
        "restarts": restarts,
        "crashes": crashes,
        "mtbf": online / crashes if crashes else None,
        "first_seen": opened,
        "last_event": last["event"] if last else None,
    }


_STATE_LIST = ", ".join(f"'{e}'" for e in sorted(_STATE_EVENTS))


def uptime_report(home: Home, since: Any = None, *, now: float | None = None) -> list[dict]:
    """:func:`uptime` over the history database of ``home`` (see the module docstring).

    Reads the events of the window plus the state each process was in when it opened, and the
    metric aggregates (one GROUP BY inside SQLite, not the samples themselves). Raises
    :class:`TsmError` when the database is unreadable.
    """
    start = since_epoch(since, now=now)
    db = home.db_file
    evs = read_events(db, since=start)
    if start is not None:
        opening = _read(
            db,
            f"SELECT id, {', '.join(EVENT_COLUMNS)} FROM events WHERE id IN (SELECT max(id) FROM events "
            f"WHERE time < ? AND tsm_id IS NOT NULL AND event IN ({_STATE_LIST}) GROUP BY tsm_id)",
            (start,),
        )
        evs = [dict(r) for r in opening] + evs
    where, params = (" WHERE time >= ?", (start,)) if start is not None else ("", ())
    agg = _read(
        db,
        "SELECT tsm_id, count(*) AS samples, avg(cpu) AS cpu_mean, max(cpu) AS cpu_peak, "
        f"avg(rss) AS memory_mean, max(rss) AS memory_peak FROM metrics{where} GROUP BY tsm_id",
        params,
    )
    samples = {r["tsm_id"]: dict(r) for r in agg if r["tsm_id"] is not None}
    return uptime(evs, since=start, now=now, samples=samples)


# ---------------------------------------------------------------------- text


EVENT_HEADERS = ("Time", "Name", "Event", "PID", "Exit", "Signal", "Reason")
REPORT_HEADERS = ("ID", "Name", "Avail", "Online", "Observed", "Restarts", "Crashes", "MTBF",
                  "CPU mean", "CPU peak", "Mem mean", "Mem peak", "Last event")  # fmt: skip


def _dash(value: Any) -> Any:
    return "-" if value is None else value


def events_table(rows: list[dict]) -> str:
    """The ``tsm events`` table (local times to the second)."""
    return render.table(
        EVENT_HEADERS,
        [
            [render.when(r["time"]), _dash(r["name"]), r["event"], _dash(r["pid"]), _dash(r["exit_code"]),
             _dash(r.get("signal_name") or signal_name(r["signal"])), _dash(r["reason"])]
            for r in rows
        ],
    )


def report_table(rows: list[dict]) -> str:
    """The ``tsm report`` table."""
    return render.table(
        REPORT_HEADERS,
        [
            [r["tsm_id"], r["name"], render.percent(r["availability"]), render.duration(r["online"]),
             render.duration(r["observed"]), r["restarts"], r["crashes"], render.duration(r["mtbf"]),
             render.percent(r["cpu_mean"]), render.percent(r["cpu_peak"]),
             render.size(None if r["memory_mean"] is None else int(r["memory_mean"])),
             render.size(r["memory_peak"]), _dash(r["last_event"])]
            for r in rows
        ],
    )
