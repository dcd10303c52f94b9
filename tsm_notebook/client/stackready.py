"""Readiness checks of a stack's apps: ``online``, ``port`` (it accepts), an ``http(s)://`` URL
answering 2xx or 3xx, ``{log = "regex"}`` (a new line of its output matches) or ``exit`` (a
one-shot job exited with 0); and the messages of an app that did not come up (its last log lines).
Used by :mod:`.stack`; ``run.check()`` is called at every poll, so a cancelled bring-up stops here.
"""

from __future__ import annotations

import re
import socket
import time
from pathlib import Path
TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Any

from ..core import states
from ..core.errors import StackFailed, TsmError
from .client import Client

__all__ = ["POLL", "failed", "log_sizes", "message", "wait_ready"]

POLL = 0.01  # seconds between readiness checks (a check is one local request)
HTTP_GAP = 0.1  # at most seconds between two HTTP checks: the gap doubles from POLL up to this

def message(app: str, reason: str, lines: list[str]) -> str:
    text = f"{app} failed: {reason}"
    if lines:
        text += ":\n" + "\n".join("  " + ln for ln in lines)
    return text + "\n(what was up keeps running)"


def log_sizes(row: dict[str, Any]) -> dict[str, int]:
    sizes = {}
    for stream in ("out", "err"):
        try:
            sizes[stream] = Path(row["dir"], f"current.{stream}").stat().st_size
        except (OSError, KeyError, TypeError):
            sizes[stream] = 0
    return sizes


def _last_lines(row: dict[str, Any], n: int = 10) -> list[str]:
    from ..core.logread import tail

    try:
        lines = tail(Path(row["dir"]), stream="err", lines=n) or tail(Path(row["dir"]), stream="out", lines=n)
    except (OSError, KeyError, TypeError, TsmError):
        return []
    return [ln.text for ln in lines]


def _accepts(port: int | None) -> bool:
    if port is None:
        return False
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=0.5):
            return True
    except OSError:
        return False


def _http_ok(url: str) -> tuple[int | None, str]:
    """(the status of a GET when it is 2xx/3xx else None, what it answered, for the message when
    it never is). No proxy: the app is on this machine."""
    import urllib.error
    import urllib.request

    opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))
    try:
        with opener.open(url, timeout=2.0) as resp:
            return (resp.status if 200 <= resp.status < 400 else None), f"{resp.status} {resp.reason}"
    except urllib.error.HTTPError as exc:
        return (exc.code if 300 <= exc.code < 400 else None), f"{exc.code} {exc.reason}"
    except urllib.error.URLError as exc:
        return None, str(getattr(exc.reason, "strerror", None) or exc.reason)
    except (OSError, ValueError) as exc:
        return None, str(getattr(exc, "strerror", None) or exc)


def _log_match(row: dict[str, Any], pattern: str, offsets: dict[str, int]) -> bool:
    regex = re.compile(pattern)
    for stream in ("out", "err"):
        path = Path(row["dir"], f"current.{stream}")
        try:
            with open(path, "rb") as f:
                start = offsets.get(stream, 0)
                if f.seek(0, 2) < start:
                    start = 0  # rotated since: the new file is all new
                f.seek(start)
                data = f.read()
        except OSError:
            continue
        if any(regex.search(line) for line in data.decode("utf-8", "replace").splitlines()):
            return True
    return False


def wait_ready(run: Any, c: Client, stack: str, app: Any, name: str, offsets: dict[str, int]) -> str:
    """Poll until ``name`` is ready; return what showed it. Raises StackFailed."""
    kind = app.ready
    deadline = time.monotonic() + app.ready_timeout
    waited = {"online": "online", "port": "its port to accept", "exit": "it to exit"}.get(kind) if isinstance(kind, str) else None
    last_answer, next_http, http_gap = "", 0.0, POLL
    while True:
        run.check()
        row = c.call("describe", target=name)[0]
        status, code = row["status"], row.get("exit_code")
        if kind == "exit":
            if status == states.STOPPED and code == 0:
                return "exited with code 0"
            if status in (states.STOPPED, states.ERRORED) or (status == states.WAITING and code not in (None, 0)):
                reason = f"exited with code {code}" if code is not None else f"{status}"
                raise failed(stack, app, reason, row)
        elif status in (states.STOPPED, states.ERRORED):
            what = f" (exit code {code})" if code is not None else ""
            raise failed(stack, app, f"{status} before it was ready{what}", row)
        elif status == states.ONLINE:
            port = row.get("port")
            if kind == "online":
                return "online"
            if kind == "port" and _accepts(port):
                return f"port {port} accepts"
            if isinstance(kind, str) and kind.startswith(("http://", "https://")):
                url = re.sub(r"\$\{PORT\}|\$PORT\b", str(port), kind)
                waited = f"{url} to answer 2xx/3xx"
                if time.monotonic() >= next_http:  # spaced out: each check is a request the app may log
                    answer, last_answer = _http_ok(url)
                    if answer is not None:
                        return f"{url} answered {answer}"
                    http_gap = min(http_gap * 2, HTTP_GAP)
                    next_http = time.monotonic() + http_gap
            if isinstance(kind, dict):
                waited = f"a log line matching {kind['log']!r}"
                if _log_match(row, kind["log"], offsets):
                    return f"log matched {kind['log']!r}"
        if time.monotonic() > deadline:
            last = f"; last answer: {last_answer}" if last_answer else ""
            raise failed(stack, app, f"not ready after {app.ready_timeout:g}s (waited for {waited or kind}{last})", row)
        time.sleep(POLL)


def failed(stack: str, app: Any, reason: str, row: dict[str, Any]) -> StackFailed:
    lines = _last_lines(row)
    return StackFailed(message(f"{app.name} ({row['name']})" if row["name"] != app.name else app.name, reason, lines)
                       + f"\n(full logs: tsm logs {row['name']})", stack=stack, app=app.name, reason=reason, lines=lines)
