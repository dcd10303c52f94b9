"""Live widgets: a refresh driven by the front end, with a background thread as the fallback.

Two clocks drive a live widget, chosen automatically:

* **the front end's**: a hidden ``Play`` widget in the view ticks in the browser; each tick is a
  comm message that the kernel handles on its main thread, where every front end (JupyterLab,
  Notebook 7, Voila, Colab) renders the updates it causes, whatever the ipykernel version;
* **a thread's**, which refreshes only while the front end's clock is silent (no view shows the
  widget yet, or the kernel is busy running a cell and its messages wait): setting traits from a
  thread is what ipykernel 6 renders, and nothing is lost where it is not.

``TSM_LIVE_TICK=thread`` or ``frontend`` (or the widget's ``tick`` argument) forces one clock. A
live widget holds its thread only through a weak reference; every thread stops on ``close()``
and at interpreter exit. Output from a thread would land in whatever cell is running, so a tick
never prints.
"""

from __future__ import annotations

import atexit
import os
import threading
import time
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


#: how many intervals without a front-end tick before the thread takes over again
FRONT_END_GRACE = 2.5
#: while the front end is silent, the thread re-arms its clock every this many ticks
REARM_EVERY = 4
TICKS = ("auto", "frontend", "thread")


def _loop(ref: "weakref.ref[Any]", stop: threading.Event, interval: float) -> None:
    # Holds the widget only during a tick, so a dropped widget is never kept alive by its thread.
    silent = 0
    while not stop.wait(interval):
        obj = ref()
        if obj is None or obj.comm is None:  # collected or closed
            return
        if time.monotonic() - obj._front_tick > interval * FRONT_END_GRACE:
            obj._tick()  # the front end's clock is silent: keep the view fresh from here
            silent += 1
            if silent % REARM_EVERY == 1:
                obj._arm()  # a view that appeared since (a reload, Voila's page) starts its clock
        else:
            silent = 0
        del obj


def _arm(play: widgets.Play) -> None:
    """Start the front end's clock: a view animates a Play only on a change of ``playing`` to true."""
    try:
        play.playing = False
        play.playing = True
    except Exception:  # closed meanwhile
        pass


def _arm_after_cell(play: widgets.Play) -> None:
    """Arm ``play`` once the running cell has finished, when the front end shows its output."""
    try:
        from IPython import get_ipython
    except ImportError:  # pragma: no cover - ipywidgets needs IPython
        return
    ip = get_ipython()
    if ip is None:
        return

    def arm(*_: Any) -> None:
        ip.events.unregister("post_run_cell", arm)
        _arm(play)

    ip.events.register("post_run_cell", arm)


def tick_mode(tick: str | None = None) -> str:
    """``tick``, else ``$TSM_LIVE_TICK``, else ``"auto"``; raises UsageError for another word."""
    mode = (tick or os.environ.get("TSM_LIVE_TICK") or "auto").strip().lower()
    if mode not in TICKS:
        raise UsageError(f"invalid tick {mode!r}: use {', '.join(TICKS)}")
    return mode


class Live:
    """Mixin for a ``Box`` widget: ``self._tick()`` every ``interval`` seconds until stopped, from
    the front end's clock (a hidden ``Play`` child) and, while that is silent, a daemon thread."""

    _thread: threading.Thread | None = None
    _stop_event: threading.Event | None = None
    _play: widgets.Play | None = None
    _front_tick = float("-inf")  # monotonic time of the last front-end tick
    #: ``auto``, ``frontend`` or ``thread`` (see the module's docstring); set before starting
    tick = "auto"

    def _start_thread(self, interval: float) -> None:
        if self._thread is not None and self._thread.is_alive():
            return
        if interval <= 0:
            raise UsageError(f"refresh must be a positive number of seconds, not {interval!r}")
        mode = tick_mode(self.tick)
        if mode != "thread" and self._play is None:
            self._play = widgets.Play(interval=max(50, int(interval * 1000)), min=0, max=1_000_000, step=1,
                                      repeat=True, playing=False, show_repeat=False,
                                      layout=widgets.Layout(display="none"))
            self._play.add_class("tsm-tick")
            self._play.observe(self._front_end_tick, "value")
            self.children = (*self.children, self._play)  # type: ignore[attr-defined]
            _arm_after_cell(self._play)
        elif self._play is not None:
            _arm(self._play)
        if mode == "frontend":
            _LIVE.add(self)
            return
        self._stop_event = threading.Event()
        self._thread = threading.Thread(
            target=_loop, args=(weakref.ref(self), self._stop_event, float(interval)),
            name=f"tsm-{type(self).__name__.lower()}-refresh", daemon=True,
        )
        _LIVE.add(self)
        self._thread.start()

    def _arm(self) -> None:
        if self._play is not None:
            _arm(self._play)

    @property
    def clock(self) -> str | None:
        """Which clock drives the refresh now: ``"front end"``, ``"thread"``, or None (paused)."""
        interval = float(self._play.interval) / 1000 if self._play is not None else 1.0
        if time.monotonic() - self._front_tick <= interval * FRONT_END_GRACE:
            return "front end"
        if self._thread is not None and self._thread.is_alive():
            return "thread"
        return None

    def _front_end_tick(self, change: dict) -> None:
        # on the kernel's main thread, in the comm message handler
        if getattr(self, "comm", None) is None:
            return
        self._front_tick = time.monotonic()
        self._tick()

    def _stop_thread(self, timeout: float = 2.0) -> None:
        if self._play is not None:
            try:
                self._play.playing = False
            except Exception:  # already closed with the widget tree
                pass
        if self._stop_event is not None:
            self._stop_event.set()
        thread = self._thread
        if thread is not None and thread is not threading.current_thread():
            thread.join(timeout)
        _LIVE.discard(self)

    @property
    def live(self) -> bool:
        """True while the widget refreshes itself (its thread runs, or its front-end clock plays)."""
        if self._thread is not None and self._thread.is_alive():
            return True
        return tick_mode(self.tick) == "frontend" and self._play is not None and self in _LIVE


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
