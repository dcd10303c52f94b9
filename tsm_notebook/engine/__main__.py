"""The daemon's process: ``python -m tsm_notebook.engine --home HOME`` (a client starts it).

Checks ``config.toml`` while the caller still listens, forks into its own session, takes the
home's lock (a second daemon exits with code 3), points its output at the rotated ``daemon.log``
and serves until told to stop.
"""

from __future__ import annotations

import argparse
import asyncio
import fcntl
import json
import logging
import logging.handlers
import os
import sys
from pathlib import Path

from ..core.config import Config
from ..core.errors import UsageError
from ..core.paths import Home
from ..core.version import __version__
from .daemon import Daemon
from .proctree import set_subreaper
from .signals import sanitize

log = logging.getLogger("tsm.daemon")

DAEMON_LOG_MAX = 1024**2  # bytes of daemon.log before it rotates
DAEMON_LOG_BACKUPS = 3  # daemon.log.1 .. .3 are kept


class DaemonLogHandler(logging.handlers.RotatingFileHandler):
    """``daemon.log``, rotated past :data:`DAEMON_LOG_MAX` bytes into ``daemon.log.1`` .. ``.N``.

    The daemon's stdout and stderr (a stray print, a C library's warning) go to the same file:
    after every rotation they are pointed at the new one, so nothing in the home grows unbounded.
    """

    def __init__(self, path: Path, *, max_bytes: int = DAEMON_LOG_MAX, backups: int = DAEMON_LOG_BACKUPS) -> None:
        old = os.umask(0o077)
        try:
            super().__init__(path, maxBytes=max_bytes, backupCount=backups, encoding="utf-8")
        finally:
            os.umask(old)
        self._point_std_streams()

    def _point_std_streams(self) -> None:
        if self.stream is not None:
            self.stream.flush()
            os.dup2(self.stream.fileno(), 1)
            os.dup2(self.stream.fileno(), 2)

    def _open(self):
        # never through a symlink planted at daemon.log
        fd = os.open(self.baseFilename, os.O_WRONLY | os.O_APPEND | os.O_CREAT | os.O_NOFOLLOW, 0o600)
        return os.fdopen(fd, "a", encoding=self.encoding)

    def reopen(self) -> None:
        """Reopen daemon.log at its path (SIGUSR1, after an outside rotation)."""
        self.acquire()
        try:
            if self.stream is not None:
                self.stream.close()
            self.stream = self._open()
            self._point_std_streams()
        finally:
            self.release()

    def doRollover(self) -> None:
        old = os.umask(0o077)
        try:
            super().doRollover()
        finally:
            os.umask(old)
        self._point_std_streams()


def _lock(home: Home) -> int | None:
    fd = os.open(home.lock_file, os.O_RDWR | os.O_CREAT | os.O_NOFOLLOW, 0o600)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        os.close(fd)
        return None
    return fd


def main(argv: list[str] | None = None) -> int:
    """Entry point of the daemon process (``python -m tsm_notebook.engine``)."""
    ap = argparse.ArgumentParser(prog="tsm-daemon")
    ap.add_argument("--home", required=True)
    ap.add_argument("--foreground", action="store_true", help="do not fork (for debugging, and under systemd)")
    ap.add_argument("--resurrect", action="store_true", help="start dump.json's list once up (the boot unit)")
    a = ap.parse_args(argv)
    sanitize()  # children inherit no ignored signal or mask from whoever started the daemon
    home = Home.resolve(a.home)
    try:
        home.ensure()
    except UsageError as exc:
        print(f"tsm: {exc.message}", file=sys.stderr)
        return 2
    try:  # a bad config.toml is one line on the caller's terminal now, not a timeout later
        Config.load(home.config_file)
    except UsageError as exc:
        print(f"tsm: {exc.message}", file=sys.stderr)
        return 2
    if not a.foreground:
        if os.fork():
            os._exit(0)  # the caller reaps this intermediate at once; the daemon is orphaned to init
        os.setsid()
    lock = _lock(home)
    if lock is None:
        try:
            pid = json.loads(home.status_file.read_text()).get("pid")
        except (OSError, ValueError):
            pid = "?"
        print(f"tsm: a daemon is already running for {home.root} (pid {pid})", file=sys.stderr)
        return 3
    os.chdir(home.root)
    fd = os.open(os.devnull, os.O_RDWR)
    os.dup2(fd, 0)
    handler = DaemonLogHandler(home.daemon_log)
    handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s"))
    logging.basicConfig(level=logging.INFO, handlers=[handler])
    set_subreaper()
    version = os.environ.get("TSM_DAEMON_VERSION", __version__)  # lets tests run a "different" daemon
    log.info("daemon %s starting for %s (pid %d)", version, home.root, os.getpid())
    try:
        daemon = Daemon(home, version=version)
        daemon.resurrect_at_start = a.resurrect
        asyncio.run(daemon.serve())
    except Exception:
        log.exception("daemon failed")
        return 1
    finally:
        log.info("daemon exiting")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
