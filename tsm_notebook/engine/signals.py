"""The daemon's signals: it never dies of a stray one, and passes none of its own state on.

* SIGHUP re-reads ``config.toml``, checked as at start-up: a bad file is logged and recorded as
  an event (``config-error``) and the running configuration is kept.
* SIGUSR1 and SIGUSR2 reopen the logs: ``daemon.log`` and every process's ``current.*``
  (after an outside ``logrotate`` moved them).
* SIGQUIT, SIGALRM, SIGPIPE, SIGTTIN, SIGTTOU and SIGXFSZ are handled by doing nothing (so the
  daemon is never killed by them).

Every one of these has a handler, never ``SIG_IGN``: a handled signal is reset to its default in
a child at ``execve``, an ignored one would be inherited by every managed process.
:func:`sanitize` clears what the daemon itself inherited (a ``nohup`` caller's ignored SIGHUP, a
blocked mask), so children start with default dispositions and an empty mask.
"""

from __future__ import annotations

import logging
import signal
from typing import TYPE_CHECKING

from ..core.config import Config
from ..core.errors import UsageError

if TYPE_CHECKING:
    from .daemon import Daemon

log = logging.getLogger("tsm.daemon")

QUIET = ("SIGQUIT", "SIGALRM", "SIGPIPE", "SIGTTIN", "SIGTTOU", "SIGXFSZ")


def sanitize() -> None:
    """Unblock every signal and reset inherited ``SIG_IGN`` dispositions to the default (call at
    start-up, before any thread exists: threads and children inherit the mask)."""
    signal.pthread_sigmask(signal.SIG_SETMASK, [])
    for sig in signal.valid_signals():
        # SIGPIPE stays ignored (Python's choice, and the daemon writes to peers that may have
        # gone); Popen's restore_signals gives children its default back
        if sig in (signal.SIGKILL, signal.SIGSTOP, signal.SIGPIPE):
            continue
        try:
            if signal.getsignal(sig) == signal.SIG_IGN:
                signal.signal(sig, signal.SIG_DFL)
        except (OSError, ValueError, RuntimeError):
            pass


def install(d: Daemon, loop) -> None:
    """Register the handlers on the daemon's loop."""
    loop.add_signal_handler(signal.SIGHUP, reload_config, d)
    loop.add_signal_handler(signal.SIGUSR1, reopen_logs, d)
    loop.add_signal_handler(signal.SIGUSR2, reopen_logs, d)
    for name in QUIET:
        sig = getattr(signal, name, None)
        if sig is not None:
            loop.add_signal_handler(sig, _quiet, name)


def _quiet(name: str) -> None:
    if name != "SIGPIPE":
        log.info("%s received: ignored", name)


def reload_config(d: Daemon) -> None:
    """SIGHUP: load config.toml again; keep the old one if the new one is bad."""
    try:
        config = Config.load(d.home.config_file)
    except UsageError as exc:
        log.warning("SIGHUP: config.toml kept as it was: %s", exc.message)
        d.event(None, "config-error", reason=f"reload refused, old configuration kept: {exc.message}")
        return
    except Exception as exc:  # the daemon never dies of a file
        log.exception("SIGHUP: config.toml could not be read")
        d.event(None, "config-error", reason=f"reload refused, old configuration kept: {exc}")
        return
    d.config = config
    if d.sup is not None:
        d.sup.config = config
    d.store.retention = float(config.history_retention)
    log.info("SIGHUP: config.toml reloaded")
    d.event(None, "config-reload", reason="config.toml reloaded (new processes and log writers use it)")


def reopen_logs(d: Daemon) -> None:
    """SIGUSR1/SIGUSR2: reopen daemon.log and make every log writer check its path now."""
    for h in logging.getLogger().handlers:
        reopen = getattr(h, "reopen", None)
        if reopen is not None:
            try:
                reopen()
            except OSError:
                pass
    if d.sup is not None:
        for m in d.sup.procs.values():
            for w in m.writers.values():
                w.recheck()
    log.info("logs reopened")
