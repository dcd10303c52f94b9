"""Real OpenSSH servers on loopback addresses, each playing a "host" with its own remote TSM home.

Used by the tests of ``tsm -H`` and by ``bench/remote_ls.py``. Each server runs ``sshd -D -e -f
CONFIG`` as a child (its own session), with a generated host key, one shared generated user key
and its own ``sshd_config``; nothing listens beyond 127.0.0.0/8. :meth:`Sshd.stop` kills the
server and every session process under it, by pid.
"""

from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import time
from pathlib import Path

import psutil

ROOT = Path(__file__).resolve().parent.parent
VENV_BIN = ROOT / ".venv" / "bin"
SSHD = shutil.which("sshd") or "/usr/sbin/sshd"


def have_sshd() -> bool:
    return os.path.exists(SSHD) and shutil.which("ssh") is not None and shutil.which("ssh-keygen") is not None


def have_private_homes() -> bool:
    """Whether this machine lets a server run with a mount namespace of its own (root, unshare)."""
    if os.getuid() != 0 or shutil.which("unshare") is None:
        return False
    return subprocess.run(["unshare", "--mount", "true"], stdin=subprocess.DEVNULL, capture_output=True).returncode == 0


def keygen(path: Path) -> Path:
    subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", str(path)], check=True,
                   stdin=subprocess.DEVNULL)
    return path


def free_port(addr: str) -> int:
    with socket.socket() as s:
        s.bind((addr, 0))
        return s.getsockname()[1]


class Sshd:
    """One sshd on ``addr``: ``start()``, ``stop()``; ``host_entry()`` is its ``[hosts.NAME]`` table."""

    def __init__(self, base: Path, name: str, addr: str, user_key: Path, *, private_home: bool = False):
        self.name, self.addr, self.user_key = name, addr, user_key
        # a private home is another machine's disk: the server runs in a mount namespace of its
        # own with a tmpfs over the remote home, so nothing there can be read from this side
        self.private_home = private_home
        self.dir = base / name
        self.dir.mkdir(parents=True)
        self.remote_home = base / f"{name}-home"  # the remote TSM_HOME (short: a socket lives there)
        # the session's HOME: a login there reads no ~/.bashrc of this machine's user (it may be slow)
        self.user_home = base / f"{name}-user"
        self.user_home.mkdir()
        self.port = free_port(addr)
        keygen(self.dir / "host_key")
        auth = self.dir / "authorized_keys"
        shutil.copy(f"{user_key}.pub", auth)
        os.chmod(auth, 0o600)
        self.config = self.dir / "sshd_config"
        self.config.write_text(
            f"ListenAddress {addr}\nPort {self.port}\nHostKey {self.dir}/host_key\n"
            f"AuthorizedKeysFile {auth}\nPidFile {self.dir}/sshd.pid\nStrictModes no\nUsePAM no\n"
            "PermitRootLogin prohibit-password\nPasswordAuthentication no\nKbdInteractiveAuthentication no\n"
            "AcceptEnv TSM_DAEMON_VERSION\nAllowTcpForwarding local\nX11Forwarding no\n"
            f"SetEnv PATH={VENV_BIN}:/usr/local/bin:/usr/bin:/bin HOME={self.user_home}\n"
        )
        self.proc: subprocess.Popen | None = None

    def start(self, timeout: float = 10.0) -> None:
        os.makedirs("/run/sshd", exist_ok=True)
        log = open(self.dir / "sshd.log", "ab")
        argv = [SSHD, "-D", "-e", "-f", str(self.config)]
        if self.private_home:
            self.remote_home.mkdir(mode=0o700, exist_ok=True)
            argv = ["unshare", "--mount", "--propagation", "private", "sh", "-c",
                    'mount -t tmpfs -o mode=0700 tsm-remote "$0" && exec "$@"', str(self.remote_home), *argv]
        self.proc = subprocess.Popen(argv, stdin=subprocess.DEVNULL,
                                     stdout=log, stderr=log, start_new_session=True)
        log.close()
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"sshd exited: {(self.dir / 'sshd.log').read_text()}")
            try:
                with socket.create_connection((self.addr, self.port), timeout=0.2):
                    return
            except OSError:
                time.sleep(0.01)
        raise RuntimeError(f"sshd on {self.addr}:{self.port} did not listen within {timeout}s")

    def stop(self) -> None:
        """Kill the server and every session under it (they outlive a killed listener), by pid."""
        if self.proc is None:
            return
        try:
            procs = [psutil.Process(self.proc.pid)]
            procs += procs[0].children(recursive=True)
        except psutil.Error:
            procs = []
        for p in procs:
            try:
                if p.name().startswith("sshd"):  # the remote daemons are not the server's: left to their home
                    p.send_signal(signal.SIGKILL)
            except psutil.Error:
                pass
        self.proc.wait(timeout=10)
        psutil.wait_procs([p for p in procs if p.pid != self.proc.pid], timeout=10)
        self.proc = None

    def host_entry(self, *, home: Path | None = None, options: list[str] = (), timeout: str = "5s") -> dict:
        """The ``[hosts.NAME]`` keys reaching this server (no user config, no known_hosts)."""
        return {
            "ssh": f"root@{self.addr}",
            "home": str(home or self.remote_home),
            "tsm": str(VENV_BIN / "tsm"),
            "ssh_options": ["-F", "/dev/null", "-p", str(self.port), "-i", str(self.user_key),
                            "-o", "StrictHostKeyChecking=no", "-o", "UserKnownHostsFile=/dev/null",
                            "-o", "LogLevel=ERROR", *options],
            "timeout": timeout,
        }


def toml_hosts(entries: dict[str, dict]) -> str:
    """``config.toml`` text with a ``[hosts.NAME]`` table per entry."""
    import json

    out = []
    for name, e in entries.items():
        out.append(f"[hosts.{name}]")
        for k, v in e.items():
            out.append(f"{k} = {json.dumps(v)}")
        out.append("")
    return "\n".join(out)
