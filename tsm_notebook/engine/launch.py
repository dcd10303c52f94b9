"""Launching a managed process: its environment, the spawn, and the launch window until online.

:class:`Launcher` is the part of :class:`~tsm_notebook.engine.supervisor.Supervisor` that brings a
process up; the supervisor holds the table, the restart policy and every other action.
"""

from __future__ import annotations

import asyncio
import errno
import os
import secrets
import signal
import subprocess
from pathlib import Path
from urllib.parse import urlsplit

import psutil

from ..core import states
from ..core import marker
from ..core.errors import StartFailed, UsageError
from ..core.logread import LogLine, tail
from ..core.cgroups import joiner
from .managed import Managed, Run
from .ports import accepts, listening, tree_pids
from .proctree import decode


def _run_stderr(directory: Path, mark: tuple[int, int] | None, count: int = 10) -> list[str]:
    """The last ``count`` stderr lines of one run: what ``current.err`` gained since ``mark``, so
    a failed start does not repeat the errors of the attempts before it."""
    path = directory / "current.err"
    try:
        with open(path, "rb") as f:
            st = os.fstat(f.fileno())
            start = 0 if mark is None else mark[1]
            if mark is None or (st.st_ino == mark[0] and st.st_size >= start):
                f.seek(max(start, st.st_size - 256 * 1024))
                return [LogLine.parse("err", raw).text for raw in f.read().splitlines()][-count:]
    except OSError:
        return []
    return [ln.text for ln in tail(directory, stream="err", lines=count)]


def port_listens(port: int, pid: int, *, tree: bool = True) -> bool:
    """True when ``port`` accepts on 127.0.0.1 or ::1, or (with ``tree``, which costs a scan of
    the connection table) when the process tree of ``pid`` listens on it at any address."""
    if accepts(port) or accepts(port, "::1"):
        return True
    return tree and port in listening(tree_pids(pid))


class Launcher:
    """Spawning and the launch window; mixed into the supervisor, whose state it uses."""

    def _child_env(self, m: Managed, token: str) -> dict[str, str]:
        env = dict(m.env)
        env.update(m.spec.env)
        if m.port is not None:
            env["PORT"] = str(m.port)
            # where a browser reaches it (a notebook sends its proxy's template), for apps that
            # need their public URL or base path (streamlit --server.baseUrlPath, panel --prefix)
            template = env.pop("TSM_URL_TEMPLATE", "") or "http://localhost:{port}"
            env["TSM_URL"] = template.replace("{port}", str(m.port))
            path = urlsplit(env["TSM_URL"]).path or "/"
            env["TSM_BASE_PATH"] = path if path.endswith("/") else path + "/"
        else:
            env.pop("TSM_URL_TEMPLATE", None)
        # every child: entry points and shebang scripts (uvicorn, flask, celery) are Python too
        env.setdefault("PYTHONUNBUFFERED", "1")
        env["TSM_NAME"] = m.name
        env["TSM_ID"] = str(m.tsm_id)
        env["TSM_HOME"] = str(self.home.root)
        env["TSM_RUN"] = token  # the marker every descendant inherits (see engine.tracking)
        return env

    def _spawn(self, m: Managed, token: str) -> Run:
        spec = m.spec
        m.refresh_writers(self.config)
        try:
            st = os.stat(m.dir / "current.err")
            err_mark: tuple[int, int] | None = (st.st_ino, st.st_size)
        except OSError:
            err_mark = None
        pipes = self.capture.pipes()
        cgroup_fd = self.tracker.cgroups.prepare(token)
        try:
            try:
                # the daemon cleared its own signal mask and inherited SIG_IGNs at start-up and
                # handles (never ignores) the signals it survives, so the child execs with
                # default dispositions and an empty mask; restore_signals resets SIGPIPE
                popen = subprocess.Popen(
                    spec.argv,
                    cwd=spec.cwd,
                    env=self._child_env(m, token),
                    restore_signals=True,
                    stdin=subprocess.DEVNULL,
                    stdout=pipes["out"][1],
                    stderr=pipes["err"][1],
                    start_new_session=True,
                    close_fds=True,
                    # the child joins its run's cgroup before exec, so even what it forks at once
                    # is in it (see core.cgroups)
                    preexec_fn=None if cgroup_fd is None else joiner(cgroup_fd),
                )
            except FileNotFoundError as exc:
                missing = exc.filename if exc.filename and exc.filename != spec.cwd else spec.argv[0]
                if not Path(spec.cwd).is_dir():
                    raise UsageError(f"cwd {spec.cwd!r} does not exist") from None
                raise UsageError(f"command not found: {missing}") from None
            except PermissionError:
                raise UsageError(f"permission denied: {spec.argv[0]}") from None
            except OSError as exc:
                if exc.errno in (errno.EMFILE, errno.ENFILE, errno.EAGAIN, errno.ENOMEM):
                    raise  # a passing shortage of the daemon's, not the command's fault
                raise UsageError(f"cannot execute {spec.argv[0]}: {exc.strerror or exc}") from None
            except ValueError as exc:  # an embedded NUL the checks missed
                raise UsageError(f"cannot execute {spec.argv[0]!r}: {exc}") from None
        except BaseException:
            for r, w in pipes.values():
                os.close(r)
                os.close(w)
            self.tracker.cgroups.remove(token)
            raise
        finally:
            if cgroup_fd is not None:
                os.close(cgroup_fd)
        for _, w in pipes.values():
            os.close(w)
        # the child joined its cgroup itself; should that have failed, it joins now, and what it
        # forked in the short window before this write carries the marker (TSM_RUN) that covers it
        self.tracker.cgroups.enter(token, popen.pid)
        ctime = marker.start_time(popen.pid)
        run = Run(pid=popen.pid, popen=popen, started=self.clock(), create_time=ctime, token=token,
                  err_mark=err_mark)
        run.exited = self.loop.create_future()
        self.capture.attach(m, run, pipes)
        self.by_pid[run.pid] = (m, run)
        return run

    async def _launch(self, m: Managed, *, event: str, wait: bool = True) -> None:
        """Spawn ``m`` and (when ``wait``) return once it is online; raise StartFailed if it dies."""
        if m.restart_timer:
            m.restart_timer.cancel()
            m.restart_timer = None
        m.exit_code = m.exit_signal = None
        m.problems.pop("start", None)
        m.status = states.check(m.status, states.LAUNCHING)
        # intent before action: meta.json names the run's token before the spawn, so a daemon
        # killed in between leaves a child recovery can find (by its marker) and stop
        token = f"{m.tsm_id}.{secrets.token_hex(6)}"
        m.intent = token
        self.save_meta(m)
        try:
            run = self._spawn(m, token)
        except UsageError as exc:
            m.intent = None
            m.problems["start"] = exc.message
            m.status = states.check(m.status, states.ERRORED)
            self.save_meta(m)
            self.on_event(m, "errored", reason=exc.message)
            raise
        except OSError as exc:
            m.intent = None
            self._spawn_failed(m, exc)
            if wait:
                raise StartFailed(f"{m.name} could not be spawned: {exc.strerror or exc}", name=m.name) from None
            return
        m.intent = None
        self.tracker.forget()
        m.run = run
        m.start_time = run.started
        self.save_meta(m)
        self.on_event(m, event, pid=run.pid)
        window = self.config.launch_window
        if not wait:
            self.loop.call_later(window, self._mark_online, m, run)
            return
        run.launch_waiting = True
        try:
            await self._wait_launched(m, run, window)
        finally:
            run.launch_waiting = False

    async def _wait_launched(self, m: Managed, run: Run, window: float) -> None:
        """Wait out the launch window, or with ``wait_port`` until the port accepts (60 s at most).

        A process with a declared port that accepts connections is evidently up, so it is online
        at once instead of at the end of the window (the port was checked free before the spawn).
        """
        deadline = self.loop.time() + window
        limit = 60.0 if m.spec.wait_port is True else float(m.spec.wait_port or 0)
        if m.spec.wait_port:
            deadline = self.loop.time() + limit
        next_tree_check = 0.0
        while True:
            remaining = deadline - self.loop.time()
            if run.cancel_launch.is_set():
                # a stop or delete arrived: it acts now, this start reports why it ended
                raise StartFailed(f"{m.name}: the start was cancelled by a stop or delete", name=m.name)
            if run.exited.done() or remaining <= 0:
                break
            if m.port is not None and port_listens(m.port, run.pid, tree=self.loop.time() >= next_tree_check):
                break
            if self.loop.time() >= next_tree_check:
                next_tree_check = self.loop.time() + 0.25
            step = min(remaining, 0.01 if m.port is not None else remaining, 0.05)
            try:
                await asyncio.wait_for(asyncio.shield(run.exited), step)
            except asyncio.TimeoutError:
                pass
        if run.exited.done() and m.run is run:
            # died during the launch window: report why, keep the logs, do not loop
            try:
                await asyncio.wait_for(run.pipes_closed.wait(), 1.0)
            except asyncio.TimeoutError:
                pass
            code, sig = decode(run.exited.result())
            m.exit_code, m.exit_signal = code, sig
            if code == 0 and not m.spec.autorestart:
                self.set_status(m, states.STOPPED, "stop", reason="exited with code 0, autorestart off")
                return

            lines = _run_stderr(m.dir, run.err_mark)
            what = f"exit code {code}" if sig is None else f"signal {signal.Signals(sig).name}"
            msg = f"{m.name} exited at once ({what})"
            if lines:
                msg += ":\n" + "\n".join("  " + ln for ln in lines)
            msg += f"\n(full logs: tsm logs {m.name})"
            self.set_status(m, states.ERRORED, "errored", reason=f"exited during launch ({what})")
            raise StartFailed(msg, name=m.name, exit_code=code, signal=sig, stderr=lines)
        if m.spec.wait_port and not port_listens(m.port, run.pid):
            others = [p for p in listening(tree_pids(run.pid)) if p != m.port]
            await self.stop(m)
            msg = f"{m.name} did not listen on port {m.port} within {limit:g}s"
            if others:
                msg += f" (it listens on {', '.join(map(str, others))}: give that --port, or --no-port)"
            raise StartFailed(msg, name=m.name)
        self._mark_online(m, run)

    def _spawn_failed(self, m: Managed, exc: OSError) -> None:
        """A spawn refused by a passing shortage (no descriptors, no memory): never stuck in
        launching. It counts as an unstable crash, so the restart policy retries it later and
        ends in errored, with the reason, if the shortage lasts."""
        reason = f"spawn failed: {exc.strerror or exc}"
        m.problems["start"] = reason
        self.on_event(m, "spawn-failed", reason=reason)
        self._after_crash(m, 0.0)

    def _mark_online(self, m: Managed, run: Run) -> None:
        if m.run is run and m.status == states.LAUNCHING and not run.exited.done():
            self.set_status(m, states.ONLINE, "online", pid=run.pid)
            self.loop.call_later(1.0, self._record_interpreter, m, run)

    def _record_interpreter(self, m: Managed, run: Run) -> None:
        """Record the real binary (a pyenv shim execs it) and the ports the tree listens on."""
        if m.run is not run or m.status != states.ONLINE:
            return
        changed = False
        if m.spec.type in ("python", "node"):
            try:
                exe = psutil.Process(run.pid).exe()
                if exe and exe != m.interpreter:
                    m.interpreter, changed = exe, True
            except psutil.Error:
                pass
        if changed:
            self.save_meta(m)

    # ------------------------------------------------------------------ exits
