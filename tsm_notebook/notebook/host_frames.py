"""The frames of :mod:`tsm_notebook.notebook.frames` across hosts: ``processes(hosts="all")``, ...

Each host (``local`` and the ``[hosts.NAME]`` of ``config.toml``) is asked at once; the frames are
concatenated with a ``host`` column, a categorical over the hosts asked in order, so
``groupby("host")`` just works. The local host keeps its fast paths (SQLite read directly); a
remote host answers through its daemon's requests. A host that cannot be reached adds no row:
its error is in ``frame.attrs["unreachable"]`` ({host: message}) and a warning says so.
"""

from __future__ import annotations

import warnings
from typing import Any, Callable

import pandas as pd

from ..client.client import Client
from ..client.remote import configured_hosts, fan_out, host_names
from ..core.errors import TsmError
from ..core.paths import Home
from . import frames

__all__ = ["hosts", "host_list", "processes", "events", "metrics", "uptime_report"]


def hosts(*, home: Any = None) -> pd.DataFrame:
    """The hosts of ``config.toml`` (``[hosts.NAME]``), one row each, indexed by name: ``ssh``,
    ``home`` (the remote TSM_HOME, None for its default), ``tsm``, ``ssh_options``, ``timeout``
    (seconds). Empty (with those columns) when none is configured. Reads the file only: no host is
    contacted (``tsm hosts check`` does that)."""
    h = home if isinstance(home, Home) else Home.resolve(home)
    rows = [{"name": n, "ssh": x.ssh, "home": x.home, "tsm": x.tsm, "ssh_options": list(x.ssh_options),
             "timeout": x.timeout} for n, x in sorted(configured_hosts(h).items())]
    return pd.DataFrame(rows, columns=["name", "ssh", "home", "tsm", "ssh_options", "timeout"]).set_index("name")


def host_list(host: str | None = None, hosts: Any = None, home: Any = None) -> list[str] | None:
    """The host names ``host=``/``hosts=`` ask for (``"all"``, a name, a comma list or a list of
    names), or None when neither is given (the local home only, as before)."""
    if host is None and hosts is None:
        return None
    spec = hosts if hosts is not None else host
    if not isinstance(spec, str):
        spec = ",".join(spec)
    home = home if isinstance(home, Home) else Home.resolve(home)
    return host_names(spec, configured_hosts(home))


def _gather(names: list[str], home: Any, local: Callable[[], pd.DataFrame], remote: Callable[[Client], pd.DataFrame],
            empty: Callable[[], pd.DataFrame]) -> pd.DataFrame:
    def work(c: Client) -> pd.DataFrame:
        return local() if getattr(c, "host", None) is None else remote(c)

    results = fan_out(names, work, home=home)
    parts, failed = [], {}
    for name, r in results.items():
        if isinstance(r, TsmError):
            failed[name] = f"{type(r).__name__}: {r.message}"
            continue
        r = r.copy()
        r.insert(0, "host", name)
        parts.append(r)
    if failed:
        warnings.warn("; ".join(f"host {n}: {m}" for n, m in failed.items()), stacklevel=3)
    if not parts:  # no host answered: the columns all the same
        none = empty()
        none.insert(0, "host", [])
        parts = [none]
    frame = pd.concat(parts) if len(parts) > 1 else parts[0]
    frame["host"] = pd.Categorical(frame["host"], categories=names)
    frame.attrs["unreachable"] = failed
    return frame


def processes(names: list[str], home: Any = None) -> pd.DataFrame:
    """One row per process of every host in ``names``, with a ``host`` column first."""
    h = frames._home(home)
    frame = _gather(names, h, lambda: frames.processes(h),
                    lambda c: frames._frame(c.call("ls", all=True), frames.PROCESS_COLUMNS),
                    lambda: frames._frame([], frames.PROCESS_COLUMNS))
    return frame.reset_index(drop=True)


def events(names: list[str], name: Any = None, since: Any = None, home: Any = None) -> pd.DataFrame:
    """Events of every host in ``names`` (indexed by time, in host order), with a ``host`` column."""
    h = frames._home(home)
    return _gather(names, h, lambda: frames.events(name, since, home=h),
                   lambda c: frames._frame(c.call("events", target=name, since=_wire_since(since)),
                                           frames.EVENT_FRAME_COLUMNS, index="time"),
                   lambda: frames._frame([], frames.EVENT_FRAME_COLUMNS, index="time"))


def metrics(names: list[str], name: Any = None, since: Any = None, home: Any = None) -> pd.DataFrame:
    """Metric samples of every host in ``names``, with a ``host`` column."""
    h = frames._home(home)
    return _gather(names, h, lambda: frames.metrics(name, since, home=h),
                   lambda c: frames._frame(c.call("metrics", name=name, since=_wire_since(since)),
                                           frames.METRIC_FRAME_COLUMNS, index="time"),
                   lambda: frames._frame([], frames.METRIC_FRAME_COLUMNS, index="time"))


def uptime_report(names: list[str], since: Any = None, home: Any = None) -> pd.DataFrame:
    """The uptime report of every host in ``names``, with a ``host`` column."""
    h = frames._home(home)
    frame = _gather(names, h, lambda: frames.uptime_report(since, home=h),
                    lambda c: frames._frame(c.call("report", since=_wire_since(since)), frames.REPORT_FRAME_COLUMNS),
                    lambda: frames._frame([], frames.REPORT_FRAME_COLUMNS))
    return frame.reset_index(drop=True)


def _wire_since(since: Any) -> Any:
    """``since`` as JSON can carry it: text as given (the host reads ``"10m"`` by its own
    clock), anything else (a datetime, a timedelta) as epoch seconds."""
    from ..core.report import since_epoch

    return since if since is None or isinstance(since, str) else since_epoch(since)

