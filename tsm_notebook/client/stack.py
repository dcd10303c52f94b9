"""Bringing a stack up and down: dependency order, readiness, and only what changed.

:func:`up` starts each app once every app it depends on is ready; apps that do not wait on each
other start at the same time (one thread each: the client is synchronous and must work inside a
kernel). Readiness is the app's ``ready``: ``online`` (past the launch window), ``port`` (its port
accepts), an ``http(s)://`` URL answering 2xx or 3xx (``$PORT`` is the app's port), ``{log =
"regex"}`` (a new line of its output matches) or ``exit`` (a one-shot job exited with 0). Each
ready app gets a ``ready`` event in the history, so the order can be checked afterwards.

Re-running :func:`up` compares each instance's spec with the one the daemon keeps: unchanged ones
are left alone (started again if stopped), changed ones are stopped and started with the new spec,
and processes of the stack the file no longer has are stopped and deleted. :func:`down` stops in
reverse dependency order. Progress is a :class:`StackRun` whose :class:`AppProgress` entries a
front end shows; ``on_change(run, app)`` is called (from the worker threads) at every change.

A bring-up can be stopped half-way: Ctrl-C (a KeyboardInterrupt in the thread that waits on it),
``run.cancel()``, or a new :func:`up` or :func:`down` of the same stack from the same process (a
notebook cell run again). Each app then stops at its next step: no new process is started, a
request already sent to the daemon is let finish (so nothing is left half-made), what is up keeps
running, and the run ends with a :class:`StackFailed` whose ``interrupted`` field is true. A
following ``up`` continues from there.
"""

from __future__ import annotations

import copy
import threading
import time
TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Any, Callable

from ..core import states
from ..core.errors import ProcessNotFound, StackFailed, StartFailed, TsmError
from ..core.paths import Home
from ..core.spec import LaunchSpec
from ..core.stackfile import Stack
from .client import Client
from . import commands
from .stackhosts import Places, remote_spec
from .stackready import log_sizes, message, wait_ready

__all__ = ["AppProgress", "StackRun", "dependency_order", "down", "from_records", "hosts_of", "members", "up"]

#: the states an app goes through, in order; ``failed`` and ``skipped`` end a bring-up
STATES = ("pending", "waiting", "starting", "checking", "ready", "unchanged", "failed", "skipped",
          "interrupted", "stopping", "stopped", "removed")  # fmt: skip
#: the runs of this process not yet done, by (home, stack): a new up or down of a stack stops its last one
_RUNNING: dict[tuple[str, str], "StackRun"] = {}
_RUNNING_LOCK = threading.Lock()


class _Cancelled(Exception):
    """Raised in a worker thread at its next step once the run is cancelled."""


class AppProgress:
    """One app's progress: ``state`` (see :data:`STATES`), ``detail`` (why, for a person),
    ``processes`` (its instances' names), ``elapsed`` (seconds from start to ready), ``host``
    (where it runs: a host of config.toml, or None for this machine)."""

    __slots__ = ("name", "state", "detail", "processes", "ready", "started", "elapsed", "depends_on", "host")

    def __init__(self, name: str, ready: Any = None, depends_on: list[str] | None = None, host: str | None = None) -> None:
        self.name = name
        self.state = "pending"
        self.detail = ""
        self.processes: list[str] = []
        self.ready = ready
        self.started: float | None = None
        self.elapsed: float | None = None
        self.depends_on = list(depends_on or ())
        self.host = host

    def to_dict(self) -> dict[str, Any]:
        """The raw values (for JSON and the notebook)."""
        return {k: getattr(self, k) for k in self.__slots__ if k != "started"}


class StackRun:
    """The progress of one :func:`up` or :func:`down`: ``apps`` by name in order, ``done`` (an
    event), ``error`` (the :class:`StackFailed` that ended it, or None)."""

    def __init__(self, name: str, apps: list[AppProgress], on_change: Callable[..., None] | None = None,
                 verb: str = "up") -> None:
        self.name = name
        self.verb = verb
        self.apps = {a.name: a for a in apps}
        self.done = threading.Event()
        self.error: TsmError | None = None
        self.on_change = on_change
        self.lock = threading.Lock()
        self.thread: threading.Thread | None = None
        self.cancelled = threading.Event()
        self.cancel_reason = ""

    def cancel(self, reason: str = "interrupted") -> None:
        """Stop the run at each app's next step (see the module's docstring); returns at once."""
        if not self.cancelled.is_set():
            self.cancel_reason = reason
            self.cancelled.set()

    def check(self) -> None:
        """Raise :class:`_Cancelled` if the run was cancelled (called by the worker threads)."""
        if self.cancelled.is_set():
            raise _Cancelled()

    def set(self, app: AppProgress, state: str, detail: str | None = None) -> None:
        with self.lock:
            app.state = state
            if detail is not None:
                app.detail = detail
        if self.on_change is not None:
            try:
                self.on_change(self, app)
            except Exception:  # a display that fails must not stop the bring-up
                pass

    def wait(self, timeout: float | None = None) -> "StackRun":
        """Wait until it ends; raise its error if it failed."""
        if not self.done.wait(timeout):
            raise TimeoutError(f"stack {self.name}: still running after {timeout}s")
        if self.error is not None:
            raise self.error
        return self


def _supersede(run: StackRun, home: Any) -> None:
    """Cancel this process's earlier run of the same stack and wait until it has settled, so two
    bring-ups never race to create the same processes."""
    key = (str(Home.resolve(home).root if not isinstance(home, Home) else home.root), run.name)
    with _RUNNING_LOCK:
        earlier = _RUNNING.get(key)
        _RUNNING[key] = run
    if earlier is not None and earlier is not run and not earlier.done.is_set():
        earlier.cancel(f"replaced by a new up of stack {run.name}" if run.verb == "up"
                       else f"stopped by a down of stack {run.name}")
        earlier.done.wait()


def _forget(run: StackRun, home: Any) -> None:
    key = (str(Home.resolve(home).root if not isinstance(home, Home) else home.root), run.name)
    with _RUNNING_LOCK:
        if _RUNNING.get(key) is run:
            del _RUNNING[key]


def _interrupted(run: StackRun) -> StackFailed:
    """The error of a cancelled run: what is up, what was started but not ready, what did not start."""
    # an app caught between two steps (its start request still out, its check not begun) is
    # named by where it was, never left out of the summary
    labels = {"ready": "up", "unchanged": "up (unchanged)", "stopped": "stopped", "failed": "failed",
              "interrupted": "not finished", "starting": "not finished", "checking": "not finished",
              "skipped": "not started", "waiting": "not started", "stopping": "stopping",
              "pending": "left as they were", "removed": "removed"}
    groups: dict[str, list[str]] = {label: [] for label in dict.fromkeys(labels.values())}
    for a in run.apps.values():
        groups[labels.get(a.state, a.state)] = groups.get(labels.get(a.state, a.state), []) + [a.name]
    parts = [f"{label}: {', '.join(names)}" for label, names in groups.items() if names]
    verb = "bring-up" if run.verb == "up" else "stop"
    again = ("what is up keeps running; `tsm up` again continues" if run.verb == "up"
             else "`tsm down` again finishes it")
    return StackFailed(f"stack {run.name}: {verb} {run.cancel_reason}; " + "; ".join(parts) + f"\n({again})",
                       stack=run.name, reason=run.cancel_reason, interrupted=True, lines=[])


def _run(run: StackRun, body: Callable[[], None], background: bool, home: Any = None) -> StackRun:
    def go() -> None:
        try:
            _supersede(run, home)
            body()
            if run.cancelled.is_set():
                raise _interrupted(run)
        except KeyboardInterrupt:  # Ctrl-C while the body ran in this thread: its threads have settled
            run.cancel()
            run.error = _interrupted(run)
        except TsmError as exc:
            run.error = exc
        except Exception as exc:  # reported like any failure, never lost in a thread
            run.error = TsmError(f"stack {run.name}: {type(exc).__name__}: {exc}")
        finally:
            _forget(run, home)
            run.done.set()
            if run.on_change is not None:
                try:
                    run.on_change(run, None)
                except Exception:
                    pass

    if background:
        run.thread = threading.Thread(target=go, name=f"tsm-stack-{run.name}", daemon=True)
        run.thread.start()
        return run
    go()
    return run.wait()


def members(client: Client, stack: str) -> list[dict[str, Any]]:
    """The described rows of every process of ``stack`` (empty when it has none)."""
    try:
        return client.call("describe", target=f"stack:{stack}")
    except ProcessNotFound:
        return []


def _instance(row: dict[str, Any]) -> int:
    try:
        return int((row.get("spec") or {}).get("env", {}).get("TSM_INSTANCE", 0))
    except (TypeError, ValueError):
        return 0


def _same(old: dict[str, Any], new: LaunchSpec) -> bool:
    """Whether a kept spec is the one the file asks for now. The process is matched by its app
    and instance, so its name is not compared (``tsm resurrect`` records the process's name, and
    the port it found, as given); nor is a searched port (``8000+``)."""
    want = new.to_dict()
    skip = {"name", "port", "port_search"} if want.get("port_search") else {"name"}
    return all(old.get(k) == v for k, v in want.items() if k not in skip)


# ---------------------------------------------------------------------- up


def up(stack: Stack, *, apps: list[str] | tuple[str, ...] | None = None, home: str | Home | None = None,
       on_change: Callable[..., None] | None = None, background: bool = False,
       env: dict[str, str] | None = None) -> StackRun:
    """Bring ``stack`` (or ``apps`` and what they need) up; see the module's docstring.

    Returns the finished :class:`StackRun`, or at once a running one with ``background`` (its
    ``wait()`` raises what went wrong). Raises :class:`StackFailed` naming the app that did not
    come up, why, and its last log lines; apps already up keep running.
    """
    selected = stack.closure(list(apps or ()))
    run = StackRun(stack.name, [AppProgress(n, stack.apps[n].ready, stack.apps[n].depends_on, stack.apps[n].host)
                                for n in selected], on_change)
    return _run(run, lambda: _up(run, stack, selected, home, env, full=not apps), background, home)


def _up(run: StackRun, stack: Stack, selected: list[str], home: Any, env: dict[str, str] | None, full: bool) -> None:
    threads: list[threading.Thread] = []
    where = _Where(run, stack, Places(home, [stack.apps[n].host for n in (stack.order if full else selected)]), full)
    try:
        where.start()
        ready = {n: threading.Event() for n in selected}
        failures: dict[str, StackFailed] = {}
        threads = [threading.Thread(target=_bring_app, args=(run, stack, n, where, ready, failures, env), daemon=True)
                   for n in selected]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
    except KeyboardInterrupt:
        run.cancel()
        for t in threads:  # each stops at its next step; a request in flight is let finish
            if t.ident is not None:
                t.join()
        for a in run.apps.values():
            if a.state in ("pending", "waiting"):
                run.set(a, "skipped", "not started")
        raise
    finally:
        where.join()
    if run.cancelled.is_set():
        return
    if failures:
        first = next(n for n in selected if n in failures)
        raise failures[first]


class _Where:
    """What the worker threads share: the places, and what each has of the stack by (app,
    instance). This machine is asked first (its error ends the bring-up); each host is asked on a
    thread of its own, so a host that does not answer delays only its apps (to its timeout)."""

    def __init__(self, run: StackRun, stack: Stack, places: Places, full: bool) -> None:
        self.run, self.stack, self.places, self.full = run, stack, places, full
        self.found: dict[str | None, Any] = {}
        self.known = {p: threading.Event() for p in places.names}
        self.threads: list[threading.Thread] = []

    def _ask(self, place: str | None) -> None:
        try:
            with self.places.client(place) as c:
                rows = members(c, self.stack.name)
                if self.full:
                    _remove_orphans(self.run, c, self.stack, rows, place)
            self.found[place] = {(r["spec"].get("app"), _instance(r)): r for r in rows if isinstance(r.get("spec"), dict)}
        except (TsmError, _Cancelled) as exc:
            self.found[place] = exc
        except OSError as exc:
            from ..core.errors import HostUnreachable

            self.found[place] = HostUnreachable(f"host {place}: {exc}", host=place)
        finally:
            self.known[place].set()

    def start(self) -> None:
        self._ask(None)
        if isinstance(self.found[None], TsmError):  # (cancelled: each app stops at its first step)
            raise self.found[None]
        for place in self.places.names[1:]:
            t = threading.Thread(target=self._ask, args=(place,), name=f"tsm-stack-host-{place}", daemon=True)
            t.start()
            self.threads.append(t)

    def kept(self, place: str | None) -> dict:
        """What ``place`` has of the stack (waiting for its answer); raises what stopped it."""
        while not self.known[place].wait(0.05):
            self.run.check()
        got = self.found[place]
        if isinstance(got, BaseException):
            raise got
        return got

    def join(self) -> None:
        for t in self.threads:
            t.join()


def _remove_orphans(run: StackRun, c: Client, stack: Stack, current: list[dict[str, Any]], place: str | None = None) -> None:
    """Stop and delete the processes of the stack at ``place`` the file no longer has there."""
    for r in reversed(current):
        app = stack.apps.get(r["spec"].get("app"))
        if app is None or app.host != place or _instance(r) >= app.instances:
            run.check()
            c.call("delete", target=r["name"])
            label = r["name"] if place is None else f"{r['name']}@{place}"
            gone = AppProgress(label if label not in run.apps else f"{label} (removed)", host=place)
            gone.processes = [r["name"]]
            with run.lock:  # shown like the file's apps: what `up` did is all on screen
                run.apps[gone.name] = gone
            why = ("no longer in the file" if app is None else f"{app.name} runs on {app.host or 'this machine'} now"
                   if app.host != place else f"{app.name} has {app.instances} instance(s) now")
            run.set(gone, "removed", why)


def _bring_app(run: StackRun, stack: Stack, name: str, where: _Where, ready: dict[str, threading.Event],
               failures: dict[str, StackFailed], env: dict[str, str] | None) -> None:
    app, progress = stack.apps[name], run.apps[name]
    try:
        run.set(progress, "waiting", "for " + ", ".join(app.depends_on) if app.depends_on else "")
        for dep in app.depends_on:
            while not ready[dep].wait(0.05):
                run.check()
            if dep in failures or run.apps[dep].state in ("skipped", "interrupted"):
                run.set(progress, "skipped", f"{dep} did not come up" if dep in failures else "not started")
                return
        run.check()
        where.kept(app.host)  # raises why the host did not answer
        with where.places.client(app.host) as c:
            _start_app(run, c, stack, app, progress, where, env)
    except _Cancelled:
        if progress.processes:
            run.set(progress, "interrupted", "started, not yet ready")
        else:
            run.set(progress, "skipped", "not started")
    except StackFailed as exc:
        failures[name] = exc
        run.set(progress, "failed", exc.fields.get("reason") or exc.message)
    except TsmError as exc:
        failures[name] = StackFailed(f"{name} failed: {exc.message}", stack=stack.name, app=name,
                                     reason=exc.message, lines=list(exc.fields.get("stderr") or ()))
        run.set(progress, "failed", exc.message.splitlines()[0])
    finally:
        ready[name].set()


def _start_app(run: StackRun, c: Client, stack: Stack, app: Any, progress: AppProgress, where: _Where,
               env: dict[str, str] | None) -> None:
    progress.started = time.monotonic()
    run.set(progress, "starting", "")
    names, changed, offsets, kinds = [], False, {}, {}
    previous_port: int | None = None
    for i in range(app.instances):
        run.check()
        if app.host is None:
            spec, child_env = copy.deepcopy(app.specs[i]), None
        else:  # built by its host: that machine's paths, PATH and environment
            spec, child_env = remote_spec(c, app, i, stack.name)
            if progress.ready is None:
                with run.lock:
                    progress.ready = spec.ready
        if spec.port_search and previous_port is not None and spec.port is not None:
            spec.port = max(spec.port, previous_port + 1)  # instances of P+ take ports upwards
        old = where.kept(app.host).get((app.name, i))
        if old is not None and _same(old["spec"], spec):
            if old["status"] in states.RUNNING or (spec.ready == "exit" and old["status"] == states.STOPPED and old.get("exit_code") == 0):
                row = old  # left alone: its log since it started counts for a log check
            else:
                offsets[old["name"]] = log_sizes(c, old["name"])
                row = c.call("start_existing", target=old["name"])[0]
                changed = True
        else:
            if old is not None:
                offsets[old["name"]] = log_sizes(c, old["name"])
                if old["status"] in states.ALIVE | states.RUNNING:
                    c.call("stop", target=old["name"])
            row = _start(c, spec, app, env, child_env)
            if old is not None and row["name"] != old["name"]:
                c.call("delete", target=old["name"])
            changed = True
        names.append(row["name"])
        kinds[row["name"]] = spec.ready
        previous_port = row.get("port")
        with run.lock:
            progress.processes = list(names)
    run.set(progress, "checking", "")
    details = [wait_ready(run, c, stack.name, app, n, offsets.get(n, {}), kinds[n]) for n in names]
    for n, detail in zip(names, details):  # the history shows when each app was ready for its dependants
        c.call("ready", target=n, reason=detail)
    progress.elapsed = time.monotonic() - progress.started
    run.set(progress, "ready" if changed else "unchanged", details[0] if len(details) == 1 else f"{len(details)} instances: {details[0]}")


def _start(c: Client, spec: LaunchSpec, app: Any, env: dict[str, str] | None,
           child_env: dict[str, str] | None = None) -> dict[str, Any]:
    """Start ``spec``: with the caller's environment, or ``child_env`` (the host's, for an app there)."""
    try:
        if child_env is not None:
            return c.call("start", spec=spec.to_dict(), env=child_env, smart=True)
        return commands.start(c, spec, env)
    except StartFailed as exc:
        lines = list(exc.fields.get("stderr") or ())
        code = exc.fields.get("exit_code")
        reason = f"exited with code {code}" if code is not None else exc.message.splitlines()[0]
        raise StackFailed(message(app.name, reason, lines), stack=spec.stack, app=app.name, reason=reason, lines=lines) from None


def from_records(client: Client, name: str) -> Stack:
    """The stack ``name`` as the daemon recorded it (specs, order, readiness), for ``tsm up
    stack:NAME`` without its file: what is stopped starts again, dependencies first. Raises
    ProcessNotFound when the stack has no process."""
    from ..core.stackfile import App, DEFAULT_READY_TIMEOUT

    rows = client.call("describe", target=f"stack:{name}")
    specs: dict[str, dict[int, LaunchSpec]] = {}
    for r in rows:
        spec = LaunchSpec.from_dict(r["spec"])
        specs.setdefault(spec.app or r["name"], {})[_instance(r)] = spec
    deps = {app: list(next(iter(s.values())).depends_on or ()) for app, s in specs.items()}
    apps = {}
    for app in dependency_order(deps):
        first = next(iter(specs[app].values()))
        a = App(app, {}, [d for d in deps[app] if d in specs], first.ready or "online",
                first.ready_timeout or DEFAULT_READY_TIMEOUT, len(specs[app]), None)
        a.specs = [specs[app][i] for i in sorted(specs[app])]
        apps[app] = a
    return Stack(name, f"stack:{name}", apps)


# ---------------------------------------------------------------------- down


def dependency_order(deps: dict[str, list[str]]) -> list[str]:
    """Names with dependencies first (unknown dependencies ignored, a cycle broken where found)."""
    done: list[str] = []
    seen: set[str] = set()

    def visit(n: str) -> None:
        if n in seen:
            return
        seen.add(n)
        for d in deps.get(n, ()):
            if d in deps:
                visit(d)
        done.append(n)

    for n in deps:
        visit(n)
    return done


from .stackdown import down, hosts_of  # noqa: E402  (its own module; it builds on the above)
