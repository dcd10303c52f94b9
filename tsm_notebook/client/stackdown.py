"""Stopping a stack: :func:`down`, in reverse dependency order, on every place it runs (this
machine and the hosts its apps name), from what each daemon recorded."""

from __future__ import annotations

TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Any, Callable

from ..core.errors import ProcessNotFound, StackFailed, TsmError
from ..core.paths import Home
from .client import Client
from .stack import AppProgress, StackRun, _run, dependency_order, members
from .stackhosts import Places

__all__ = ["down", "hosts_of"]


def down(name: str, *, apps: list[str] | tuple[str, ...] | None = None, home: str | Home | None = None,
         on_change: Callable[..., None] | None = None, background: bool = False,
         hosts: list[str] | tuple[str, ...] = ()) -> StackRun:
    """Stop the processes of stack ``name`` in reverse dependency order (dependants first), from
    what the daemons recorded (the file is not needed): this machine's and those of ``hosts``
    (the stack file's hosts; each asked in parallel, each within its timeout). With ``apps``,
    those and the apps that depend on them. A host that does not answer is a failed row (the
    rest is stopped, then the run raises StackFailed). Raises ProcessNotFound when the stack has
    no process anywhere."""
    places = Places(home, hosts)
    found = places.each(lambda c, place: members(c, name))
    if isinstance(found[None], TsmError):
        raise found[None]
    unreachable = {p: r for p, r in found.items() if isinstance(r, TsmError)}
    by_app: dict[str, list[dict[str, Any]]] = {}
    deps: dict[str, list[str]] = {}
    host_of: dict[str, str | None] = {}
    for place, rows in found.items():
        for r in [] if place in unreachable else rows:
            spec = r.get("spec") or {}
            app = spec.get("app") or r["name"]
            by_app.setdefault(app, []).append(r)
            deps[app] = list(spec.get("depends_on") or ())
            host_of[app] = place
    if not by_app and not unreachable:
        raise ProcessNotFound(f"no stack named {name!r}", target=f"stack:{name}")
    order = dependency_order(deps)
    if apps:
        unknown = [a for a in apps if a not in deps]
        if unknown:
            raise ProcessNotFound(f"stack {name!r} has no app {unknown[0]!r} (apps: {', '.join(order)})", target=unknown[0])
        chosen = set(apps)
        for a in order:  # and whatever depends on a chosen one
            if set(deps[a]) & chosen:
                chosen.add(a)
        order = [a for a in order if a in chosen]
    progress = [AppProgress(a, depends_on=deps[a], host=host_of[a]) for a in reversed(order)]
    lost = [AppProgress(f"(host {p})", host=p) for p in unreachable]
    run = StackRun(name, progress + lost, on_change, verb="down")

    def body() -> None:
        for p, gone in zip(unreachable, lost):
            run.set(gone, "failed", f"{unreachable[p].message.splitlines()[0]}: its apps were not stopped")
        clients: dict[str | None, Client] = {}
        try:
            for p in progress:
                if run.cancelled.is_set():
                    break
                c = clients.get(p.host) or clients.setdefault(p.host, places.client(p.host))
                p.processes = [r["name"] for r in by_app[p.name]]
                run.set(p, "stopping")
                try:
                    rows = [c.call("stop", target=n)[0] for n in p.processes]
                except TsmError as exc:  # a host lost on the way: the others are still stopped
                    unreachable.setdefault(p.host, exc)
                    run.set(p, "failed", exc.message.splitlines()[0])
                    continue
                run.set(p, "stopped", ", ".join(f"{r['name']} {r['status']}" for r in rows))
        finally:
            for c in clients.values():
                c.close()
        if unreachable and not run.cancelled.is_set():
            failed = [a.name for a in run.apps.values() if a.state == "failed"]
            first = next(iter(unreachable.values()))
            raise StackFailed(f"stack {name}: not stopped: {', '.join(failed)}: {first.message}", stack=name,
                              reason=first.message, lines=[])

    return _run(run, body, background, home)


def hosts_of(stack: Any, home: Any = None) -> list[str]:
    """The hosts a :func:`down` asks: those the stack file's apps name, or, for a stack known
    only by its name (``stack:NAME``), every host of ``config.toml`` (any may run some of it)."""
    if stack is not None:
        return sorted({a.host for a in stack.apps.values() if a.host})
    from .remote import configured_hosts

    return sorted(configured_hosts(home))
