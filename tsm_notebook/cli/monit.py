"""``tsm monit``: a live terminal view of the processes, redrawn every second.

Plain ANSI on the terminal's alternate screen (the shell's screen comes back untouched on exit),
the keyboard in cbreak mode so one key acts at once. ``q`` quits, and so does Ctrl-C (SIGINT);
either way the terminal's modes, cursor and screen are restored. The view: one line per process
(status, pid, CPU with a bar, tree memory, restarts, uptime), totals, and the newest lifecycle
events from the history database under them. Standard library only (no pandas, no curses).
"""

from __future__ import annotations

import datetime as _dt
import os
import select
import shutil
import sys
import termios
import time
import tty
from typing import TextIO

from ..core import render
from ..client.client import Client
from ..core.errors import TsmError, UsageError
from ..core.report import events as read_events
from ..core.report import signal_name

__all__ = ["run", "frame"]

REFRESH = 1.0  # seconds between two redraws
_POLL = 0.25  # seconds between two looks at the terminal size (a resize redraws at once)

_ENTER = "\x1b[?1049h\x1b[?25l"  # alternate screen, cursor hidden
_LEAVE = "\x1b[?25h\x1b[?1049l"  # cursor shown, main screen back
_HOME, _EOL, _EOS = "\x1b[H", "\x1b[K", "\x1b[J"
_RESET, _BOLD, _DIM, _REVERSE = "\x1b[0m", "\x1b[1m", "\x1b[2m", "\x1b[7m"
_COLOURS = {"online": "\x1b[32m", "launching": "\x1b[33m", "waiting": "\x1b[33m",
            "stopping": "\x1b[33m", "errored": "\x1b[31m", "stopped": _DIM}  # fmt: skip
_EVENT_COLOURS = {"crash": "\x1b[31m", "errored": "\x1b[31m", "exit": "\x1b[33m", "memory-limit": "\x1b[33m",
                  "kill": "\x1b[33m", "online": "\x1b[32m", "db-recovered": "\x1b[31m"}  # fmt: skip
_QUIT_KEYS = (b"q", b"Q", b"\x03")  # \x03: Ctrl-C arriving as a byte when ISIG is off

HEADERS = ("ID", "Name", "Status", "PID", "CPU", "", "Memory", "Restarts", "Uptime")
BAR = 10  # characters of the CPU bar (100 % of one core fills it)


def _bar(cpu: float | None) -> str:
    if cpu is None:
        return " " * BAR
    filled = min(BAR, round(cpu / 100 * BAR))
    return "#" * filled + "." * (BAR - filled)


def _fit(text: str, width: int) -> str:
    return text if len(text) <= width else text[: max(0, width - 1)] + "~"


def frame(rows: list[dict], events: list[dict], *, width: int, height: int, now: float,
          title: str = "", problem: str | None = None) -> list[str]:
    """The lines of one screen (ANSI-coloured, each at most ``width`` visible characters).

    ``rows`` are listing rows (``ls``), ``events`` history events oldest first; they fill what
    is left below the processes, newest last. ``problem`` is shown in place of the table.
    """
    clock = _dt.datetime.fromtimestamp(now).strftime("%H:%M:%S")
    online = sum(r["status"] == "online" for r in rows)
    cpu = sum(r.get("cpu") or 0.0 for r in rows)
    mem = sum(r.get("memory") or 0 for r in rows)
    head = f"tsm monit  {title}  {clock}  {online}/{len(rows)} online  cpu {cpu:.1f}%  mem {render.size(mem)}"
    lines = [_BOLD + _fit(head, width - 9).ljust(max(0, width - 9)) + _RESET + _DIM + " q: quit"[: max(0, width)] + _RESET]
    lines.append("")
    if problem is not None:
        lines.append("\x1b[31m" + _fit(problem, width) + _RESET)
        return lines[:height]
    cells = [
        [str(r["tsm_id"]), r["name"], r["status"], str(r.get("pid") or "-"), render.percent(r.get("cpu")),
         _bar(r.get("cpu")), render.size(r.get("memory")), str(r.get("restarts", 0)), render.duration(r.get("uptime"))]
        for r in rows
    ]
    widths = [max([len(h)] + [len(c[i]) for c in cells]) for i, h in enumerate(HEADERS)]
    right = {3, 4, 6, 7, 8}  # numbers line up on the right

    def line(values: list[str]) -> str:
        return "  ".join(v.rjust(w) if i in right else v.ljust(w) for i, (v, w) in enumerate(zip(values, widths))).rstrip()

    lines.append(_REVERSE + _fit(line(list(HEADERS)), width).ljust(width) + _RESET)
    for r, c in zip(rows, cells):
        lines.append(_COLOURS.get(r["status"], "") + _fit(line(c), width) + _RESET)
    if not rows:
        lines.append(_DIM + "no processes: start one with `tsm start`" + _RESET)
    room = height - len(lines) - 2
    if room > 0 and events:
        lines.append("")
        lines.append(_BOLD + "Recent events" + _RESET)
        for e in events[-room:]:
            when = _dt.datetime.fromtimestamp(e["time"]).strftime("%H:%M:%S")
            detail = [f"pid {e['pid']}" if e.get("pid") else "", f"code {e['exit_code']}" if e.get("exit_code") is not None else "",
                      signal_name(e.get("signal")) or "", e.get("reason") or ""]
            text = f"{when}  {e.get('name') or '(daemon)'}  {e['event']}  " + "  ".join(d for d in detail if d)
            lines.append(_EVENT_COLOURS.get(e["event"], "") + _fit(text.rstrip(), width) + _RESET)
    return lines[:height]


def _size(fd: int) -> os.terminal_size:
    try:
        size = os.get_terminal_size(fd)
    except OSError:
        size = None
    if size is None or not (size.columns and size.lines):  # a fresh pty reports 0x0
        size = shutil.get_terminal_size()
    return size


def _snapshot(client: Client) -> tuple[list[dict], list[dict], str | None]:
    try:
        rows = client.call("ls", all=True)
    except TsmError as exc:
        return [], [], f"{type(exc).__name__}: {exc.message} (retrying every second)"
    try:
        evs = read_events(client.home, limit=50)
    except TsmError:
        evs = []  # a locked or damaged history must not stop the live view
    return rows, evs, None


def run(client: Client, *, stdin: TextIO | None = None, stdout: TextIO | None = None, refresh: float = REFRESH) -> int:
    """Show the live view until ``q`` or Ctrl-C; return 0. Redraws every ``refresh`` seconds.

    The first request may start the daemon (as any ``tsm`` command does); after that a daemon
    that goes away is reported on screen, retried each second, and never restarted from here.
    Raises :class:`UsageError` when stdin or stdout is not a terminal.
    """
    stdin = stdin or sys.stdin
    stdout = stdout or sys.stdout
    fd = stdin.fileno()
    if not (os.isatty(fd) and stdout.isatty()):
        raise UsageError("tsm monit needs a terminal (use `tsm ls` or `tsm events` in scripts)")
    saved = termios.tcgetattr(fd)
    out = stdout.fileno()

    def write(text: str) -> None:
        data = text.encode("utf-8", "replace")
        while data:
            data = data[os.write(out, data):]

    try:
        tty.setcbreak(fd)  # keys arrive one by one; ISIG stays on, so Ctrl-C is a SIGINT
        write(_ENTER)
        size = None
        next_snapshot = 0.0
        data: tuple[list[dict], list[dict], str | None] = ([], [], None)
        while True:
            dirty = False
            if time.monotonic() >= next_snapshot:
                data = _snapshot(client)
                client.autostart = False  # the view must not resurrect a daemon someone killed
                next_snapshot = time.monotonic() + refresh
                dirty = True
            current = _size(out)
            if dirty or current != size:
                size = current
                lines = frame(data[0], data[1], width=size.columns, height=size.lines, now=time.time(),
                              title=str(client.home.root), problem=data[2])
                write(_HOME + "".join(ln + _EOL + "\r\n" for ln in lines[:-1]) + (lines[-1] if lines else "") + _EOL + _EOS)
            wait = max(0.0, min(_POLL, next_snapshot - time.monotonic()))
            ready, _, _ = select.select([fd], [], [], wait)
            if ready:
                keys = os.read(fd, 64)
                if not keys or any(k in keys for k in _QUIT_KEYS):
                    return 0
    except KeyboardInterrupt:
        return 0
    finally:
        try:
            write(_LEAVE)
        finally:
            termios.tcsetattr(fd, termios.TCSADRAIN, saved)
