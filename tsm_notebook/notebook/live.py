"""Live widgets: a refresh on a background thread that only sets trait values.

A live widget holds its thread only through a weak reference; every thread stops on ``close()``
and at interpreter exit. Output from a thread would land in whatever cell is running, so a tick
never prints.
"""

from __future__ import annotations

import atexit
import threading
import weakref
from typing import Any

import ipywidgets as widgets

from ..core.errors import TsmError, UsageError

#: every widget with a live refresh thread, so interpreter exit can stop them all
_LIVE: "weakref.WeakSet[Any]" = weakref.WeakSet()


def _stop_all() -> None:
    for w in list(_LIVE):
        w._stop_thread(timeout=0.5)


atexit.register(_stop_all)


def _loop(ref: "weakref.ref[Any]", stop: threading.Event, interval: float) -> None:
    # Holds the widget only during a tick, so a dropped widget is never kept alive by its thread.
    while not stop.wait(interval):
        obj = ref()
        if obj is None or obj.comm is None:  # collected or closed
            return
        obj._tick()
        del obj


class Live:
    """Mixin: a daemon thread calling ``self._tick()`` every ``interval`` seconds until stopped."""

    _thread: threading.Thread | None = None
    _stop_event: threading.Event | None = None

    def _start_thread(self, interval: float) -> None:
        if self._thread is not None and self._thread.is_alive():
            return
        if interval <= 0:
            raise UsageError(f"refresh must be a positive number of seconds, not {interval!r}")
        self._stop_event = threading.Event()
        self._thread = threading.Thread(
            target=_loop, args=(weakref.ref(self), self._stop_event, float(interval)),
            name=f"tsm-{type(self).__name__.lower()}-refresh", daemon=True,
        )
        _LIVE.add(self)
        self._thread.start()

    def _stop_thread(self, timeout: float = 2.0) -> None:
        if self._stop_event is not None:
            self._stop_event.set()
        thread = self._thread
        if thread is not None and thread is not threading.current_thread():
            thread.join(timeout)
        _LIVE.discard(self)

    @property
    def live(self) -> bool:
        """True while the background refresh thread runs."""
        return self._thread is not None and self._thread.is_alive()


def close_tree(w: widgets.Widget) -> None:
    """Close a widget, its children and its layout/style models (ipywidgets closes only the one)."""
    for child in getattr(w, "children", ()):
        close_tree(child)
    for part in ("layout", "style"):
        model = getattr(w, part, None)
        if isinstance(model, widgets.Widget):
            model.close()
    w.close()


def error_text(exc: BaseException) -> str:
    if isinstance(exc, TsmError):
        text = f"{type(exc).__name__}: {exc.message}"
        stderr = exc.fields.get("stderr")
        if stderr:
            text += "\n" + "\n".join(str(stderr).rstrip().splitlines()[-5:])
        return text
    return f"{type(exc).__name__}: {exc}"
