"""The live notebook panel: a status table, actions, a log tail and resource charts, built from
built-in ipywidgets only (no JavaScript of our own).

::

    Panel ── header (counts, refresh state) ── message (result or error of the last action)
          ├─ status table (HTML)                one `ls` per refresh, all processes
          ├─ process selector + restart / stop / start / delete (delete asks to confirm)
          ├─ detail line of the selected process
          ├─ LogTail (stream, lines) │ CPU and memory charts (SVG, from the metric history)
          └─ start form (command, name, port)

Threads. A panel refreshes itself from one background thread that only sets widget trait values
(an ``HTML.value``, a ``Dropdown.options``): output from a thread would land in whatever cell is
running. Actions (restart, stop, ...) run on a short-lived worker thread too, so a click never
holds the kernel while a process stops; their outcome, error included, is shown in the panel's
message line, never as a traceback. Threads stop on :meth:`Panel.close` and at interpreter exit;
they hold the panel only through a weak reference.
"""

from __future__ import annotations

import html as _html
import os
import threading
import time
from pathlib import Path
from typing import Any, Callable

import ipywidgets as widgets

from ..client import commands
from ..core import render, states
from ..core import history
from . import html as tsm_html
from .live import Live, close_tree, error_text, tick_mode
from .events_api import Toasts
from .logtail import LogTail
from ..client.client import Client
from ..core.errors import DaemonNotRunning, TsmError, UsageError
from ..core.paths import Home

__all__ = ["Panel", "metrics_html"]

#: seconds of metric history the charts show
WINDOW = 300.0
_LINE_CHOICES = (10, 20, 50, 100, 200, 500)


def metrics_html(home: Home, name: str | None, *, window: float = WINDOW, now: float | None = None,
                 samples: list[dict] | TsmError | None = None) -> str:
    """CPU and memory charts of process ``name`` over the last ``window`` seconds of history.

    Reads the metric history (one indexed SQLite query, read-only) unless ``samples`` are given
    (a remote host's, from its daemon); an unreadable database is shown as a message, not raised.
    """
    if name is None:
        return ""
    now = time.time() if now is None else now
    try:
        if samples is None:
            samples = history.read_metrics(home.db_file, name=name, since=now - window)
        elif isinstance(samples, TsmError):
            raise samples
    except TsmError as exc:
        return f'<div class="tsm-muted">{_html.escape(exc.message)}</div>'
    times = [s["time"] for s in samples]
    # the axis spans the history there is (at least a minute), so a new process is not a dot at the edge
    start = max(now - window, min(times[0], now - 60.0)) if times else now - window
    # a break in the line where samples stop for much longer than the usual interval (stopped, restarted)
    steps = sorted(b - a for a, b in zip(times, times[1:]) if b > a)
    gap = max(5.0, 3 * steps[len(steps) // 2]) if steps else 5.0
    cpu = [(s["time"], s["cpu"]) for s in samples]
    mem = [(s["time"], s["rss"]) for s in samples]
    return (tsm_html.chart("CPU", cpu, fmt=render.percent, start=start, end=now, floor=10.0,
                           color="#0969da", gap=gap)
            + tsm_html.chart("Memory", mem, fmt=render.size, start=start, end=now, floor=16 * 1024 * 1024,
                             color="#8250df", gap=gap))


# ---------------------------------------------------------------------- panel


_MESSAGE_COLORS = {"info": "#0969da", "ok": "#1a7f37", "error": "#cf222e"}
_ACTIONS = {  # daemon command: (while running, when done)
    "restart": ("restarting", "restarted"),
    "stop": ("stopping", "stopped"),
    "start_existing": ("starting", "started"),
    "delete": ("deleting", "deleted"),
}


def _button(description: str, icon: str, tooltip: str, css: str, style: str = "", width: str = "86px") -> widgets.Button:
    b = widgets.Button(description=description, icon=icon, tooltip=tooltip, button_style=style,
                       layout=widgets.Layout(width=width))
    b.add_class(css)
    return b


class Panel(Live, widgets.VBox):
    """A live view of every process of a TSM home, with actions, a log tail and resource charts.

    ``home`` is the TSM home (default ``$TSM_HOME`` or ``~/.tsm``; its daemon is started if none
    runs, as by any ``tsm`` command). The panel refreshes every ``refresh`` seconds when
    ``autostart`` is true, driven by the front end where it shows the panel and by a background
    thread while it does not (``tick``: ``"auto"``, ``"frontend"`` or ``"thread"``, see
    :mod:`tsm_notebook.notebook.live`); with ``refresh=None`` or ``autostart=False`` it
    refreshes only when :meth:`refresh` is called (or :meth:`start` starts the thread). One
    refresh costs one ``ls`` request to the daemon, a few ``stat`` calls on the selected process's
    logs and one indexed history query. Call :meth:`close` to stop the thread and close the widgets.
    """

    def __init__(self, home: str | os.PathLike[str] | Home | None = None, *, refresh: float | None = 1.0,
                 autostart: bool = True, tick: str | None = None, hosts: Any = None):
        self.tick = tick_mode(tick)
        self.home = home if isinstance(home, Home) else Home.resolve(home)
        self.interval = refresh
        # Two connections: a slow action (a stop waits up to kill_timeout) must not stall refreshes.
        if hosts is None:
            self._client = Client(self.home, timeout=10.0)
            self._action_client = Client(self.home, timeout=120.0)
        else:  # several hosts (notebook/host_panel.py): rows and actions carry their host
            from .host_panel import HostsClient

            self._client = HostsClient(hosts, self.home, timeout=10.0)
            self._action_client = HostsClient(hosts, self.home, timeout=120.0)
            self._action_client.forwards = self._client.forwards
        self._lock = threading.RLock()  # guards the widgets' state; never held across a request
        self._client_lock = threading.Lock()  # one request at a time on the refresh connection
        self._action_lock = threading.Lock()
        self._syncing = False
        self._closed = False
        self._names: tuple[str, ...] = ()
        self._selected: str | None = None
        self._confirm: tuple[int, str] | None = None
        #: the listing rows of the last refresh (raw values, as the daemon's ``ls`` returns them)
        self.rows: list[dict[str, Any]] = []
        #: seconds the last refresh took
        self.refresh_seconds: float | None = None
        self._toasts = Toasts(self.home)  # a crash, errored, memory-limit or failed hook: a line in .message

        self.style_html = widgets.HTML(tsm_html.STYLE, layout=widgets.Layout(height="0px", margin="0"))
        self.header = widgets.HTML(layout=widgets.Layout(width="100%"))
        self.header.add_class("tsm-header")
        self.message = widgets.HTML()
        self.message.add_class("tsm-message")
        self.table = widgets.HTML(layout=widgets.Layout(width="100%", max_height="22em", overflow="auto"))
        self.table.add_class("tsm-status-table")

        self.selector = widgets.Dropdown(options=[], description="process", style={"description_width": "52px"},
                                         layout=widgets.Layout(width="240px"))
        self.selector.add_class("tsm-selector")
        self.restart_button = _button("restart", "refresh", "stop if running, then start", "tsm-restart")
        self.stop_button = _button("stop", "stop", "stop the process (it stays listed)", "tsm-stop")
        self.start_button = _button("start", "play", "start the stopped process again", "tsm-start")
        self.delete_button = _button("delete", "trash", "stop the process and forget it (asks first)", "tsm-delete")
        self.confirm_label = widgets.HTML()
        self.confirm_button = _button("yes, delete", "trash", "delete it now", "tsm-confirm-delete", "danger", "110px")
        self.cancel_button = _button("cancel", "", "keep it", "tsm-cancel-delete", "", "72px")
        self.confirm_box = widgets.HBox([self.confirm_label, self.confirm_button, self.cancel_button],
                                        layout=widgets.Layout(display="none", align_items="center"))
        self.detail = widgets.HTML()
        self.detail.add_class("tsm-detail")

        self.logs = LogTail(None, self.home, refresh=None)
        self.logs._own_style = False
        self.charts = widgets.HTML(layout=widgets.Layout(width="260px"))
        self.charts.add_class("tsm-charts")

        self.form_command = widgets.Text(placeholder="command, e.g. python -m http.server 8000",
                                         layout=widgets.Layout(flex="1 1 auto", width="auto"))
        self.form_name = widgets.Text(placeholder="name", layout=widgets.Layout(width="130px"))
        self.form_port = widgets.Text(placeholder="port", layout=widgets.Layout(width="80px"))
        self.form_button = _button("start", "play", "start a new process", "tsm-form-start", "success")
        for w, css in ((self.form_command, "tsm-form-command"), (self.form_name, "tsm-form-name"),
                       (self.form_port, "tsm-form-port")):
            w.add_class(css)

        extra = []
        if hosts is not None:
            self.forward_button = _button("forward", "link", "forward this remote port here (ssh -L)", "tsm-forward")
            self.forward_button.on_click(lambda _: self._forward())
            extra = [self.forward_button]
        actions = widgets.HBox(
            [self.selector, self.restart_button, self.stop_button, self.start_button, self.delete_button, *extra,
             self.confirm_box],
            layout=widgets.Layout(align_items="center", flex_flow="row wrap"))
        # a stack's actions, shown once a stack is listed
        self.stack_selector = widgets.Dropdown(options=[], description="stack", style={"description_width": "52px"},
                                               layout=widgets.Layout(width="240px"))
        self.stack_up_button = _button("up", "play", "start its stopped apps, dependencies first", "tsm-stack-up")
        self.stack_down_button = _button("down", "stop", "stop it, dependants first", "tsm-stack-down")
        self.stack_restart_button = _button("restart", "refresh", "restart it, dependencies first", "tsm-stack-restart")
        self.stack_actions = widgets.HBox(
            [self.stack_selector, self.stack_up_button, self.stack_down_button, self.stack_restart_button],
            layout=widgets.Layout(display="none", align_items="center"))
        form = widgets.HBox([widgets.HTML("<b>new</b>", layout=widgets.Layout(width="44px")), self.form_command,
                             self.form_name, self.form_port, self.form_button],
                            layout=widgets.Layout(align_items="center", width="100%"))
        resources = widgets.VBox([widgets.HTML("<b>resources</b>"), self.charts],
                                 layout=widgets.Layout(margin="0 0 0 12px", flex="0 0 auto"))
        body = widgets.HBox([self.logs, resources],
                            layout=widgets.Layout(width="100%", align_items="flex-start"))
        super().__init__(
            [self.style_html, self.header, self.table,
             actions, self.stack_actions, self.message, self.detail, body, form],
            layout=widgets.Layout(width="100%", max_width="1100px", padding="4px 6px",
                                  border="1px solid var(--jp-border-color2, #d0d7de)"))
        self.add_class("tsm-panel")

        self.selector.observe(self._on_select, "value")
        self.restart_button.on_click(lambda _: self._act("restart"))
        self.stop_button.on_click(lambda _: self._act("stop"))
        self.start_button.on_click(lambda _: self._act("start_existing"))
        self.delete_button.on_click(self._on_delete)
        self.confirm_button.on_click(self._on_confirm)
        self.cancel_button.on_click(lambda _: self._hide_confirm())
        self.form_button.on_click(self._on_form_start)
        for verb, button in (("up", self.stack_up_button), ("down", self.stack_down_button),
                             ("restart", self.stack_restart_button)):
            button.on_click(lambda _, verb=verb: self._stack_act(verb))

        self._auto = bool(refresh and autostart)  # the header says "live" from the first refresh on
        self.refresh()
        # Only this first refresh may start the daemon: afterwards a `tsm kill` must stay killed,
        # not be undone by an open panel.
        self._client.autostart = False
        if refresh and autostart:
            self._start_thread(refresh)

    # ------------------------------------------------------------------ refresh

    @property
    def selected(self) -> str | None:
        """The name of the selected process (None when there is none)."""
        return self._selected

    @selected.setter
    def selected(self, name: str | None) -> None:
        if name is not None and name not in self._names:
            raise UsageError(f"no process named {name!r} in the panel")
        self.selector.value = name

    @property
    def busy(self) -> bool:
        """True while an action (restart, stop, start, delete) runs on its worker thread."""
        return self._action_lock.locked()

    def start(self) -> None:
        """Start the background refresh (every ``refresh`` seconds, default 1) if it is not running."""
        self._auto = True
        self._start_thread(self.interval or 1.0)

    def _tick(self) -> None:
        try:
            self.refresh()
        except Exception as exc:  # never let the thread die with a traceback; say it in the panel
            self.header.value = f'<span style="color:#cf222e">refresh failed: {_html.escape(error_text(exc))}</span>'

    def refresh(self) -> None:
        """Refresh everything once, synchronously: one ``ls`` request, then widget values only.

        A daemon that is not running (or does not answer) is reported in the header; nothing raises.
        """
        if self._closed:  # a closed panel must not reconnect (its connection is closed)
            return
        t0 = time.perf_counter()
        problem = None
        try:
            with self._client_lock:
                rows = self._client.call("ls", all=True)
        except DaemonNotRunning:
            rows, problem = [], "the daemon is not running (it starts with the next process)"
        except TsmError as exc:
            rows, problem = self.rows, error_text(exc)
        toast = self._toasts.poll()
        with self._lock:
            if self._closed:
                return
            self.rows = rows
            self._render(problem)
            if toast:
                self._say(toast, "error")
        self.refresh_seconds = time.perf_counter() - t0

    def _render(self, problem: str | None = None) -> None:
        rows = self.rows
        names = tuple(r["name"] for r in rows)
        want = self._selected if self._selected in names else (names[0] if names else None)
        if names != self._names or self.selector.value != want:
            self._syncing = True
            try:
                with self.selector.hold_sync():
                    self.selector.options = names
                    self.selector.value = want
                self._names = names
            finally:
                self._syncing = False
        if want != self._selected:
            self._hide_confirm()
        self._selected = want
        row = next((r for r in rows if r["name"] == want), None)

        live = self._auto and not self._closed
        clock = self.clock
        state = f"live · every {self.interval or 1.0:g}s" if live else "paused · call .refresh()"
        if live and clock:
            state += f" · {clock} clock"
        head = f"<b>tsm</b> <span class='tsm-muted'>{_html.escape(str(self.home.root))}</span> · {tsm_html.summary(rows)}"
        if problem:
            head += f' · <span style="color:#cf222e">{_html.escape(problem)}</span>'
        self.header.value = (f'<div style="display:flex;justify-content:space-between;gap:12px">'
                             f'<span>{head}</span><span class="tsm-muted">{state}</span></div>')
        self.table.value = tsm_html.status_table(rows, want, style=False)
        stacks = tuple(sorted({r["stack"] for r in rows if r.get("stack")}))
        if tuple(self.stack_selector.options) != stacks:
            keep = self.stack_selector.value
            self.stack_selector.options = stacks
            self.stack_selector.value = keep if keep in stacks else (stacks[0] if stacks else None)
        self.stack_actions.layout.display = "" if stacks else "none"
        self.detail.value = self._detail_html(row)
        self._update_buttons(row)
        remote = row is not None and row.get("host") not in (None, "local")  # read through its host's daemon
        if row is None:
            self.logs._set_sources([])
        elif remote:
            self.logs._set_remote(row["name"], self._client.log_reader(row["name"]))
        else:
            directory = Path(row["out_log"]).parent if row.get("out_log") else self.home.processes / row["name"]
            self.logs._set_sources([(row["name"], directory)])
        self.charts.value = (metrics_html(self.home, want, samples=self._client.metrics(want, WINDOW) if remote else None)
                             if want else '<span class="tsm-muted">no process selected</span>')

    @staticmethod
    def _detail_html(row: dict[str, Any] | None) -> str:
        if row is None:
            return '<span class="tsm-muted">no process selected: start one below</span>'
        command = row.get("command") or " ".join(row.get("argv") or [])
        exit_text = render.exit_text(row)  # the text renderer's wording: "code 1", "SIGKILL", "-"
        parts = [f"<b>{_html.escape(row['name'])}</b>", tsm_html.status_badge(row.get("status")),
                 f'pid <b class="tsm-pid">{row.get("pid") or "-"}</b>',
                 f"port {tsm_html.port_link(row.get('port'))}",
                 f"up {render.duration(row.get('uptime'))}",
                 f"{row.get('restarts', 0)} restart{'' if row.get('restarts') == 1 else 's'}"]
        if exit_text != "-":
            parts.append(f"last exit {_html.escape(exit_text)}")
        cmd = _html.escape(command)
        return ('<div class="tsm-detail-line">' + "".join(f"<span>{p}</span>" for p in parts)
                + f'<span class="cmd" title="{cmd}">{cmd}</span></div>')

    def _update_buttons(self, row: dict[str, Any] | None) -> None:
        busy = self.busy
        status = row.get("status") if row else None
        self.restart_button.disabled = busy or row is None
        self.stop_button.disabled = busy or status not in states.RUNNING
        self.start_button.disabled = busy or status not in (states.STOPPED, states.ERRORED)
        self.delete_button.disabled = busy or row is None
        self.confirm_button.disabled = busy
        self.form_button.disabled = busy
        for button in (self.stack_up_button, self.stack_down_button, self.stack_restart_button):
            button.disabled = busy

    # ------------------------------------------------------------------ actions

    def _say(self, text: str, kind: str = "info") -> None:
        if not text:
            self.message.value = ""
            return
        self.message.value = (f'<pre class="tsm-message-{kind}" style="margin:2px 0;white-space:pre-wrap;'
                              f'font-size:12px;color:{_MESSAGE_COLORS[kind]}">{_html.escape(text)}</pre>')

    def _on_select(self, change: dict) -> None:
        if self._syncing:
            return
        with self._lock:
            self._selected = change["new"]
            self._hide_confirm()
            if not self._closed:
                self._render()

    def _selected_row(self) -> dict[str, Any] | None:
        return next((r for r in self.rows if r["name"] == self._selected), None)

    def _act(self, cmd: str) -> None:
        row = self._selected_row()
        if row is None:
            self._say("select a process first", "error")
            return
        ing, done = _ACTIONS[cmd]
        name, tsm_id = row["name"], row["tsm_id"]

        def work() -> str:
            # by tsm_id: ids are never reused, and a process may be named "all"
            result = self._action_client.call(cmd, target=tsm_id)
            pid = result[0].get("pid") if cmd != "delete" and result else None
            return f"{done} {name}" + (f" (pid {pid})" if pid else "")

        self._submit(f"{ing} {name} …", work)

    def _forward(self) -> None:
        from .host_panel import forward

        row = self._selected_row()
        if row is None:
            self._say("select a process first", "error")
            return
        self._submit(f"forwarding {row['name']} …", lambda: forward(self._client, row))

    def _on_delete(self, _: Any) -> None:
        row = self._selected_row()
        if row is None:
            self._say("select a process first", "error")
            return
        self._confirm = (row["tsm_id"], row["name"])
        self.confirm_label.value = f"delete <b>{_html.escape(row['name'])}</b> and its logs?"
        self.confirm_box.layout.display = "flex"

    def _on_confirm(self, _: Any) -> None:
        if self._confirm is None:
            return
        tsm_id, name = self._confirm
        self._hide_confirm()

        def work() -> str:
            self._action_client.call("delete", target=tsm_id)
            return f"deleted {name}"

        self._submit(f"deleting {name} …", work)

    def _hide_confirm(self) -> None:
        self._confirm = None
        self.confirm_box.layout.display = "none"

    def _on_form_start(self, _: Any) -> None:
        command = self.form_command.value.strip()
        if not command:
            self._say("type a command to start", "error")
            return
        argv = ["start", command]
        if self.form_name.value.strip():
            argv += ["--name", self.form_name.value.strip()]
        if self.form_port.value.strip():
            argv += ["--port", self.form_port.value.strip()]

        def work() -> str:
            spec = commands.spec_from_args(commands.parse(argv))
            row = commands.start(self._action_client, spec)
            self._selected = row["name"]  # show the new process once the refresh lists it
            return f"started {row['name']} (pid {row.get('pid') or '-'})"

        self._submit(f"starting {command} …", work)

    def _stack_act(self, verb: str) -> None:
        """up (stopped apps again, dependencies first, gated on readiness), down or restart a stack."""
        name = self.stack_selector.value
        if not name:
            self._say("no stack is listed", "error")
            return

        def work() -> str:
            from ..client import stack

            if verb == "up":
                stack.up(stack.from_records(self._action_client, name), home=self.home)
            elif verb == "down":
                stack.down(name, home=self.home)
            else:
                self._action_client.call("restart", target=f"stack:{name}")
            return f"stack {name}: {verb} done"

        self._submit(f"stack {name}: {verb} …", work)

    def _submit(self, pending: str, work: Callable[[], str]) -> None:
        """Run ``work`` on a worker thread; its result or error goes to the message line."""
        if not self._action_lock.acquire(blocking=False):
            self._say("another action is still running", "error")
            return
        self._say(pending, "info")
        self._update_buttons(self._selected_row())
        threading.Thread(target=self._run, args=(work,), name="tsm-panel-action", daemon=True).start()

    def _run(self, work: Callable[[], str]) -> None:
        try:
            try:
                text, kind = work(), "ok"
            except Exception as exc:  # shown in the panel: a traceback would land in another cell
                text, kind = error_text(exc), "error"
            self._say(text, kind)  # before `busy` turns false, so a waiter sees the outcome
        finally:
            self._action_lock.release()
        try:
            self.refresh()
        except Exception:  # the next tick shows what is wrong
            pass

    # ------------------------------------------------------------------ life cycle

    def close(self) -> None:
        """Stop the refresh thread, close every widget of the panel and the daemon connections."""
        if not hasattr(self, "_client"):  # ipywidgets closes on __del__, even a half-built panel
            return super().close()
        with self._lock:
            self._closed = True
        self._stop_thread()
        self.logs.close()
        for child in list(self.children):
            close_tree(child)
        for w in (self.confirm_box, self.confirm_label, self.confirm_button, self.cancel_button):
            close_tree(w)
        super().close()
        with self._client_lock:
            self._client.close()
        if not self.busy:
            self._action_client.close()
