"""pandas DataFrames of the process table and its history (the only module that imports pandas).

::

    processes()      one row per process, the ``ls`` columns with real dtypes (asks the daemon)
    events()         lifecycle events, indexed by UTC time (reads SQLite, no daemon needed)
    metrics()        metric samples, tidy, indexed by UTC time (reads SQLite)
    uptime_report()  availability, restarts, crashes, MTBF, mean/peak CPU and memory per process

Every frame keeps its columns and dtypes when it has no rows, so code written against a busy
home works on an empty one. Times are ``datetime64[ns, UTC]``, durations ``timedelta64[ns]``,
memory and byte counts nullable ``Int64`` (bytes), CPU ``float64`` (percent of one core, ``NaN``
when unknown, e.g. a process's first sample).

``events()`` and ``metrics()`` are indexed by a ``DatetimeIndex`` named ``"time"``, so
``metrics("web")["rss"].plot()``, ``metrics("web")["cpu"].resample("1min").mean()`` and
``events().loc["2026-11-28"]`` just work (a whole frame resamples with ``numeric_only=True``, as
``name`` and ``ports`` are not numbers).

``since`` everywhere accepts ``"10m"``, ``"2h"``, ISO text, a ``datetime``, a ``timedelta`` or
epoch seconds (see :func:`tsm_notebook.report.since_epoch`). ``home`` defaults to ``$TSM_HOME``
(else ``~/.tsm``).
"""

from __future__ import annotations

import os
from typing import Any, Callable

import numpy as np
import pandas as pd

from ..core import report as _report
from ..core import states
from ..client.client import Client, flush_history
from ..core.paths import Home
from ..core.history import read_metrics

__all__ = ["processes", "events", "metrics", "uptime_report"]

_NS_UTC = "datetime64[ns, UTC]"
_NS_DELTA = "timedelta64[ns]"


def _home(home: Any) -> Home:
    return home if isinstance(home, Home) else Home.resolve(home)


# ---------------------------------------------------------------------- column converters
# Each takes the raw values of one column (a list) and returns an array of the final dtype.


def _int(values: list) -> Any:
    try:
        return np.array(values, dtype="int64")
    except (TypeError, ValueError):  # an unknown value: keep it visible as <NA>
        return pd.array(values, dtype="Int64")


def _nullable_int(values: list) -> Any:
    return pd.array(values, dtype="Int64")


def _float(values: list) -> Any:
    return np.array(values, dtype="float64")


def _seconds(values: list) -> np.ndarray:
    return np.array([np.nan if v is None else v for v in values], dtype="float64")


def _datetime(values: list) -> Any:
    return pd.to_datetime(_seconds(values), unit="s", utc=True).astype(_NS_UTC)


def _timedelta(values: list) -> Any:
    return pd.to_timedelta(_seconds(values), unit="s").astype(_NS_DELTA)


def _bool(values: list) -> Any:
    if any(v is None for v in values):
        return pd.array(values, dtype="boolean")
    return np.array(values, dtype="bool")


# The dtype pandas gives a column of text: object before pandas 3, its string dtype from 3 on.
# Fixed once, so an empty frame has the same dtypes as a full one.
_STR = pd.Series(["x"]).dtype


def _str(values: list) -> Any:
    return pd.array(values, dtype=_STR)


def _category(categories: tuple[str, ...]) -> Callable[[list], Any]:
    def conv(values: list) -> Any:
        extra = sorted({v for v in values if v is not None and v not in categories})
        return pd.Categorical(values, categories=list(categories) + extra)

    return conv


def _object(values: list) -> Any:
    out = np.empty(len(values), dtype=object)
    out[:] = values
    return out


def _frame(rows: list[dict], columns: dict[str, Callable[[list], Any]], index: str | None = None) -> pd.DataFrame:
    """A frame with exactly ``columns`` in order, each built by its converter (extra keys are kept
    at the end as objects); ``index`` names the column that becomes the index."""
    names = list(columns)
    seen = set(names)
    for r in rows[:1]:
        names += [k for k in r if k not in seen]
    data = {}
    for name in names:
        conv = columns.get(name, _object)
        data[name] = conv([r.get(name) for r in rows])
    frame = pd.DataFrame(data, columns=names)
    if index is not None:
        frame = frame.set_index(index)
    return frame


# ---------------------------------------------------------------------- processes


#: The ``ls`` columns first, then every other field of a listing row, with their converters.
PROCESS_COLUMNS: dict[str, Callable[[list], Any]] = {
    "tsm_id": _int,
    "name": _str,
    "env_file": _str,
    "pid": _nullable_int,
    "port": _nullable_int,
    "status": _category(states.ALL),
    "uptime": _timedelta,
    "cpu": _float,
    "memory": _nullable_int,
    "restarts": _int,
    "unstable_restarts": _int,
    "start_time": _datetime,
    "created": _datetime,
    "command": _str,
    "argv": _object,
    "shell": _bool,
    "cwd": _str,
    "interpreter": _str,
    "type": _str,
    "exit_code": _nullable_int,
    "exit_signal": _nullable_int,
    "listen_ports": _object,
    "pid_create_time": _datetime,
    "autorestart": _bool,
    "max_restarts": _int,
    "min_uptime": _timedelta,
    "restart_delay": _timedelta,
    "exp_backoff": _timedelta,
    "max_memory": _nullable_int,
    "kill_timeout": _timedelta,
    "stop_signal": _str,
    "time": _bool,
    "problems": _object,
    "out_log": _str,
    "err_log": _str,
    "stack": _str,  # the stack it belongs to (tsm up), else <NA>
    "app": _str,  # its app in the stack file
}


def processes(home: str | os.PathLike[str] | Home | None = None, *, client: Client | None = None,
              host: str | None = None, hosts: Any = None) -> pd.DataFrame:
    """One row per process, stopped ones included, sorted by ``tsm_id`` (one ``ls`` request).

    Columns (:data:`PROCESS_COLUMNS`): ``tsm_id`` int64, ``name``, ``status`` categorical over
    :data:`tsm_notebook.states.ALL`, ``pid``/``port``/``memory`` (bytes)/``exit_code``/
    ``exit_signal``/``max_memory`` Int64, ``cpu`` float64 (percent of one core), ``restarts``
    int64, ``uptime`` and the policy durations timedelta64[ns], ``start_time``/``created``
    datetime64[ns, UTC], ``stack`` and ``app`` (<NA> outside a stack), then the other fields of ``meta.json``. ``cpu``, ``memory`` and
    ``uptime`` are known only for online processes.

    Uses ``client`` if given (and leaves it open), else connects to the daemon of ``home``,
    starting it if none runs. Raises what :meth:`Client.call` raises (:class:`DaemonError`, ...).
    ``host=``/``hosts=`` (a name of ``[hosts.NAME]``, ``"all"``, a list) ask those hosts
    instead and add a categorical ``host`` column (:mod:`~tsm_notebook.notebook.host_frames`).
    """
    if host is not None or hosts is not None:  # other machines: a host column (notebook/host_frames.py)
        from . import host_frames

        return host_frames.processes(host_frames.host_list(host, hosts, home), home)
    if client is not None:
        rows = client.call("ls", all=True)
    else:
        with Client(_home(home)) as c:
            rows = c.call("ls", all=True)
    return _frame(rows, PROCESS_COLUMNS)


# ---------------------------------------------------------------------- events


EVENT_FRAME_COLUMNS: dict[str, Callable[[list], Any]] = {
    "time": _datetime,
    "id": _int,
    "tsm_id": _nullable_int,
    "name": _str,
    "event": _category(_report.EVENT_NAMES),
    "pid": _nullable_int,
    "exit_code": _nullable_int,
    "signal": _nullable_int,
    "signal_name": _str,
    "reason": _str,
}


def events(name: str | int | None = None, since: Any = None, *, home: str | os.PathLike[str] | Home | None = None,
           host: str | None = None, hosts: Any = None) -> pd.DataFrame:
    """Lifecycle events oldest first, indexed by a UTC ``DatetimeIndex`` named ``"time"``.

    ``name`` is a process name, a tsm_id, or ``None``/``"all"`` for every event (the daemon's
    own ones, such as ``daemon-start``, have no ``tsm_id`` or ``name``). Columns: ``id`` int64
    (insertion order), ``tsm_id``/``pid``/``exit_code``/``signal`` Int64, ``name``, ``event``
    categorical over :data:`tsm_notebook.report.EVENT_NAMES` (plus any unknown name found),
    ``signal_name`` (``"SIGKILL"``), ``reason``.

    Reads the database read-only (a running daemon is first asked to write out what it queued;
    none is started). Raises :class:`TsmError` when the database is unreadable.
    """
    if host is not None or hosts is not None:  # other machines: a host column (notebook/host_frames.py)
        from . import host_frames

        return host_frames.events(host_frames.host_list(host, hosts, home), name, since, home)
    h = _home(home)
    flush_history(h)
    return _frame(_report.events(h, name, since), EVENT_FRAME_COLUMNS, index="time")


# ---------------------------------------------------------------------- metrics


METRIC_FRAME_COLUMNS: dict[str, Callable[[list], Any]] = {
    "time": _datetime,
    "name": _str,
    "tsm_id": _nullable_int,
    "pid": _nullable_int,
    "cpu": _float,
    **{c: _nullable_int for c in ("rss", "vms", "threads", "fds", "read_bytes", "write_bytes", "children")},
    "ports": _object,
}


def metrics(name: str | None = None, since: Any = None, *, home: str | os.PathLike[str] | Home | None = None,
            host: str | None = None, hosts: Any = None) -> pd.DataFrame:
    """Metric samples, one row per process tree per tick, indexed by UTC ``time`` (oldest first).

    Columns: ``name``, ``tsm_id``/``pid`` Int64, ``cpu`` float64 (percent of one core over the
    tree, summed; ``NaN`` on a tree's first sample), ``rss``/``vms`` Int64 bytes of the whole
    tree, ``threads``, ``fds``, ``read_bytes``/``write_bytes`` (cumulative), ``children``
    (descendants) Int64, ``ports`` (list of listening TCP ports). ``name`` ``None`` gives every
    process. Reads the database read-only. Raises :class:`TsmError` when it is unreadable.
    """
    if host is not None or hosts is not None:  # other machines: a host column (notebook/host_frames.py)
        from . import host_frames

        return host_frames.metrics(host_frames.host_list(host, hosts, home), name, since, home)
    h = _home(home)
    flush_history(h)
    rows = read_metrics(h.db_file, name=name, since=_report.since_epoch(since))
    return _frame(rows, METRIC_FRAME_COLUMNS, index="time")


# ---------------------------------------------------------------------- uptime report


REPORT_FRAME_COLUMNS: dict[str, Callable[[list], Any]] = {
    "tsm_id": _int,
    "name": _str,
    "availability": _float,
    "online": _timedelta,
    "observed": _timedelta,
    "restarts": _int,
    "crashes": _int,
    "mtbf": _timedelta,
    "cpu_mean": _float,
    "cpu_peak": _float,
    "memory_mean": _float,
    "memory_peak": _nullable_int,
    "samples": _int,
    "first_seen": _datetime,
    "last_event": _category(_report.EVENT_NAMES),
}


def uptime_report(since: Any = None, *, home: str | os.PathLike[str] | Home | None = None,
                  host: str | None = None, hosts: Any = None) -> pd.DataFrame:
    """Per process (by ``tsm_id``): availability and resource use since ``since`` (default: all kept history).

    Columns: ``availability`` float64 percent (time online / time observed since the process's
    first event or ``since``, until now or its deletion), ``online``/``observed``/``mtbf``
    (up time per crash; ``NaT`` without a crash) timedelta64[ns], ``restarts`` and ``crashes``
    (exits the daemon did not ask for) int64, ``cpu_mean``/``cpu_peak`` float64 percent,
    ``memory_mean`` float64 / ``memory_peak`` Int64 bytes, ``samples`` int64, ``first_seen``
    datetime64[ns, UTC], ``last_event`` categorical. The same figures as ``tsm report``
    (:func:`tsm_notebook.report.uptime_report`). Raises :class:`TsmError` when the database is
    unreadable.
    """
    if host is not None or hosts is not None:  # other machines: a host column (notebook/host_frames.py)
        from . import host_frames

        return host_frames.uptime_report(host_frames.host_list(host, hosts, home), since, home)
    h = _home(home)
    flush_history(h)
    return _frame(_report.uptime_report(h, since), REPORT_FRAME_COLUMNS)
