"""Readiness checks of a stack's apps: ``online``, ``port`` (it accepts), an ``http(s)://`` URL
answering 2xx or 3xx, ``{log = "regex"}`` (a new line of its output matches) or ``exit`` (a
one-shot job exited with 0); and the messages of an app that did not come up (its last log lines).
Used by :mod:`.stack`; ``run.check()`` is called at every poll, so a cancelled bring-up stops here.

Every probe is the ``ready_probe`` request of the daemon that runs the app, so it is judged on the
app's machine (its loopback, its files), whichever host that is and whatever the transport: the
same request serves the local daemon, where it costs one round trip on the Unix socket, as the
status check it replaces did (one code path, and one request per poll instead of two).
"""

from __future__ import annotations

import time
TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Any

from ..core import states
from ..core.errors import StackFailed, TsmError
from .client import Client

__all__ = ["POLL", "failed", "log_sizes", "message", "wait_ready"]

POLL = 0.01  # seconds between readiness checks (a check is one request)
HTTP_GAP = 0.1  # at most seconds between two HTTP checks: the gap doubles from POLL up to this


def message(app: str, reason: str, lines: list[str]) -> str:
    text = f"{app} failed: {reason}"
    if lines:
        text += ":\n" + "\n".join("  " + ln for ln in lines)
    return text + "\n(what was up keeps running)"


def log_sizes(c: Client, name: str) -> dict[str, int]:
    """Where a log check of process ``name`` starts: the sizes of its logs now, on its machine."""
    try:
        return c.call("log_sizes", target=name)
    except TsmError:
        return {"out": 0, "err": 0}


def _last_lines(c: Client, name: str, n: int = 10) -> list[str]:
    """The last ``n`` lines of the process's stderr (else stdout), through the daemon that has them."""
    for stream in ("err", "out"):
        try:
            groups = c.call("logs", target=name, stream=stream, lines=n)
        except (TsmError, OSError):
            return []
        lines = [d["raw"].encode("latin-1").decode("utf-8", "replace").rstrip("\r\n") for g in groups for d in g["lines"]]
        if lines:
            return lines
    return []


def wait_ready(run: Any, c: Client, stack: str, app: Any, name: str, offsets: dict[str, int],
               kind: Any = None) -> str:
    """Poll until ``name`` is ready by ``kind`` (default: the app's ``ready``); return what showed
    it. Raises StackFailed."""
    kind = kind if kind is not None else app.ready
    deadline = time.monotonic() + app.ready_timeout
    waited = {"online": "online", "port": "its port to accept", "exit": "it to exit"}.get(kind) if isinstance(kind, str) else None
    http = isinstance(kind, str) and kind.startswith(("http://", "https://"))
    if isinstance(kind, dict):
        waited = f"a log line matching {kind['log']!r}"
    last_answer, next_http, http_gap = "", 0.0, POLL
    while True:
        run.check()
        due = not http or time.monotonic() >= next_http  # spaced out: each check is a request the app may log
        got = c.call("ready_probe", target=name, ready=kind, offsets=offsets, probe=due)
        row = got["row"]
        status, code = row["status"], row.get("exit_code")
        if kind == "exit":
            if status == states.STOPPED and code == 0:
                return "exited with code 0"
            if status in (states.STOPPED, states.ERRORED) or (status == states.WAITING and code not in (None, 0)):
                reason = f"exited with code {code}" if code is not None else f"{status}"
                raise failed(stack, app, reason, row, c)
        elif status in (states.STOPPED, states.ERRORED):
            what = f" (exit code {code})" if code is not None else ""
            raise failed(stack, app, f"{status} before it was ready{what}", row, c)
        elif got["ok"]:
            if http:
                return f"{got.get('url', kind)} answered {got['answer'].split(' ', 1)[0]}"
            if isinstance(kind, dict):
                return f"log matched {kind['log']!r}"
            return "online" if kind == "online" else f"port {row.get('port')} accepts"
        elif http and due and status == states.ONLINE:
            waited = f"{got.get('url', kind)} to answer 2xx/3xx"
            last_answer = got["answer"]
            http_gap = min(http_gap * 2, HTTP_GAP)
            next_http = time.monotonic() + http_gap
        if time.monotonic() > deadline:
            last = f"; last answer: {last_answer}" if last_answer else ""
            raise failed(stack, app, f"not ready after {app.ready_timeout:g}s (waited for {waited or kind}{last})", row, c)
        time.sleep(POLL)


def failed(stack: str, app: Any, reason: str, row: dict[str, Any], c: Client | None = None) -> StackFailed:
    """The StackFailed of ``app`` (process ``row``): why, and its last log lines (read through ``c``)."""
    lines = _last_lines(c, row["name"]) if c is not None else []
    host = getattr(c, "host", None)
    on = f" -H {host.name}" if host is not None else ""
    return StackFailed(message(f"{app.name} ({row['name']})" if row["name"] != app.name else app.name, reason, lines)
                       + f"\n(full logs: tsm{on} logs {row['name']})", stack=stack, app=app.name, reason=reason, lines=lines)
