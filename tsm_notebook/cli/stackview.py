"""What ``tsm up`` and ``tsm down`` print: a line per change, or on a terminal a block of one line
per app redrawn in place; and the grouped table of ``tsm ls -g``."""

from __future__ import annotations

import sys
import threading
TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Any, TextIO

from ..core import render

__all__ = ["Progress", "app_line", "ls_grouped"]

_MARK = {"ready": "+", "unchanged": "=", "failed": "!", "skipped": "-", "interrupted": "~", "stopped": "x", "removed": "x"}


def app_line(app: Any) -> str:
    """``+ api      ready      port 8000 accepts (0.41s)  api-8000``; an app on another host is
    named ``app@host`` (``+ train@gpu ready ...``)."""
    took = f" ({app.elapsed:.2f}s)" if app.elapsed is not None and app.state == "ready" else ""
    names = "  " + ", ".join(app.processes) if app.processes and app.processes != [app.name] else ""
    host = getattr(app, "host", None)
    label = f"{app.name}@{host}" if host and not app.name.startswith("(host ") and not app.name.endswith(f"@{host}") else app.name
    return f"{_MARK.get(app.state, ' ')} {label:<14} {app.state:<10} {app.detail}{took}{names}".rstrip()


class Progress:
    """``on_change`` for a :class:`~tsm_notebook.client.stack.StackRun`: plain lines when ``out``
    is not a terminal (every state change once), else the whole block redrawn."""

    def __init__(self, out: TextIO | None = None, *, tty: bool | None = None) -> None:
        self.out = out or sys.stdout
        self.tty = self.out.isatty() if tty is None else tty
        self.drawn = 0
        self.lock = threading.Lock()

    def __call__(self, run: Any, app: Any) -> None:
        with self.lock:
            if self.tty:
                if self.drawn:
                    self.out.write(f"\x1b[{self.drawn}F")
                lines = [app_line(a) for a in run.apps.values()]
                self.out.write("".join(f"\x1b[2K{line}\n" for line in lines))
                self.drawn = len(lines)
            elif app is not None and app.state in _MARK:
                self.out.write(app_line(app) + "\n")
            self.out.flush()


def ls_grouped(rows: list[dict[str, Any]]) -> str:
    """The ``tsm ls -g`` table: one block per stack (in order of first id), then the others."""
    groups: dict[str | None, list[dict[str, Any]]] = {}
    for r in rows:
        groups.setdefault(r.get("stack"), []).append(r)
    blocks = []
    for stack, members in sorted(groups.items(), key=lambda kv: (kv[0] is None, kv[1][0]["tsm_id"])):
        up = sum(r["status"] == "online" for r in members)
        title = f"stack {stack}: {up}/{len(members)} online" if stack else "not in a stack"
        blocks.append(title + "\n" + render.ls(members))
    return "\n\n".join(blocks) if blocks else render.ls([])
