"""The nouns of the daemon's process table: a :class:`Managed` process (its spec, metadata, log
writers and restart counters) and each :class:`Run` of it (pid, pipes, exit)."""

from __future__ import annotations

import asyncio
import subprocess
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ..core import states
from ..core.config import Config
from .logwriter import LogWriter
from ..core.spec import LaunchSpec


@dataclass
class Run:
    """One execution of a managed process: its pid, pipes and exit."""

    pid: int
    popen: subprocess.Popen
    started: float
    create_time: float | None
    fds: dict[str, int] = field(default_factory=dict)  # stream -> read fd still open
    exited: asyncio.Future | None = None  # resolves to the wait status
    pipes_closed: asyncio.Event = field(default_factory=asyncio.Event)
    launch_waiting: bool = False  # a start request is waiting on this run and reports its death
    token: str | None = None  # TSM_RUN: every descendant of this run carries it
    cancel_launch: asyncio.Event = field(default_factory=asyncio.Event)  # a stop arrived mid-launch
    err_mark: tuple[int, int] | None = None  # (inode, size) of current.err at the spawn
    stopping: bool = False  # a stop has it: the stop, not the reaper, sweeps its tree after the exit


class Managed:
    """One named process: its spec, its metadata, its log writers, its current run."""

    def __init__(self, tsm_id: int, name: str, spec: LaunchSpec, env: dict[str, str], directory: Path, config: Config):
        self.tsm_id = tsm_id
        self.name = name
        self.spec = spec
        self.env = env
        self.dir = directory
        self.status: str | None = None
        self.run: Run | None = None
        self.restarts = 0
        self.unstable_restarts = 0
        self.consecutive_unstable = 0
        self.consecutive_crashes = 0
        self.created = time.time()
        self.start_time: float | None = None
        self.exit_code: int | None = None
        self.exit_signal: int | None = None
        self.port: int | None = spec.port
        self.listen_ports: list[int] = []
        self.interpreter = spec.interpreter
        self.intent: str | None = None  # token of a run about to be spawned (recorded first)
        self.restart_timer: asyncio.TimerHandle | None = None
        self.problems: dict[str, str] = {}
        self.busy = asyncio.Lock()  # serialises stop/start/restart/delete of this process
        self.log_options = self._log_options(config)
        self.writers = {stream: LogWriter(directory, stream, **self.log_options) for stream in ("out", "err")}
        # fd -> (its run, stream): reading paused for back-pressure until the writer catches up
        self.stalled: dict[int, tuple[Run, str]] = {}

    def _log_options(self, config: Config) -> dict[str, Any]:
        spec = self.spec
        return {
            "max_size": spec.log_max_size or config.log_max_size,
            "rotate_every": config.log_rotate_every or None,
            "retain": spec.log_retain if spec.log_retain is not None else config.log_retain,
            "max_age": config.log_max_age,
            "compress": config.log_compress if spec.log_compress is None else spec.log_compress,
            "timestamps": spec.time,
        }

    def refresh_writers(self, config: Config) -> None:
        """Rebuild the log writers if the spec's log options changed (a start that redefines a
        stopped process); kept while a pipe is stalled, so no accepted byte is dropped."""
        options = self._log_options(config)
        if options == self.log_options or self.stalled:
            return
        for w in self.writers.values():
            w.close()
        self.log_options = options
        self.writers = {stream: LogWriter(self.dir, stream, **options) for stream in ("out", "err")}

    @property
    def pid(self) -> int | None:
        return self.run.pid if self.run and self.status in states.ALIVE else None

    def meta(self) -> dict[str, Any]:
        """The small dict written to ``meta.json`` (no environment dump)."""
        s = self.spec
        return {
            "tsm_id": self.tsm_id,
            "name": self.name,
            "pid": self.pid,
            "command": s.command,
            "argv": s.argv,
            "shell": s.shell,
            "port": self.port,
            "cwd": s.cwd,
            "interpreter": self.interpreter,
            "type": s.type,
            "env_file": s.env_file,
            "status": self.status,
            "start_time": self.start_time,
            "created": self.created,
            "restarts": self.restarts,
            "unstable_restarts": self.unstable_restarts,
            "exit_code": self.exit_code,
            "exit_signal": self.exit_signal,
            "listen_ports": self.listen_ports,
            "pid_create_time": self.run.create_time if self.run and self.pid else None,
            "run_token": (self.run.token if self.run and self.pid else None) or self.intent,
            "autorestart": s.autorestart,
            "max_restarts": s.max_restarts,
            "min_uptime": s.min_uptime,
            "restart_delay": s.restart_delay,
            "exp_backoff": s.exp_backoff,
            "max_memory": s.max_memory,
            "kill_timeout": s.kill_timeout,
            "stop_signal": s.stop_signal,
            "time": s.time,
            "problems": dict(self.problems) or None,
            "stack": s.stack,
            "app": s.app,
        }
