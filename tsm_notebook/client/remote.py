"""Other machines: the same client over an SSH channel to ``tsm bridge`` on the remote side.

Each host runs its own ordinary daemon. A request to host ``gpu`` (``[hosts.gpu]`` in
``config.toml``) goes through the system ``ssh`` client, so the user's ``~/.ssh/config``, agent,
ProxyJump and keys apply unchanged, to ``tsm bridge`` there, which joins its stdin/stdout to the
remote daemon's socket (starting the daemon when needed): the same newline-delimited JSON. ssh
runs with ``BatchMode=yes`` (never a password prompt that would hang a kernel) and one shared
connection per host (``ControlMaster``), so a warm request costs a round trip, not a handshake.

The local end of the channel is one end of a socket pair whose other end is ssh's stdin and
stdout, so :class:`~tsm_notebook.client.client.Client` reads and writes it as it does the
daemon's Unix socket. After the first contact the shared connection also forwards a private
local socket to the remote daemon's socket; warm requests connect there (no remote process per
request) and fall back to the bridge when it finds no daemon (see :class:`SSHTransport`).
"""

from __future__ import annotations

import os
import shlex
import socket
import subprocess
import time
TYPE_CHECKING = False  # like dataclasses, concurrent.futures and tempfile, typing would slow every `tsm -H`
if TYPE_CHECKING:
    from typing import Any, Callable

from ..core.errors import DaemonError, HostUnreachable, TsmError, UsageError, VersionMismatch
from ..core.paths import Home
from ..core.version import __version__
from .client import Client

DEFAULT_TIMEOUT = 10.0  # seconds to connect and answer, per host, unless [hosts.NAME] timeout says
CONTROL_PERSIST = "10m"  # how long an idle shared connection stays up
LOCAL = "local"


class Host:
    """One ``[hosts.NAME]`` entry: where ``ssh`` goes and which ``tsm`` and home it uses there."""

    __slots__ = ("name", "ssh", "home", "tsm", "ssh_options", "timeout")

    def __init__(self, name: str, ssh: str, home: str | None = None, tsm: str = "tsm",
                 ssh_options: tuple[str, ...] = (), timeout: float = DEFAULT_TIMEOUT) -> None:
        self.name, self.ssh, self.home, self.tsm = name, ssh, home, tsm
        self.ssh_options, self.timeout = tuple(ssh_options), float(timeout)

    def _key(self) -> tuple:
        return (self.name, self.ssh, self.home, self.tsm, self.ssh_options, self.timeout)

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Host) and other._key() == self._key()

    def __hash__(self) -> int:
        return hash(self._key())

    def __repr__(self) -> str:
        return f"Host({self.name!r}, {self.ssh!r})"

    @classmethod
    def from_config(cls, name: str, entry: dict) -> "Host":
        return cls(name=name, ssh=entry["ssh"], home=entry.get("home"), tsm=entry.get("tsm", "tsm"),
                   ssh_options=tuple(entry.get("ssh_options", ())), timeout=entry.get("timeout", DEFAULT_TIMEOUT))

    def remote_command(self, *args: str) -> str:
        """The command line ssh runs remotely: ``tsm [--home H] ARGS`` (quoted for the remote shell)."""
        words = [self.tsm] + (["--home", self.home] if self.home else []) + list(args)
        return " ".join(shlex.quote(w) for w in words)


def configured_hosts(home: Any = None) -> dict[str, Host]:
    """The hosts of ``config.toml`` in ``home`` (a Home or a path; default: the local home), by name."""
    from ..core.config import Config

    home = _as_home(home)
    return {name: Host.from_config(name, entry) for name, entry in Config.load(home.config_file).hosts.items()}


def host_names(spec: str, hosts: dict[str, Host]) -> list[str]:
    """``-H`` values: ``all`` (local and every configured host), ``local``, a name or a comma list.

    Raises :class:`UsageError` for an unknown name, naming the known ones."""
    if spec == "all":
        return [LOCAL, *sorted(hosts)]
    names = [n.strip() for n in spec.split(",") if n.strip()]
    if not names:
        raise UsageError("-H needs a host name, a comma list of them, or all")
    for n in names:
        if n != LOCAL and n not in hosts:
            known = ", ".join(sorted(hosts)) or "none yet: add one with `tsm hosts add NAME user@host`"
            raise UsageError(f"unknown host {n!r}: the hosts are {known}")
    return list(dict.fromkeys(names))


def control_dir() -> str:
    """The directory of the shared connections' sockets: short (a Unix socket path is at most 107
    bytes), private (0700). ``TSM_SSH_CONTROL_DIR`` overrides it."""
    path = os.environ.get("TSM_SSH_CONTROL_DIR") or os.path.join(os.environ.get("TMPDIR") or "/tmp", f"tsm-ssh-{os.getuid()}")
    os.makedirs(path, mode=0o700, exist_ok=True)
    return path


def ssh_argv(host: Host, *, timeout: float | None = None, master: bool = True) -> list[str]:
    """``ssh`` and its options for ``host``, up to and including the destination."""
    t = max(1, int(round(float(timeout if timeout is not None else host.timeout))))
    argv = ["ssh", "-o", "BatchMode=yes", "-o", f"ConnectTimeout={t}", "-o", "ServerAliveInterval=15"]
    if master:
        argv += ["-o", "ControlMaster=auto", "-o", f"ControlPath={control_dir()}/%C", "-o", f"ControlPersist={CONTROL_PERSIST}"]
    else:
        argv += ["-o", "ControlMaster=no", "-o", "ControlPath=none"]
    return argv + list(host.ssh_options) + [host.ssh]


def _scratch_file() -> Any:
    """An unnamed temporary file (without importing tempfile where Linux offers O_TMPFILE)."""
    try:
        return os.fdopen(os.open(os.environ.get("TMPDIR") or "/tmp", os.O_TMPFILE | os.O_RDWR, 0o600), "w+b")
    except (AttributeError, OSError):
        import tempfile

        return tempfile.TemporaryFile()


class SSHTransport:
    """Runs ``ssh ... HOST tsm bridge`` with its stdin and stdout on one end of a socket pair;
    :meth:`connect` returns the other end. :meth:`failure` says why ssh ended, if it did.

    The fast path: once the shared connection is up and the remote daemon's socket is known, the
    master forwards a private local socket to it (:meth:`open_direct`, ``ssh -O forward -L
    LOCAL.sock:REMOTE/daemon.sock``), and :meth:`connect` uses that: the same protocol through an
    ssh channel, with no process started on either side (``direct`` says which path was taken).
    """

    def __init__(self, host: Host):
        self.host = host
        self.proc: subprocess.Popen | None = None
        self._stderr: Any = None
        self.direct = False
        self.skip_direct = False

    def direct_path(self) -> str:
        """The local end of the master's forward to this host's daemon socket (one per host entry)."""
        import zlib

        return os.path.join(control_dir(), f"{self.host.name}-{zlib.crc32(repr(self.host._key()).encode()):08x}.sock")

    def open_direct(self, remote_socket: str) -> bool:
        """Ask the shared connection to forward :meth:`direct_path` to ``remote_socket``; False if it
        could not (no master, forwarding refused by the server): the bridge path stays."""
        argv = ssh_argv(self.host)
        cmd = argv[:1] + ["-O", "forward", "-o", "StreamLocalBindUnlink=yes", "-L", f"{self.direct_path()}:{remote_socket}"]
        try:
            r = subprocess.run(cmd + argv[1:], stdin=subprocess.DEVNULL, capture_output=True, timeout=10)
        except (OSError, subprocess.TimeoutExpired):
            return False
        return r.returncode == 0

    def connect(self, timeout: float) -> socket.socket:
        self.close()
        self.direct = False
        path = self.direct_path()
        if not self.skip_direct and os.path.exists(path):
            s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
            s.settimeout(timeout)
            try:
                s.connect(path)
                self.direct = True
                return s
            except OSError:  # the master is gone: its forward with it
                s.close()
                try:
                    os.unlink(path)
                except OSError:
                    pass
        mine, theirs = socket.socketpair()
        self._stderr = _scratch_file()  # a file, not a pipe: the shared master keeps it open
        try:
            self.proc = subprocess.Popen(
                ssh_argv(self.host, timeout=timeout) + ["--", self.host.remote_command("bridge")],
                stdin=theirs, stdout=theirs, stderr=self._stderr, start_new_session=True, close_fds=True,
            )
        except FileNotFoundError:
            mine.close()
            raise HostUnreachable(f"host {self.host.name}: no ssh client on PATH (install openssh-client)", host=self.host.name) from None
        finally:
            theirs.close()
        mine.settimeout(timeout)
        return mine

    def failure(self, wait: float = 1.0) -> str | None:
        """ssh's exit status and last stderr line once it has ended (waiting up to ``wait`` s), else None."""
        if self.proc is None:
            return None
        try:
            code = self.proc.wait(timeout=wait)
        except subprocess.TimeoutExpired:
            return None
        self._stderr.seek(0)
        lines = [ln.strip() for ln in self._stderr.read().decode(errors="replace").splitlines() if ln.strip()]
        if not lines and code == 0:
            return None
        return f"ssh exited with {code}" + (f": {lines[-1]}" if lines else "")

    def close(self) -> None:
        """End the channel. ssh sees its stdin close and would exit once the remote side has
        wound down; nobody needs to wait for that: it is ended at once (the shared connection
        closes the remote session)."""
        if self.proc is not None:
            if self.proc.poll() is None:
                self.proc.terminate()
            try:
                self.proc.wait(timeout=5.0)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
            self.proc = None
        if self._stderr is not None:
            self._stderr.close()
            self._stderr = None


class RemoteClient(Client):
    """A :class:`Client` of the daemon on ``host``, through :class:`SSHTransport`.

    Errors name the host: :class:`HostUnreachable` when ssh fails or the host does not answer
    within ``timeout``; :class:`VersionMismatch` naming both versions and the fix.
    """

    def __init__(self, host: Host, *, timeout: float | None = None, direct: bool = True):
        self.host = host
        super().__init__(Home.resolve(), timeout=timeout or host.timeout, transport=SSHTransport(host))
        self._direct_tried = not direct

    def call(self, cmd: str, **args: Any) -> Any:
        try:
            result = super().call(cmd, **args)
        except DaemonError as exc:
            if not self.transport.direct or isinstance(exc, VersionMismatch):
                return self._failed(exc)
            # the forward found no daemon (or the master went): the bridge starts one
            self.close()
            self.transport.skip_direct = True
            return self.call(cmd, **args)
        if not self._direct_tried and not self.transport.direct:
            self._direct_tried = True
            try:  # one round trip now spares the next requests (of any process) a remote start
                home = super().call("ping")["home"]
                self.transport.open_direct(os.path.join(home, "daemon.sock"))
            except (TsmError, OSError, KeyError, TypeError):
                pass
        return result

    def _failed(self, exc: DaemonError) -> Any:
        """Raise ``exc`` naming the host: both versions and the fix, or why ssh failed."""
        why = None if isinstance(exc, (VersionMismatch, HostUnreachable)) else self.transport.failure()
        self.close()
        if isinstance(exc, VersionMismatch):
            theirs = exc.fields.get("daemon")
            raise VersionMismatch(
                f"host {self.host.name} runs tsm_notebook {theirs}, this machine runs {__version__}: install "
                f"tsm_notebook {__version__} on {self.host.name} (or {theirs} here), then run `tsm -H {self.host.name} update`",
                daemon=theirs, client=__version__, host=self.host.name,
            ) from None
        if isinstance(exc, HostUnreachable):
            raise exc
        if why and "bridge" in why and "invalid choice" in why:
            why = f"its tsm has no `bridge` command (older than {__version__}): install tsm_notebook {__version__} there"
        raise HostUnreachable(f"host {self.host.name} ({self.host.ssh}): {why or exc.message}", host=self.host.name) from None

    def close(self) -> None:
        super().close()
        self.transport.close()

    def kill(self, *, keep: bool = False, timeout: float = 60.0) -> int | None:
        """Stop every process on the host and its daemon; return the daemon's pid once it is gone.

        The channel ends when the daemon exits (the bridge there sees its socket close), so
        waiting for the end of the channel waits for the daemon, with no request that could
        start another one (nor the ``ping`` that opens the fast path: it would start one)."""
        self._direct_tried = True
        pid = self.call("kill", keep=keep)["pid"]
        sock = self._sock
        if sock is not None:
            sock.settimeout(timeout)
            try:
                while sock.recv(1 << 16):
                    pass
            except OSError:
                pass
        self.close()
        return pid


def _as_home(home: Any) -> Home:
    return home if isinstance(home, Home) else Home.resolve(home)


def client_for(host: str | None, *, home: Any = None, timeout: float | None = None, hosts: dict[str, Host] | None = None) -> Client:
    """A client of ``host`` (a configured name), or of the local ``home`` for None or ``local``."""
    if host in (None, LOCAL):
        return Client(home)
    hosts = configured_hosts(_as_home(home)) if hosts is None else hosts
    host_names(host, hosts)  # a clear error for an unknown name
    return RemoteClient(hosts[host], timeout=timeout)


def fan_out(names: list[str], work: Callable[[Client], Any], *, home: Any = None,
            hosts: dict[str, Host] | None = None) -> dict[str, Any]:
    """Run ``work(client)`` for every host of ``names`` in parallel; return {name: result or TsmError}.

    Each host is bounded by its own timeout, so one that does not answer costs at most that,
    and never stops the others."""
    hosts = configured_hosts(_as_home(home)) if hosts is None else hosts

    def one(name: str) -> Any:
        try:
            with client_for(name, home=home, hosts=hosts) as c:
                return work(c)
        except TsmError as exc:
            return exc
        except OSError as exc:
            return HostUnreachable(f"host {name}: {exc}", host=name)

    from concurrent.futures import ThreadPoolExecutor

    with ThreadPoolExecutor(max_workers=max(1, min(32, len(names)))) as pool:
        return dict(zip(names, pool.map(one, names)))


def forward_command(host: Host, remote_port: int) -> tuple[str, str]:
    """The base name (``HOST-fwd``) and shell command of a managed process forwarding local port
    ``$PORT`` to ``remote_port`` on ``host``'s loopback (``ssh -N -L``, its own connection, so it
    lasts as long as the process, whatever the shared connection does)."""
    words = [shlex.quote(a) for a in ssh_argv(host, master=False)]
    # through sh, so that $PORT (the free local port the daemon picked) reaches ssh's -L
    words[1:1] = ["-N", "-o", "ExitOnForwardFailure=yes", "-L", f"127.0.0.1:${{PORT}}:127.0.0.1:{int(remote_port)}"]
    return f"{host.name}-fwd", "exec " + " ".join(words)


def master_pid(host: Host) -> int | None:
    """The pid of the shared connection to ``host``, or None when none is up."""
    r = subprocess.run(ssh_argv(host)[:1] + ["-O", "check"] + ssh_argv(host)[1:], stdin=subprocess.DEVNULL,
                       capture_output=True, text=True, timeout=10)
    text = r.stderr + r.stdout
    if r.returncode == 0 and "pid=" in text:
        return int(text.split("pid=", 1)[1].split(")", 1)[0])
    return None


def close_master(host: Host, *, timeout: float = 10.0) -> int | None:
    """End the shared connection to ``host`` (``ssh -O exit``); return its pid once it is gone."""
    pid = master_pid(host)
    if pid is None:
        return None
    subprocess.run(ssh_argv(host)[:1] + ["-O", "exit"] + ssh_argv(host)[1:], stdin=subprocess.DEVNULL,
                   capture_output=True, timeout=10)
    from ..core.procs import pid_alive

    deadline = time.monotonic() + timeout
    while pid_alive(pid) and time.monotonic() < deadline:
        time.sleep(0.01)
    return pid


__all__ = ["Host", "RemoteClient", "SSHTransport", "client_for", "close_master", "configured_hosts", "fan_out", "forward_command",
           "host_names", "master_pid", "ssh_argv"]
