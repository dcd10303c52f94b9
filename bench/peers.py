"""Drivers for the peers tsm_notebook is measured against: PM2 7.0.4 and supervisor 4.3.0.

Both are installed pinned and cached by ``bench/install_peers.py`` and run from a scratch home, so
nothing global is touched. Both keep their own defaults for everything that is timed:

* **PM2** (``PM2Driver``): its God daemon starts on the first command (``pm2 ping`` here).
  Processes go in through ecosystem JSON files (one app for ``start``, many for ``start_many``),
  ``interpreter: "none"`` so ``argv[0]`` (the real Python binary, never a pyenv shim) is executed
  as is. Defaults kept: ``autorestart`` on, ``restart_delay`` 0, ``min_uptime`` 1 s,
  ``max_restarts`` 16, stop = SIGINT then SIGKILL after ``kill_timeout`` 1.6 s, logs in
  ``PM2_HOME/logs/<name>-out.log`` with no rotation (pm2-logrotate is a separate module).
  ``pid()`` reads ``PM2_HOME/pids/<name>.app-<id>.pid``, which the daemon rewrites on every (re)start
  and removes on stop: as fresh as ``pm2 jlist`` and without a node start-up per look.
* **supervisor** (``SupervisorDriver``): ``supervisord -c conf`` with ``nodaemon=true`` in its own
  session, a Unix socket in the home, programs in an include directory, added with
  ``supervisorctl update``. Defaults kept: ``autostart`` true, ``startsecs`` 1 (a process counts as
  RUNNING, our ``online``, after 1 s), ``startretries`` 3, ``autorestart`` unexpected,
  ``stopsignal`` TERM, ``stopwaitsecs`` 10, ``stopasgroup``/``killasgroup`` false. One change:
  ``stdout_logfile_maxbytes=0`` (and stderr's), rotation off, to match PM2 and so every line
  stays countable. ``supervisorctl update`` returns once the program is added, before its start;
  ``supervisorctl start`` would wait ``startsecs``. ``pid()`` asks the XML-RPC interface over the
  Unix socket (``getProcessInfo``), the same call ``supervisorctl pid`` makes, minus its start-up.
"""

from __future__ import annotations

import http.client
import json
import os
import re
import shlex
import socket
import subprocess
import xmlrpc.client
from collections.abc import Iterable
from pathlib import Path
from typing import IO, Any

from bench.driver import Driver
from bench.install_peers import CACHE, PM2_VERSION, SUPERVISOR_VERSION, pm2_bin, supervisor_bins
from bench.measure import pid_alive, wait_gone, wait_until, wall

#: Seconds allowed for a daemon to come up, or to exit after its shutdown command.
DAEMON_TIMEOUT = 30.0
#: Seconds allowed for one command of a manager (500 processes in one go included).
COMMAND_TIMEOUT = 300.0


class PM2Driver(Driver):
    """PM2 7.0.4 driven through its command line, with ``PM2_HOME`` in a scratch folder."""

    name = "pm2"
    version = PM2_VERSION

    def __init__(self, cache: Path = CACHE) -> None:
        """``cache`` is where the pinned PM2 is (or gets) installed."""
        super().__init__()
        self.cache = cache
        self.bin: Path | None = None
        self.home = Path()
        self._batches = 0

    def setup(self, workdir: Path) -> None:
        """Install PM2 if needed and make ``workdir/pm2`` its ``PM2_HOME``."""
        self.bin = pm2_bin(self.cache)
        self.home = Path(workdir).resolve() / "pm2"
        for sub in ("apps", "logs"):
            (self.home / sub).mkdir(parents=True, exist_ok=True)
        self.env["PM2_HOME"] = str(self.home)

    def _run(self, *args: str, check: bool = True) -> float:
        argv = [str(self.bin), *args]
        return wall(argv, self.env, ok=(0,) if check else None, timeout=COMMAND_TIMEOUT, cwd=self.home)

    def _daemon_pid_or_none(self) -> int | None:
        try:
            pid = int((self.home / "pm2.pid").read_text().strip())
        except (OSError, ValueError):
            return None
        return pid if pid_alive(pid) else None

    def start_daemon(self) -> None:
        """Spawn the God daemon with ``pm2 ping`` and wait for its pid file."""
        self._run("ping")
        wait_until(lambda: self._daemon_pid_or_none() is not None, DAEMON_TIMEOUT, "PM2's pm2.pid")

    def daemon_pid(self) -> int:
        """Pid of the God daemon, from ``PM2_HOME/pm2.pid``. Raises ``RuntimeError`` if none runs."""
        pid = self._daemon_pid_or_none()
        if pid is None:
            raise RuntimeError("no PM2 daemon is running")
        return pid

    def _app(self, name: str, argv: list[str]) -> dict[str, Any]:
        return {
            "name": name,
            "script": argv[0],
            "args": argv[1:],
            "interpreter": "none",
            "cwd": str(self.home),
            "out_file": str(self.home / "logs" / f"{name}-out.log"),
            "error_file": str(self.home / "logs" / f"{name}-error.log"),
            # PM2 rewrites a pid path ending "-<digits>.pid" to "-<pm_id>.pid", which would turn
            # "web-8000.pid" into "web-0.pid": the ".app" infix keeps the name intact
            "pid_file": str(self.home / "pids" / f"{name}.app.pid"),
        }

    def _start_file(self, stem: str, apps: list[dict[str, Any]]) -> float:
        path = self.home / "apps" / f"{stem}.json"
        path.write_text(json.dumps({"apps": apps}))
        return self._run("start", str(path))

    def start(self, name: str, argv: list[str], *, port: int | None = None) -> float:
        """``pm2 start <one-app ecosystem>.json``; seconds until it returned (PM2 has no port notion)."""
        return self._start_file(f"app-{name}", [self._app(name, argv)])

    def start_many(self, specs: list[tuple[str, list[str]]]) -> float:
        """``pm2 start <ecosystem>.json`` holding every app; seconds until it returned."""
        self._batches += 1
        return self._start_file(f"batch-{self._batches}", [self._app(n, a) for n, a in specs])

    def _pid_files(self) -> dict[str, int]:
        found: dict[str, int] = {}
        try:
            entries = os.listdir(self.home / "pids")
        except FileNotFoundError:
            return found
        for entry in entries:
            match = re.fullmatch(r"(.+)\.app-\d+\.pid", entry)
            if not match:
                continue
            try:
                pid = int((self.home / "pids" / entry).read_text().strip())
            except (OSError, ValueError):  # gone, or caught mid-rewrite
                continue
            found[match.group(1)] = pid
        return found

    def pid(self, name: str) -> int | None:
        """Pid of ``name`` from its PM2 pid file, or ``None`` (stopped, or not yet spawned)."""
        return self._note(self._pid_files().get(name))

    def pids(self, names: Iterable[str]) -> dict[str, int | None]:
        """Pids of ``names`` from one listing of ``PM2_HOME/pids``."""
        files = self._pid_files()
        return {name: self._note(files.get(name)) for name in names}

    def online(self, name: str) -> bool:
        """True when ``name`` has a live pid (PM2 reports ``online`` from spawn on)."""
        pid = self.pid(name)
        return pid is not None and pid_alive(pid)

    def list_cmd(self) -> list[str]:
        """``pm2 ls``."""
        return [str(self.bin), "ls"]

    def stop(self, name: str) -> float:
        """``pm2 stop <name>``: returns after the process exited (SIGINT, SIGKILL after 1.6 s)."""
        return self._run("stop", name)

    def stop_all(self) -> float:
        """``pm2 stop all``."""
        return self._run("stop", "all")

    def delete_all(self) -> None:
        """``pm2 delete all`` (non-zero exit tolerated: PM2 fails it when the list is empty)."""
        self._run("delete", "all", check=False)

    def log_files(self, name: str) -> list[Path]:
        """``PM2_HOME/logs/<name>-out.log`` (PM2 appends to it and never rotates it by itself)."""
        return [self.home / "logs" / f"{name}-out.log"]

    def shutdown(self) -> None:
        """``pm2 kill``, then prove the God daemon and every child are gone (leftovers SIGKILLed)."""
        pid = self._daemon_pid_or_none()
        if pid is not None:
            self._note_tree(pid)
            self._run("kill", check=False)
            try:
                wait_gone([pid], DAEMON_TIMEOUT)
            except TimeoutError:
                pass  # _reap_leftovers kills it and fails loudly if even that does not work
        self._reap_leftovers(pid)


class _UnixConnection(http.client.HTTPConnection):
    def __init__(self, path: str, timeout: float) -> None:
        super().__init__("localhost", timeout=timeout)
        self._path = path

    def connect(self) -> None:
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        sock.settimeout(self.timeout)
        sock.connect(self._path)
        self.sock = sock


class _UnixTransport(xmlrpc.client.Transport):
    def __init__(self, path: str, timeout: float = 30.0) -> None:
        super().__init__()
        self._path = path
        self._timeout = timeout

    def make_connection(self, host: Any) -> http.client.HTTPConnection:
        return _UnixConnection(self._path, self._timeout)


def _supervisor_value(text: str) -> str:
    # supervisor expands %(name)s in its config values: a literal % must be doubled
    return text.replace("%", "%%")


class SupervisorDriver(Driver):
    """supervisor 4.3.0: ``supervisord`` in the foreground of its own session, driven by ``supervisorctl``."""

    name = "supervisor"
    version = SUPERVISOR_VERSION
    list_ok = (0, 3)  # ``status`` exits 3 while any program is not RUNNING

    def __init__(self, cache: Path = CACHE) -> None:
        """``cache`` is where the pinned supervisor venv is (or gets) installed."""
        super().__init__()
        self.cache = cache
        self.supervisord: Path | None = None
        self.supervisorctl: Path | None = None
        self.home = Path()
        self.conf = Path()
        self.socket = Path()
        self._proc: subprocess.Popen[bytes] | None = None
        self._output: IO[bytes] | None = None
        self._batches = 0

    def setup(self, workdir: Path) -> None:
        """Install supervisor if needed and write ``workdir/supervisor/supervisord.conf``."""
        self.supervisord, self.supervisorctl = supervisor_bins(self.cache)
        self.home = Path(workdir).resolve() / "supervisor"
        for sub in ("conf.d", "logs"):
            (self.home / sub).mkdir(parents=True, exist_ok=True)
        self.conf = self.home / "supervisord.conf"
        self.socket = self.home / "supervisor.sock"
        if len(str(self.socket)) > 100:
            raise ValueError(f"socket path too long for AF_UNIX: {self.socket}")
        home = _supervisor_value(str(self.home))
        self.conf.write_text(
            f"[unix_http_server]\nfile={home}/supervisor.sock\n\n"
            f"[supervisord]\nnodaemon=true\nlogfile={home}/supervisord.log\n"
            f"pidfile={home}/supervisord.pid\nchildlogdir={home}/logs\n\n"
            "[rpcinterface:supervisor]\n"
            "supervisor.rpcinterface_factory = supervisor.rpcinterface:make_main_rpcinterface\n\n"
            f"[supervisorctl]\nserverurl=unix://{home}/supervisor.sock\n\n"
            f"[include]\nfiles = {home}/conf.d/*.conf\n"
        )

    def _ctl(self, *args: str) -> list[str]:
        return [str(self.supervisorctl), "-c", str(self.conf), *args]

    def _run(self, *args: str, check: bool = True) -> float:
        argv = self._ctl(*args)
        return wall(argv, self.env, ok=(0,) if check else None, timeout=COMMAND_TIMEOUT, cwd=self.home)

    def _rpc(self) -> Any:
        return xmlrpc.client.ServerProxy("http://localhost/RPC2", transport=_UnixTransport(str(self.socket)))

    def _answers(self) -> bool:
        if self._proc is None or self._proc.poll() is not None:
            log = (self.home / "supervisord.stdout").read_text(errors="replace")[-2000:]
            raise RuntimeError(f"supervisord exited during start-up:\n{log}")
        try:
            return self._rpc().supervisor.getState()["statename"] == "RUNNING"
        except (OSError, xmlrpc.client.Error):
            return False

    def start_daemon(self) -> None:
        """Launch ``supervisord -c conf`` (``nodaemon=true``, new session); wait until it answers."""
        self._output = open(self.home / "supervisord.stdout", "ab")
        self._proc = subprocess.Popen(
            [str(self.supervisord), "-c", str(self.conf)],
            cwd=self.home,
            env=self.env,
            stdin=subprocess.DEVNULL,
            stdout=self._output,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
        wait_until(self._answers, DAEMON_TIMEOUT, "supervisord to answer")

    def daemon_pid(self) -> int:
        """Pid of ``supervisord``. Raises ``RuntimeError`` when it is not running."""
        if self._proc is None or self._proc.poll() is not None:
            raise RuntimeError("supervisord is not running")
        return self._proc.pid

    def _program(self, name: str, argv: list[str]) -> str:
        logs = _supervisor_value(str(self.home / "logs"))
        return (
            f"[program:{name}]\n"
            f"command={_supervisor_value(shlex.join(argv))}\n"
            f"directory={_supervisor_value(str(self.home))}\n"
            f"stdout_logfile={logs}/{name}.out\nstdout_logfile_maxbytes=0\n"
            f"stderr_logfile={logs}/{name}.err\nstderr_logfile_maxbytes=0\n\n"
        )

    def start(self, name: str, argv: list[str], *, port: int | None = None) -> float:
        """Write ``conf.d/<name>.conf`` and run ``supervisorctl update <name>``; seconds until it returned.

        The command returns once the program is added; supervisor then spawns it and counts it
        RUNNING after ``startsecs`` (1 s). Supervisor has no port notion.
        """
        (self.home / "conf.d" / f"{name}.conf").write_text(self._program(name, argv))
        return self._run("update", name)

    def start_many(self, specs: list[tuple[str, list[str]]]) -> float:
        """Write every program into one ``conf.d/batch-N.conf`` and run ``supervisorctl update``."""
        self._batches += 1
        path = self.home / "conf.d" / f"batch-{self._batches}.conf"
        path.write_text("".join(self._program(n, a) for n, a in specs))
        return self._run("update")

    def _info(self, name: str) -> dict[str, Any] | None:
        try:
            info: dict[str, Any] = self._rpc().supervisor.getProcessInfo(name)
        except xmlrpc.client.Fault:  # BAD_NAME: not (or no longer) configured
            return None
        return info

    def pid(self, name: str) -> int | None:
        """Pid of ``name`` from XML-RPC ``getProcessInfo``, or ``None`` (not running or unknown)."""
        info = self._info(name)
        return self._note(info["pid"] or None) if info else None

    def pids(self, names: Iterable[str]) -> dict[str, int | None]:
        """Pids of ``names`` from one XML-RPC ``getAllProcessInfo``."""
        every = {i["name"]: i["pid"] or None for i in self._rpc().supervisor.getAllProcessInfo()}
        return {name: self._note(every.get(name)) for name in names}

    def online(self, name: str) -> bool:
        """True when supervisor reports ``name`` RUNNING (up for ``startsecs``, 1 s)."""
        info = self._info(name)
        return bool(info) and info["statename"] == "RUNNING"

    def list_cmd(self) -> list[str]:
        """``supervisorctl -c conf status`` (it exits 3 when any program is not RUNNING)."""
        return self._ctl("status")

    def stop(self, name: str) -> float:
        """``supervisorctl stop <name>``: returns after the exit (SIGTERM, SIGKILL after 10 s)."""
        return self._run("stop", name)

    def stop_all(self) -> float:
        """``supervisorctl stop all``."""
        return self._run("stop", "all")

    def delete_all(self) -> None:
        """Remove every program file and ``supervisorctl update``: groups are stopped and removed."""
        for path in (self.home / "conf.d").glob("*.conf"):
            path.unlink()
        self._run("update")

    def log_files(self, name: str) -> list[Path]:
        """``logs/<name>.out`` (``stdout_logfile``, rotation off)."""
        return [self.home / "logs" / f"{name}.out"]

    def shutdown(self) -> None:
        """``supervisorctl shutdown``, wait for supervisord to exit, kill leftovers by pid.

        The program files are removed too, so the next ``start_daemon`` starts with none.
        """
        proc, self._proc = self._proc, None
        pid = None
        if proc is not None and proc.poll() is None:
            pid = proc.pid
            self._note_tree(pid)
            self._run("shutdown", check=False)
            try:
                proc.wait(timeout=DAEMON_TIMEOUT)
            except subprocess.TimeoutExpired:
                pass  # _reap_leftovers kills it and fails loudly if even that does not work
        self._reap_leftovers(pid)
        for path in (self.home / "conf.d").glob("*.conf"):
            path.unlink()  # forget every program, as ``pm2 kill`` does: the next daemon starts empty
        if proc is not None:
            try:
                proc.wait(timeout=DAEMON_TIMEOUT)  # reap our child so no zombie is left behind
            except subprocess.TimeoutExpired:
                pass
        if self._output is not None:
            self._output.close()
            self._output = None


def peer_drivers() -> list[Driver]:
    """One fresh driver per peer, in the order the harness alternates them."""
    return [PM2Driver(), SupervisorDriver()]
