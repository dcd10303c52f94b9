"""``LogTail``: the last lines of a process's logs in a widget, following new ones live."""

from __future__ import annotations

import html as _html
import os
import threading
from pathlib import Path
from typing import Any, Callable

import ipywidgets as widgets

from . import html as tsm_html
from ..client.client import Client
from ..core import logread, render
from ..core.errors import TsmError, UsageError
from ..core.paths import Home
from .live import Live, close_tree, error_text, tick_mode

__all__ = ["LogTail"]

_LINE_CHOICES = (10, 20, 50, 100, 200, 500)


def _stat(path: Path) -> tuple[int, int, int] | None:
    try:
        st = path.stat()
    except OSError:
        return None
    return (st.st_ino, st.st_size, st.st_mtime_ns)


# ---------------------------------------------------------------------- log tail


class LogTail(Live, widgets.VBox):
    """A live view of the last lines of one process's logs (``%tsm logs T -f`` in a notebook).

    ``target`` is a name or tsm_id (``all`` or several matches follow each process, lines labelled);
    it is resolved once through the daemon, which raises :class:`~tsm_notebook.errors.ProcessNotFound`
    for an unknown one. ``lines`` per stream, ``stream`` ``"out"``, ``"err"`` or ``"both"`` (both can
    be changed in the widget). Files are read directly every ``refresh`` seconds, only when they
    changed, driven by the front end or a background thread (``tick``, see :mod:`.live`); ``refresh=None`` means no thread (call :meth:`refresh`).
    """

    def __init__(self, target: str | int | None, home: str | os.PathLike[str] | Home | None = None, *,
                 lines: int = 50, stream: str = "both", refresh: float | None = 1.0, tick: str | None = None):
        self.tick = tick_mode(tick)
        if stream not in ("out", "err", "both"):
            raise UsageError(f"invalid stream {stream!r}: use 'out', 'err' or 'both'")
        if not isinstance(lines, int) or lines < 1:
            raise UsageError(f"lines must be a positive number, not {lines!r}")
        self.home = home if isinstance(home, Home) else Home.resolve(home)
        self._lock = threading.RLock()
        self._sources: list[tuple[str, Path]] = []
        self._read: Callable[[str, int], list[dict]] | None = None  # a remote process's lines (see _set_remote)
        self._stamp: Any = None
        #: the lines shown, as plain text without colour codes (``name | `` prefixed when several
        #: processes are shown)
        self.text = ""
        self.title = widgets.HTML(layout=widgets.Layout(flex="1 1 auto"))
        self.lines_picker = widgets.Dropdown(
            options=sorted(set(_LINE_CHOICES) | {lines}), value=lines, description="lines",
            style={"description_width": "32px"}, layout=widgets.Layout(width="112px"))
        self.stream_picker = widgets.ToggleButtons(
            options=["out", "err", "both"], value=stream, style={"button_width": "52px"},
            tooltips=["stdout only", "stderr only", "stdout and stderr"])
        self.output = widgets.HTML(layout=widgets.Layout(width="100%"))
        self.output.add_class("tsm-log-output")
        bar = widgets.HBox([self.title, self.lines_picker, self.stream_picker],
                           layout=widgets.Layout(align_items="center", width="100%"))
        super().__init__([bar, self.output], layout=widgets.Layout(flex="1 1 auto", min_width="0"))
        self.add_class("tsm-logtail")
        self.lines_picker.observe(self._option_changed, "value")
        self.stream_picker.observe(self._option_changed, "value")
        if target is not None:
            self.follow(target)
        else:
            self.refresh()
        if refresh:
            self._start_thread(refresh)

    @property
    def lines(self) -> int:
        """Lines shown per stream (and per process)."""
        return int(self.lines_picker.value)

    @property
    def stream(self) -> str:
        """``"out"``, ``"err"`` or ``"both"``."""
        return str(self.stream_picker.value)

    def follow(self, target: str | int) -> None:
        """Show ``target``'s logs from now on (resolved through the daemon; raises ProcessNotFound)."""
        with Client(self.home) as client:
            rows = client.call("describe", target=target)
        self._set_sources([(r["name"], Path(r["dir"])) for r in rows])

    def _set_sources(self, sources: list[tuple[str, Path]]) -> None:
        # The panel points the tail at a process directory it already knows: no daemon call.
        with self._lock:
            if sources != self._sources or self._read is not None:
                self._sources = list(sources)
                self._read, self._stamp = None, None
            self.refresh()

    def _set_remote(self, name: str, read: Callable[[str, int], list[dict]]) -> None:
        """Show the logs of ``name``, a process of another host: ``read(stream, lines)`` gives the
        lines of its daemon's ``logs`` request ({stream, time, raw}), asked at every refresh."""
        with self._lock:
            if self._read is None or self._sources != [(name, None)]:
                self._sources, self._stamp = [(name, None)], None  # type: ignore[list-item]
            self._read = read
            self.refresh()

    def _remote_lines(self, stream: str, count: int) -> tuple[Any, list[logread.LogLine] | str]:
        """(stamp, lines) of the remote process, or (None, why) when its host does not answer."""
        try:
            got = self._read(stream, count)  # type: ignore[misc]
        except TsmError as exc:
            return None, error_text(exc)
        lines = [logread.LogLine(d["stream"], d["raw"].encode("latin-1"), d["time"]) for d in got]
        return (stream, count, len(got), got[-1]["raw"] if got else None, got[0]["raw"] if got else None), lines

    def _option_changed(self, change: dict) -> None:
        self.refresh()

    def _tick(self) -> None:
        try:
            self.refresh()
        except Exception as exc:  # a thread must never die with a traceback: show it instead
            self.title.value = f'<span style="color:#cf222e">{_html.escape(error_text(exc))}</span>'

    def refresh(self) -> None:
        """Re-read the logs if they changed since the last refresh (a few ``stat`` calls if not)."""
        with self._lock:
            sources, stream, count = list(self._sources), self.stream, self.lines
            names = ("out", "err") if stream == "both" else (stream,)
            remote: list[logread.LogLine] | str | None = None
            if self._read is not None:
                stamp, remote = self._remote_lines(stream, count)
            else:
                stamp = (stream, count, tuple((str(d), tuple(_stat(d / f"current.{s}") for s in names)) for _, d in sources))
            if stamp == self._stamp and stamp is not None:
                return
            several = len(sources) > 1
            shown: list[tuple[float | None, str | None, str, str]] = []
            for name, directory in sources:
                got = remote if self._read is not None else logread.tail(directory, stream=stream, lines=count)
                for line in got if isinstance(got, list) else ():
                    shown.append((line.time, name if several else None, line.stream, line.text))
            if several and shown and all(t is not None for t, *_ in shown):
                shown.sort(key=lambda item: item[0])
            if not sources:
                title, empty = '<span class="tsm-muted">no process selected</span>', "no process selected"
            else:
                label = ", ".join(_html.escape(n) for n, _ in sources[:3]) + (" …" if len(sources) > 3 else "")
                title, empty = f"<b>{label}</b> <span class='tsm-muted'>logs</span>", "no log lines yet"
                if isinstance(remote, str):
                    empty = remote  # its host did not answer: say so where the lines would be
            self.title.value = title
            self.output.value = tsm_html.log_lines([(w, s, text, t) for t, w, s, text in shown], empty=empty,
                                                   style=self._own_style)
            self.text = "\n".join(render.strip_ansi(f"{w} | {t}" if w else t) for _, w, _s, t in shown)
            self._stamp = stamp

    #: whether the log HTML carries the stylesheet (a panel sends it once for all its parts)
    _own_style = True

    def close(self) -> None:
        """Stop the refresh thread and close the widget (and its parts)."""
        if not hasattr(self, "output"):  # ipywidgets closes on __del__, even a half-built widget
            return super().close()
        self._stop_thread()
        for w in (self.title, self.lines_picker, self.stream_picker, self.output):
            close_tree(w)
        for child in self.children:
            close_tree(child)
        super().close()


# ---------------------------------------------------------------------- charts


