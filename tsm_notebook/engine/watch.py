"""Watch & restart: one file watcher for every watched process, restarting a process once per
burst of changes under its paths.

``watchfiles`` (a Rust watcher on inotify) is imported only when a process is watched, and one
thread serves all of them: the union of their paths is watched, and each batch of changes is
sorted out on the daemon's loop. A change is ignored when a part of its path is one of
:data:`IGNORED_DIRS`, when it lies in the TSM home (the process's own logs among them), or when it
matches one of the process's ``--watch-ignore`` globs. A process restarts :data:`QUIET` seconds
after the last change of a burst (at most :data:`MAX_WAIT` after its first), so saving twenty
files restarts it once. Stopped processes are not watched; a watched process that gave up
(errored) is restarted by the next change, so saving the fix brings it back.
"""

from __future__ import annotations

import asyncio
import fnmatch
import logging
import os
import threading
from typing import TYPE_CHECKING, Any, Callable

from ..core import states

if TYPE_CHECKING:
    from .managed import Managed
    from .supervisor import Supervisor

log = logging.getLogger("tsm.daemon")

IGNORED_DIRS = frozenset({".git", "__pycache__", ".ipynb_checkpoints", "node_modules", ".venv", ".hg", ".svn",
                          ".mypy_cache", ".pytest_cache"})
QUIET = 0.3  # seconds without a change before the restart
MAX_WAIT = 3.0  # seconds: a burst that never pauses still restarts this long after it began
WATCHED = states.RUNNING | {states.ERRORED}
APPLY_DELAY = 0.5  # seconds between a status change and a change of the watched paths


def ignored(path: str, root: str, globs: list[str]) -> bool:
    """Whether a change at ``path`` (under the watched ``root``) is ignored by ``globs`` (matched
    against the path relative to ``root``, its file name and each of its folders)."""
    rel = os.path.relpath(path, root) if path != root else os.path.basename(path)
    parts = rel.split(os.sep)
    for g in globs:
        folder = g.rstrip("/")
        if fnmatch.fnmatch(rel, g) or fnmatch.fnmatch(parts[-1], g):
            return True
        if any(fnmatch.fnmatch(p, folder) for p in parts[:-1]) or rel == folder or rel.startswith(folder + os.sep):
            return True
    return False


def _under(path: str, root: str) -> bool:
    return path == root or path.startswith(root.rstrip(os.sep) + os.sep)


class Watcher:
    """Keeps one watch thread over the paths of every watched process; ``restart(m, reason)`` is
    called on the loop when a process is due."""

    def __init__(self, sup: Supervisor, home_root: str, *, restart: Callable[[Managed, str], None],
                 on_event: Callable[..., None]) -> None:
        self.sup = sup
        self.home_root = os.path.realpath(home_root)
        self.restart = restart
        self.on_event = on_event
        self.announced: set[str] = set()  # names whose `watching` event was recorded
        self.loop = asyncio.get_running_loop()
        self.roots: tuple[str, ...] = ()
        self.watched: dict[str, Managed] = {}
        self.generation = 0
        self.ready_generation = -1
        self.apply_timer: asyncio.TimerHandle | None = None
        self.stop_event: threading.Event | None = None
        self.thread: threading.Thread | None = None
        self.pending: dict[str, dict[str, Any]] = {}  # name -> {timer, first, paths}
        self.problem: str | None = None

    # ------------------------------------------------------------------ which paths

    def refresh(self) -> None:
        """Recompute what is watched (after any status change); the thread follows the paths shortly."""
        self.watched = {name: m for name, m in self.sup.procs.items() if m.spec.watch and m.status in WATCHED}
        for name in [n for n in self.pending if n not in self.watched]:
            self.pending.pop(name)["timer"].cancel()
        if self.apply_timer is None:
            # paths are applied a moment later: a restart passes through `stopped`, and the
            # watches of a whole tree should not be torn down and rebuilt for it
            self.apply_timer = self.loop.call_later(APPLY_DELAY, self._apply)

    def _apply(self) -> None:
        self.apply_timer = None
        self.announced &= set(self.watched)
        wanted = sorted({p for m in self.watched.values() for p in m.spec.watch})
        # a path inside another watched path is already covered (and would double every change)
        roots = tuple(p for p in wanted if not any(q != p and _under(p, q) for q in wanted))
        if roots == self.roots:
            if self.thread is not None and self.ready_generation == self.generation:
                self._ready(self.generation, roots)  # same paths: a newcomer is watched already
            return
        self.roots = roots
        self._stop_thread()
        if roots:
            self._start_thread(roots)

    def _start_thread(self, roots: tuple[str, ...]) -> None:
        self.generation += 1
        self.stop_event = threading.Event()
        self.thread = threading.Thread(target=self._run, args=(roots, self.stop_event, self.generation),
                                       name="tsm-watch", daemon=True)
        self.thread.start()

    def _stop_thread(self) -> None:
        if self.stop_event is not None:
            self.stop_event.set()  # the thread notices within its rust_timeout and ends
        self.stop_event = self.thread = None

    def close(self) -> None:
        """Stop watching (daemon exit)."""
        for p in self.pending.values():
            p["timer"].cancel()
        self.pending.clear()
        if self.apply_timer is not None:
            self.apply_timer.cancel()
            self.apply_timer = None
        self._stop_thread()

    # ------------------------------------------------------------------ the thread

    def _keep(self, change: Any, path: str) -> bool:
        """watchfiles' filter, on the watch thread: the cheap default ignores."""
        if _under(path, self.home_root):
            return False
        return not any(part in IGNORED_DIRS for part in path.split(os.sep))

    def _run(self, roots: tuple[str, ...], stop: threading.Event, generation: int) -> None:
        try:
            import watchfiles  # only a daemon with a watched process pays for it

            ready = False
            # yield_on_timeout: the first (empty) batch says the watches are in place
            for changes in watchfiles.watch(*roots, watch_filter=self._keep, stop_event=stop, debounce=1000,
                                            step=50, rust_timeout=500, yield_on_timeout=True,
                                            ignore_permission_denied=True, raise_interrupt=False):
                if not ready:
                    ready = True
                    self.loop.call_soon_threadsafe(self._ready, generation, roots)
                if changes:
                    paths = [p for _, p in changes]
                    self.loop.call_soon_threadsafe(self._changed, generation, paths)
        except Exception as exc:  # a vanished root or a missing module: note it, keep the daemon
            if not stop.is_set():
                log.warning("file watcher stopped: %s", exc)
                self.loop.call_soon_threadsafe(self._failed, generation, f"{exc.__class__.__name__}: {exc}")

    def _ready(self, generation: int, roots: tuple[str, ...]) -> None:
        """The watches are in place: each newly watched process gets a ``watching`` event."""
        if generation != self.generation:
            return
        self.ready_generation = generation
        self.problem = None
        for name, m in self.watched.items():
            if name not in self.announced:
                self.announced.add(name)
                self.on_event(m, "watching", reason=", ".join(m.spec.watch))

    def _failed(self, generation: int, message: str) -> None:
        """The thread ended on an error: say so once per watched process; a change of the
        watched paths (a process started, stopped or deleted) tries again."""
        if generation != self.generation:
            return
        self.problem = message
        self.thread = self.stop_event = None
        for m in list(self.watched.values()):
            self.on_event(m, "watch-failed", reason=message)

    # ------------------------------------------------------------------ on the loop

    def _changed(self, generation: int, paths: list[str]) -> None:
        if generation != self.generation:
            return
        now = self.loop.time()
        for name, m in self.watched.items():
            hits = [p for p in paths for root in m.spec.watch
                    if _under(p, root) and not ignored(p, root, m.spec.watch_ignore)]
            if not hits:
                continue
            entry = self.pending.get(name)
            if entry is None:
                entry = self.pending[name] = {"first": now, "paths": set(), "timer": None}
            else:
                entry["timer"].cancel()
            entry["paths"].update(hits)
            delay = max(0.0, min(QUIET, entry["first"] + MAX_WAIT - now))
            entry["timer"] = self.loop.call_later(delay, self._due, name)

    def _due(self, name: str) -> None:
        entry = self.pending.pop(name, None)
        m = self.watched.get(name)
        if entry is None or m is None or m.status not in WATCHED:
            return
        paths = sorted(entry["paths"])
        more = f" and {len(paths) - 1} more" if len(paths) > 1 else ""
        self.restart(m, f"changed: {paths[0]}{more}")
