"""The one exception tree of tsm_notebook.

::

    TsmError
     ├── UsageError            bad input: a flag, a value, a name, an env file
     ├── ProcessNotFound       no process matches a target (fields: target)
     ├── ProcessExists         a name is taken (fields: name)
     ├── PortInUse             a port is held (fields: port, pid, command)
     ├── StartFailed           a child died during its launch window (fields: name, exit_code, signal, stderr)
 ├── StackFailed           a stack's app did not come up (fields: stack, app, reason, lines)
     └── DaemonError           the daemon could not be reached or failed
          ├── DaemonNotRunning    no daemon answers for this home
          ├── VersionMismatch     the daemon runs another version (fields: daemon, client)
          ├── HostUnreachable     a remote host did not answer over ssh (fields: host)
          └── ProtocolError       a malformed request or reply

The daemon replies to a failed request with ``{"code": <class name>, "message": ..., "fields":
{...}}``; the client rebuilds the same exception with :func:`from_reply`, so a notebook user sees
``ProcessNotFound: no process named 'web'`` and never a socket traceback. Every exception pickles.
"""

from __future__ import annotations

TYPE_CHECKING = False  # typing costs the command line ~8 ms to import; annotations are postponed
if TYPE_CHECKING:
    from typing import Any


class TsmError(Exception):
    """Base of every error tsm_notebook raises on purpose. ``fields`` holds structured details."""

    def __init__(self, message: str = "", **fields: Any) -> None:
        super().__init__(message)
        self.message = message
        self.fields = fields
        for key, value in fields.items():
            setattr(self, key, value)

    def __reduce__(self):  # pickles with its fields
        return (_rebuild, (type(self).__name__, self.message, self.fields))

    def to_reply(self) -> dict[str, Any]:
        """The error envelope the daemon sends for this exception."""
        return {"code": type(self).__name__, "message": self.message, "fields": self.fields}


class UsageError(TsmError):
    """Bad input from the user: a flag, a value, a name, an env file."""


class ProcessNotFound(TsmError):
    """No process matches the target (a name, a tsm_id or ``all``)."""


class ProcessExists(TsmError):
    """A process with this name already exists."""


class PortInUse(TsmError):
    """The port is already held; ``pid`` and ``command`` name the holder when known."""


class StartFailed(TsmError):
    """The child exited during its launch window; ``exit_code``/``signal`` and ``stderr`` tell why."""


class StackFailed(TsmError):
    """A stack's bring-up stopped: ``app`` did not become ready (``reason``; ``lines``: its last
    log lines). What was already up keeps running."""


class DaemonError(TsmError):
    """The daemon could not be reached, or failed on a request."""


class DaemonNotRunning(DaemonError):
    """No daemon answers for this TSM home."""


class VersionMismatch(DaemonError):
    """The running daemon's version differs from the client's; ``tsm update`` fixes it."""


class HostUnreachable(DaemonError):
    """A remote host (``[hosts.NAME]``) could not be reached over ssh, or did not answer in time."""


class ProtocolError(DaemonError):
    """A request or reply that is not valid protocol."""


_CLASSES = {
    cls.__name__: cls
    for cls in (
        TsmError,
        UsageError,
        ProcessNotFound,
        ProcessExists,
        PortInUse,
        StartFailed,
        StackFailed,
        DaemonError,
        DaemonNotRunning,
        VersionMismatch,
        HostUnreachable,
        ProtocolError,
    )
}


def _rebuild(code: str, message: str, fields: dict[str, Any]) -> TsmError:
    return _CLASSES.get(code, TsmError)(message, **fields)


def from_reply(error: dict[str, Any]) -> TsmError:
    """Rebuild the exception a daemon error envelope describes (unknown codes give TsmError)."""
    fields = error.get("fields") or {}
    if not isinstance(fields, dict):
        fields = {}
    return _rebuild(str(error.get("code", "TsmError")), str(error.get("message", "")), fields)
