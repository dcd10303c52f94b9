"""Stacks from a notebook: ``tsm.up("tsm.toml")`` (or ``%tsm up``, or a ``%%tsm up`` cell holding
the file's text) returns a :class:`Stack` at once while the bring-up runs on its own thread; its
view (a table of each app, its state and readiness) updates as apps come up, and the kernel stays
free. ``stack.wait()`` blocks until it is done and raises :class:`StackFailed` if an app did not
come up. ``tsm.down("shop")`` stops a stack in reverse order.
"""

from __future__ import annotations

import html
import os
from typing import Any

from ..client import commands
from ..client import stack as stack_client
from ..core.errors import UsageError
from ..core.paths import Home
from . import html as tsm_html

__all__ = ["Stack", "down", "stack_html", "up", "up_cell"]

_STATE_COLORS = {"ready": "online", "unchanged": "online", "failed": "errored", "skipped": "stopped",
                 "stopped": "stopped", "starting": "launching", "checking": "launching", "stopping": "stopping",
                 "waiting": "waiting", "pending": "waiting", "interrupted": "stopped"}  # fmt: skip


def _ready_text(ready: Any) -> str:
    if isinstance(ready, dict):
        return f"log /{ready.get('log')}/"
    return str(ready or "")


def stack_html(name: str, apps: list[dict[str, Any]], *, done: bool, error: str | None, verb: str = "up") -> str:
    """The table of a stack's apps: name, (host, when one runs elsewhere,) state, readiness
    check, detail, processes."""
    rows = []
    on_hosts = any(a.get("host") for a in apps)
    for a in apps:
        host = f"<td>{html.escape(a.get('host') or 'local')}</td>" if on_hosts else ""
        took = f" ({a['elapsed']:.2f}s)" if a.get("elapsed") is not None and a["state"] == "ready" else ""
        badge = tsm_html.status_badge(_STATE_COLORS.get(a["state"], a["state"])).replace(
            f">{html.escape(_STATE_COLORS.get(a['state'], a['state']))}<", f">{html.escape(a['state'])}<")
        rows.append(
            f"<tr><td>{html.escape(a['name'])}</td>{host}<td>{badge}</td><td>{html.escape(_ready_text(a.get('ready')))}</td>"
            f"<td>{html.escape(a.get('detail') or '')}{took}</td>"
            f"<td>{html.escape(', '.join(a.get('processes') or ()))}</td></tr>")
    state = "failed" if error else ("done" if done else "running")
    head = f"<b>stack {html.escape(name)}</b> <span class='tsm-muted'>{verb}: {state}</span>"
    err = f"<pre style='color:#cf222e;white-space:pre-wrap'>{html.escape(error)}</pre>" if error else ""
    return (f"{tsm_html.STYLE}<div class='tsm-stack'>{head}<table class='tsm-table'><thead><tr><th>app</th>"
            f"{'<th>host</th>' if on_hosts else ''}<th>state</th><th>ready when</th><th>detail</th><th>processes</th></tr></thead><tbody>"
            f"{''.join(rows)}</tbody></table>{err}</div>")


class Stack:
    """A stack's bring-up (or stop): ``name``, ``apps`` (a dict per app: ``name``, ``state``,
    ``detail``, ``processes``, ``ready``, ``elapsed`` in seconds), ``done`` and ``error``.

    Shown in a notebook, it is a widget whose table is refreshed by the bring-up's thread (only the
    widget's value is set from there); ``_repr_html_`` is the same table, as of now.
    """

    def __init__(self, verb: str = "up") -> None:
        self.verb = verb
        self.run: stack_client.StackRun | None = None
        self._widget: Any = None

    # --- state

    @property
    def name(self) -> str:
        """The stack's name."""
        return self.run.name if self.run else ""

    @property
    def apps(self) -> list[dict[str, Any]]:
        """One dict per app, in dependency order (raw values)."""
        if self.run is None:
            return []
        with self.run.lock:
            return [a.to_dict() for a in self.run.apps.values()]

    @property
    def done(self) -> bool:
        """Whether the bring-up has ended (well or not)."""
        return bool(self.run and self.run.done.is_set())

    @property
    def error(self) -> str | None:
        """The message of what stopped it, or None."""
        return self.run.error.message if self.run and self.run.error else None

    def wait(self, timeout: float | None = 120.0) -> "Stack":
        """Block until it has ended; raises :class:`StackFailed` (or what else stopped it).

        Interrupting the kernel while it waits stops the bring-up as Ctrl-C stops ``tsm up``: no
        app is started any more, what is up keeps running, and the stack shows what was done."""
        assert self.run is not None
        try:
            self.run.wait(timeout)
        except KeyboardInterrupt:
            self.run.cancel()
            self.run.done.wait(60)  # each app stops at its next step; a request in flight finishes
            raise
        return self

    def cancel(self) -> "Stack":
        """Stop the bring-up (or stop) at each app's next step and wait until it has settled."""
        assert self.run is not None
        self.run.cancel()
        self.run.done.wait(60)
        return self

    # --- display

    def _on_change(self, run: Any, app: Any) -> None:
        if self._widget is not None:
            self._widget.value = self._repr_html_()  # a trait set: safe from the worker thread

    def _repr_html_(self) -> str:
        return stack_html(self.name, self.apps, done=self.done, error=self.error, verb=self.verb)

    def _ipython_display_(self) -> None:
        from IPython.display import display
        import ipywidgets as widgets

        if self._widget is None:
            self._widget = widgets.HTML(self._repr_html_())
        display(self._widget)
        self._on_change(None, None)  # anything that changed before the widget existed

    def __repr__(self) -> str:
        states = ", ".join(f"{a['name']}={a['state']}" for a in self.apps)
        return f"<Stack {self.name} {self.verb}: {states}>"


def up(file: str | os.PathLike[str] | None = None, *apps: str, env: str | None = None, text: str | None = None,
       home: str | os.PathLike[str] | Home | None = None, wait: bool = False) -> Stack:
    """Bring the stack of ``file`` (default: ./tsm.toml, Procfile or ecosystem.json; ``text``, a
    stack file's content; or ``"stack:NAME"``, a stack as the daemon recorded it) up, or only ``apps`` and what they need; ``env`` picks an
    ``[env.NAME]`` section. Returns at once (``wait=True``: when done, raising StackFailed).
    A bad file raises UsageError before anything starts."""
    if file is None and text is None:
        from ..core.stackfile import find_file

        file = find_file()
    path = os.fspath(file) if file is not None else "tsm.toml"
    home = home if isinstance(home, Home) else Home.resolve(home)
    if text is None and path.startswith("stack:") and not os.path.exists(path):  # as the daemon recorded it
        from .api import shared_client

        st = stack_client.from_records(shared_client(home), path[len("stack:"):])
    else:
        st = commands.load_stack(path, env_name=env, text=text, home=home)
    result = Stack("up")
    result.run = stack_client.up(st, apps=list(apps), home=home, on_change=result._on_change, background=True)
    return result.wait() if wait else result


def down(stack: str | os.PathLike[str] | None = None, *apps: str, home: str | os.PathLike[str] | Home | None = None,
         wait: bool = True) -> Stack:
    """Stop a stack in reverse dependency order: ``stack`` is its name, ``stack:NAME`` or its file
    (default: the one in the current directory), on this machine and on the hosts its apps run
    on (the file's; for a name, every host of config.toml). Waits unless ``wait=False``."""
    name, st = None, None
    home = home if isinstance(home, Home) else Home.resolve(home)
    if stack is not None and not os.path.exists(os.fspath(stack)):
        name = str(stack).removeprefix("stack:")
    if name is None:
        path, name, more = commands.stack_items([os.fspath(stack)] if stack is not None else [])
        if name is None:
            st = commands.load_stack(str(path), home=home)
            name = st.name
    result = Stack("down")
    result.run = stack_client.down(name, apps=list(apps), home=home, on_change=result._on_change, background=True,
                                   hosts=stack_client.hosts_of(st, home))
    return result.wait() if wait else result


def from_ns(ns: Any) -> Stack:
    """``%tsm up`` / ``%tsm down``: the parsed command line's namespace."""
    path, name, apps = commands.stack_items(ns.items)
    if ns.cmd == "down":
        return down(f"stack:{name}" if name else path, *apps, home=ns.home)
    return up(path or f"stack:{name}", *apps, env=ns.environment, home=ns.home)


def up_cell(argv: list[str], cell: str) -> Stack:
    """``%%tsm up [--env NAME] [APP...]``: the cell is a ``tsm.toml``, read as if it were in the
    current directory (cwd and env files are relative to it; the name defaults to the folder's)."""
    ns = commands.parse(["up", *argv], prog="%%tsm")
    if any(commands.is_stack_file(i) for i in ns.items):
        raise UsageError("%%tsm up: the cell is the stack file; give only app names")
    if not cell.strip():
        raise UsageError("%%tsm up: the cell is empty; write the stack's tsm.toml in it")
    return up(None, *ns.items, env=ns.environment, text=cell, home=ns.home)


