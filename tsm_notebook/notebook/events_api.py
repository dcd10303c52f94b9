"""Events in a notebook as they happen: :func:`on` calls a Python function for each new event,
and :class:`Toasts` gives the panel one line for the events worth a glance.

Both read the home's history (SQLite, read-only) from where it ends when they start: no daemon
request, nothing replayed. The daemon writes events in small batches, so a callback runs within
about a second of the event.
"""

from __future__ import annotations

import os
import threading
import traceback
from collections.abc import Callable, Iterable
from typing import Any

from ..core.history import events_after
from ..core.paths import Home
from ..core.errors import UsageError

__all__ = ["Subscription", "Toasts", "on"]

#: events shown as a toast in the panel
TOAST_EVENTS = frozenset({"crash", "errored", "memory-limit", "hook-failed"})


class _Cursor:
    """The newest event seen so far; ``new()`` gives those recorded since."""

    def __init__(self, home: Home) -> None:
        self.home = home
        self.last = events_after(home.db_file, None)[0]["id"]

    def new(self) -> list[dict[str, Any]]:
        rows = events_after(self.home.db_file, self.last)
        if rows:
            self.last = rows[-1]["id"]
        return rows


class Subscription:
    """A background thread calling ``callback(event)`` for each new event that matches.

    ``event`` is a dict with ``id``, ``time`` (epoch seconds), ``tsm_id``, ``name``, ``event``,
    ``pid``, ``exit_code``, ``signal`` and ``reason``. A callback that raises does not stop the
    subscription: the last traceback is kept in :attr:`error`. Call :meth:`stop` to end it (it is
    also ended when the interpreter exits).
    """

    def __init__(self, events: frozenset[str] | None, callback: Callable[[dict[str, Any]], Any], home: Home,
                 *, name: str | None = None, interval: float = 0.5) -> None:
        self.events = events
        self.callback = callback
        self.name = name
        self.interval = interval
        self.calls = 0
        self.error: str | None = None
        self._cursor = _Cursor(home)
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="tsm-on", daemon=True)
        self._thread.start()

    @property
    def running(self) -> bool:
        """True until :meth:`stop` has ended the thread."""
        return self._thread.is_alive()

    def _run(self) -> None:
        while not self._stop.wait(self.interval):
            try:
                rows = self._cursor.new()
            except Exception:  # an unreadable history for a moment: try again next time
                continue
            for row in rows:
                if self._stop.is_set():
                    return
                if (self.events is None or row["event"] in self.events) and self.name in (None, row["name"]):
                    try:
                        self.callback(row)
                        self.calls += 1
                    except Exception:
                        self.error = traceback.format_exc()

    def stop(self, timeout: float = 5.0) -> None:
        """End the thread (waits for a callback that is running, up to ``timeout`` seconds)."""
        self._stop.set()
        if self._thread is not threading.current_thread():
            self._thread.join(timeout)

    def __repr__(self) -> str:
        what = "all events" if self.events is None else ", ".join(sorted(self.events))
        state = "running" if self.running else "stopped"
        return f"<tsm subscription to {what}{f' of {self.name}' if self.name else ''}: {state}, {self.calls} calls>"


def on(event: str | Iterable[str], callback: Callable[[dict[str, Any]], Any], *, name: str | None = None,
       home: str | os.PathLike[str] | Home | None = None, interval: float = 0.5) -> Subscription:
    """Call ``callback(event_dict)`` from a background thread for every new ``event`` (``"crash"``,
    a list of names, or ``"all"``), of every process or of ``name`` only.

    Only events recorded after this call count. Returns the :class:`Subscription`; ``.stop()``
    ends it. The callback runs on its own thread: in a notebook, set widget values or append to a
    list from it; ``print`` lands in whichever cell happens to be running.
    """
    if not callable(callback):
        raise UsageError("on(event, callback): the callback must be callable")
    names = [event] if isinstance(event, str) else list(event)
    if not names or not all(isinstance(n, str) and n for n in names):
        raise UsageError("on(event, callback): give an event name such as 'crash', a list of them, or 'all'")
    wanted = None if "all" in names else frozenset(names)
    h = home if isinstance(home, Home) else Home.resolve(home)
    return Subscription(wanted, callback, h, name=name, interval=interval)


class Toasts:
    """For the panel: the newest crash, errored, memory-limit or failed-hook event since the last
    look, as one line of text (None when there is nothing new). Never raises."""

    def __init__(self, home: Home) -> None:
        try:
            self._cursor: _Cursor | None = _Cursor(home)
        except Exception:
            self._cursor = None
        self.home = home

    def poll(self) -> str | None:
        try:
            if self._cursor is None:
                self._cursor = _Cursor(self.home)
                return None
            rows = [r for r in self._cursor.new() if r["event"] in TOAST_EVENTS]
        except Exception:
            return None
        if not rows:
            return None
        r = rows[-1]
        more = f" (+{len(rows) - 1} more)" if len(rows) > 1 else ""
        what = f"exit code {r['exit_code']}" if r["exit_code"] is not None else r["reason"] or ""
        return f"{r['name']}: {r['event']}{': ' + what if what else ''}{more}"
