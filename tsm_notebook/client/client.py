"""The synchronous client: one Unix socket, blocking calls with timeouts.

It works inside a running Jupyter kernel (no asyncio), starts the daemon on demand, and turns the
daemon's error replies back into the exceptions of :mod:`tsm_notebook.errors`.
"""

from __future__ import annotations

import json
import os
import socket
import sys
import time
from pathlib import Path
TYPE_CHECKING = False  # typing costs the command line ~8 ms to import; annotations are postponed
if TYPE_CHECKING:
    from typing import Any

from ..core.version import __version__
from ..core.errors import DaemonError, DaemonNotRunning, ProtocolError, TsmError, UsageError, VersionMismatch, from_reply
from ..core.paths import Home
from ..core.procs import pid_alive
from ..core.protocol import request

#: commands that work whatever the daemon's version (so a mismatch can be fixed)
VERSION_FREE = frozenset({"ping", "kill", "dump"})
#: requests that change nothing, so one lost with its connection may be sent again; any other
#: (start, restart, stop, delete...) is never re-sent blindly: it may have run already
IDEMPOTENT = frozenset({"ping", "ls", "describe", "patrol", "history_flush", "doctor", "events", "logs"})
START_TIMEOUT = 15.0
#: seconds ``resurrect`` may take: thousands of processes launched at once on a busy machine
#: take minutes (2,000 Python sleepers on 2 cores: about a minute)
RESURRECT_TIMEOUT = 900.0
#: a connect refused with EAGAIN (the listen backlog is full) is retried this long, backing off
CONNECT_RETRY = 5.0
MAX_SOCKET_PATH = 107  # sun_path holds 108 bytes with the final NUL


class Client:
    """A connection to the daemon of one TSM home.

    ``call(cmd, **args)`` sends one request and returns its result. ``autostart`` starts the daemon
    when none answers. ``timeout`` (seconds) bounds every socket wait; stops and starts can take
    ``kill_timeout`` or the launch window, so the default is generous.
    """

    def __init__(self, home: str | os.PathLike[str] | Home | None = None, *, autostart: bool = True, timeout: float = 120.0,
                 transport: Any = None):
        self.home = home if isinstance(home, Home) else Home.resolve(home)
        #: another way to the daemon (:class:`~tsm_notebook.client.remote.SSHTransport`): its
        #: ``connect(timeout)`` returns a connected socket; None is this home's Unix socket
        self.transport = transport
        self.autostart = autostart
        self.timeout = timeout
        self._sock: socket.socket | None = None
        self._buf = b""
        self._rid = 0
        self.stopped_without_daemon: list[int] = []

    # ------------------------------------------------------------------ connection

    def _connect(self) -> socket.socket:
        """One connection to the daemon's socket, retrying a full backlog (EAGAIN) with a short
        backoff, and refused unless the listener runs as our own user."""
        delay, deadline = 0.002, time.monotonic() + CONNECT_RETRY
        while True:
            s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
            s.settimeout(self.timeout)
            try:
                s.connect(str(self.home.socket))
                break
            except BlockingIOError:
                s.close()
                if time.monotonic() > deadline:
                    raise
                time.sleep(delay)
                delay = min(delay * 2, 0.1)
            except BaseException:
                s.close()
                raise
        from ..core.peer import peer_refusal

        why = peer_refusal(s, allow_root=False)
        if why:
            s.close()
            raise DaemonError(f"refusing the listener on {self.home.socket}: {why}; "
                              "it is not your daemon (remove the socket or choose another TSM_HOME)")
        return s

    def connect(self) -> None:
        """Connect, starting the daemon first when allowed and needed."""
        if self._sock is not None:
            return
        if self.transport is not None:
            self._sock = self.transport.connect(self.timeout)
            return
        if len(os.fsencode(self.home.socket)) > MAX_SOCKET_PATH:
            raise UsageError(
                f"TSM_HOME {str(self.home.root)!r} is too long for a Unix socket path "
                f"({len(os.fsencode(self.home.socket))} bytes with daemon.sock, at most {MAX_SOCKET_PATH}): choose a shorter one"
            )
        self.home.check()  # another user's (or a symlinked) home: refused before a byte is sent
        try:
            self._sock = self._connect()
            return
        except (FileNotFoundError, ConnectionRefusedError):
            if not self.autostart:
                raise DaemonNotRunning(f"no daemon is running for {self.home.root}") from None
        except OSError as exc:
            raise DaemonError(f"cannot reach the daemon at {self.home.socket}: {exc}") from None
        self._sock = self._start_daemon()

    def _start_daemon(self) -> socket.socket:
        import subprocess  # only when a daemon must be started

        from ..core.config import Config

        self.home.ensure()
        Config.load(self.home.config_file)  # a bad config.toml: its one line now, not a failed start
        # the daemon must not carry a managed process's marker (a tsm run inside a child)
        env = {k: v for k, v in os.environ.items() if k not in ("TSM_ID", "TSM_RUN", "TSM_NAME")}
        pkg_parent = str(Path(__file__).resolve().parents[2])
        env["PYTHONPATH"] = pkg_parent + (os.pathsep + env["PYTHONPATH"] if env.get("PYTHONPATH") else "")
        launcher = subprocess.Popen(
            [sys.executable, "-m", "tsm_notebook.engine", "--home", str(self.home.root)],
            stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
            start_new_session=True, env=env, close_fds=True,
        )
        deadline = time.monotonic() + START_TIMEOUT
        err = b""
        while time.monotonic() < deadline:
            try:
                s = self._connect()
                launcher.wait(timeout=5)
                return s
            except (FileNotFoundError, ConnectionRefusedError):
                pass
            if launcher.poll() is not None and launcher.returncode != 0:
                err = launcher.stderr.read() if launcher.stderr else b""
                if launcher.returncode != 3:  # 3: another daemon won the race; keep trying it
                    break
            time.sleep(0.005)
        if launcher.poll() is None:
            launcher.kill()
        launcher.wait()
        detail = err.decode(errors="replace").strip() or f"see {self.home.daemon_log}"
        raise DaemonError(f"the daemon did not start for {self.home.root}: {detail}")

    def close(self) -> None:
        if self._sock is not None:
            self._sock.close()
            self._sock = None
            self._buf = b""

    def __enter__(self) -> "Client":
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()

    # ------------------------------------------------------------------ requests

    def call(self, cmd: str, **args: Any) -> Any:
        """Send one request; return its result or raise the error the daemon replied with.

        The reply must carry the request's id (a late reply to an earlier, interrupted request is
        skipped). An interrupted call (Ctrl-C, a kernel interrupt, any exception mid-way) drops
        the connection, so the next call starts clean. A request lost with a dropped connection
        is sent again only if it changes nothing (:data:`IDEMPOTENT`).
        """
        for attempt in (0, 1):
            self.connect()
            assert self._sock is not None
            if attempt == 0 and self._stale():
                self.close()  # the daemon went away between calls: a fresh connection, no resend
                self.connect()
            self._rid += 1
            rid = self._rid
            try:
                self._sock.sendall(request(cmd, args, rid))
                reply = self._reply(rid)
                break
            except (BrokenPipeError, ConnectionResetError, EOFError):
                self.close()
                if attempt or cmd == "kill" or cmd not in IDEMPOTENT:
                    raise DaemonError(
                        f"the daemon closed the connection during {cmd!r}"
                        + ("" if cmd in IDEMPOTENT else ": it may or may not have been done (see `tsm ls`)")
                    ) from None
            except socket.timeout:
                self.close()
                raise DaemonError(f"the daemon did not answer {cmd!r} within {self.timeout:g}s") from None
            except BaseException:
                self.close()  # interrupted: the reply may still come; never read it as the next one's
                raise
        daemon_version = reply.get("daemon")
        if daemon_version != __version__ and cmd not in VERSION_FREE:
            raise VersionMismatch(
                f"the daemon runs tsm_notebook {daemon_version}, this client is {__version__}: "
                "run `tsm update` to restart the daemon keeping the processes",
                daemon=daemon_version, client=__version__,
            )
        if not reply.get("ok"):
            raise from_reply(reply.get("error") or {})
        return reply.get("result")

    def long_call(self, cmd: str, timeout: float, **args: Any) -> Any:
        """:meth:`call` for a request whose work grows with the number of processes (``resurrect``
        of thousands on a busy machine): the socket waits up to ``timeout`` seconds for the reply
        (at least the client's own timeout), then the client's timeout applies again."""
        saved = self.timeout
        self.timeout = max(saved, timeout)
        try:
            if self._sock is not None:
                self._sock.settimeout(self.timeout)
            return self.call(cmd, **args)
        finally:
            self.timeout = saved
            if self._sock is not None:
                self._sock.settimeout(saved)

    def _stale(self) -> bool:
        """True if the open connection was closed by the daemon (readable with nothing to read)."""
        import select

        assert self._sock is not None
        try:
            readable, _, _ = select.select([self._sock], [], [], 0)
            if not readable:
                return False
            return self._sock.recv(1, socket.MSG_PEEK | socket.MSG_DONTWAIT) == b""
        except (BlockingIOError, InterruptedError):
            return False
        except OSError:
            return True

    def _reply(self, rid: int) -> dict[str, Any]:
        """The reply to request ``rid``; replies to other ids (late answers) are dropped."""
        while True:
            line = self._readline()
            try:
                reply = json.loads(line)
            except ValueError:
                raise ProtocolError("malformed reply from the daemon") from None
            if not isinstance(reply, dict):
                raise ProtocolError("malformed reply from the daemon")
            got = reply.get("id")
            if got == rid or (got is None and not reply.get("ok")):
                return reply  # None: the daemon could not read the id (a refused connection)

    def _readline(self) -> bytes:
        assert self._sock is not None
        if b"\n" not in self._buf:
            # chunks joined once at the end: a reply of megabytes (ls of thousands) is not copied per chunk
            chunks = [self._buf]
            while True:
                chunk = self._sock.recv(1 << 16)
                if not chunk:
                    self._buf = b"".join(chunks)
                    raise EOFError
                chunks.append(chunk)
                if b"\n" in chunk:
                    break
            self._buf = b"".join(chunks)
        line, _, self._buf = self._buf.partition(b"\n")
        return line

    def running(self) -> bool:
        """True when a daemon answers for this home (never starts one)."""
        if self._sock is not None:
            return True
        try:
            self._connect().close()
            return True
        except OSError:
            return False

    def kill(self, *, keep: bool = False, timeout: float = 60.0) -> int | None:
        """Stop every process and the daemon; wait until its pid is gone. Returns that pid.

        With no daemon running, what the home says is running is stopped all the same (see
        :func:`stop_orphans`) and None is returned."""
        if not self.running():
            self.stopped_without_daemon = stop_orphans(self.home)
            return None
        pid = self.call("kill", keep=keep)["pid"]
        self.close()
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if not pid_alive(pid):
                break
            time.sleep(0.01)
        else:
            raise DaemonError(f"the daemon (pid {pid}) did not exit within {timeout:.0f}s")
        # the socket file goes with the daemon; wait for it so the next start is clean
        while self.home.socket.exists() and time.monotonic() < deadline:
            time.sleep(0.01)
        return pid


def stop_orphans(home: Home) -> list[int]:
    """With no daemon: stop every live process carrying this home's marker (our uid, our home's
    ``TSM_HOME`` and a ``TSM_ID``), which includes every verified pid ``meta.json`` records, and
    every member of the home's run cgroups (removed once empty). Returns the pids stopped. A pid that is not proven ours is never signalled."""
    from ..core import marker

    if not home.processes.is_dir():
        return []
    pids = list(marker.marked(str(home.root)))
    stopped = marker.stop_marked(str(home.root), pids) if pids else []
    # and the members of the dead daemon's run cgroups (even those without a marker)
    from ..core.cgroups import Cgroups

    found = Cgroups(str(home.root), create=False).stop_all()
    return stopped + [p for p in found if p not in stopped]


def daemon_status(home: Home) -> dict[str, Any] | None:
    """The daemon's status file, or None."""
    try:
        return json.loads(home.status_file.read_text())
    except (OSError, ValueError):
        return None


FLUSH_TIMEOUT = 2.0  # seconds a reader waits for the daemon to write out what it queued


def flush_history(home: Home) -> bool:
    """Ask a running daemon to write out the events and samples it has queued (never starts one).

    Lets a reader see an event the daemon recorded a moment ago. Returns ``False`` when no daemon
    answers or it could not flush within :data:`FLUSH_TIMEOUT` seconds (a locked database); the
    caller then reads what is already on disk.
    """
    if not home.socket.exists():
        return False
    try:
        with Client(home, autostart=False, timeout=FLUSH_TIMEOUT + 1.0) as c:
            return bool(c.call("history_flush"))
    except (TsmError, OSError):
        return False
