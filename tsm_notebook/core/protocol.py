"""The wire format between clients and the daemon: newline-delimited JSON over a Unix socket.

A request is one line ``{"v": PROTOCOL, "id": n, "cmd": "<name>", "args": {...}, "client": VERSION}``.
A reply is one line ``{"v": PROTOCOL, "id": n, "ok": true, "result": ..., "daemon": VERSION}`` or
``{"v": PROTOCOL, "id": n, "ok": false, "error": {"code", "message", "fields"}, "daemon": VERSION}``.
Every request gets exactly one reply, malformed ones an error reply with code ``ProtocolError``.
"""

from __future__ import annotations

import json
TYPE_CHECKING = False  # typing costs the command line ~8 ms to import; annotations are postponed
if TYPE_CHECKING:
    from typing import Any

from .version import __version__
from .errors import ProtocolError, TsmError

PROTOCOL = 1
MAX_LINE = 16 * 1024 * 1024


def encode(obj: dict[str, Any]) -> bytes:
    """One JSON line, UTF-8, newline-terminated."""
    return json.dumps(obj, separators=(",", ":"), default=str).encode() + b"\n"


def request(cmd: str, args: dict[str, Any] | None = None, rid: int = 0) -> bytes:
    return encode({"v": PROTOCOL, "id": rid, "cmd": cmd, "args": args or {}, "client": __version__})


def parse_request(line: bytes) -> dict[str, Any]:
    """Decode and check a request line; raise :class:`ProtocolError` if it is not one."""
    try:
        msg = json.loads(line)
    except (ValueError, UnicodeDecodeError) as exc:
        raise ProtocolError(f"malformed request: not JSON ({exc.__class__.__name__})") from None
    if not isinstance(msg, dict):
        raise ProtocolError("malformed request: not a JSON object")
    if msg.get("v") != PROTOCOL:
        raise ProtocolError(f"unsupported protocol version {msg.get('v')!r}, expected {PROTOCOL}")
    if not isinstance(msg.get("cmd"), str):
        raise ProtocolError("malformed request: 'cmd' must be a string")
    if not isinstance(msg.get("args", {}), dict):
        raise ProtocolError("malformed request: 'args' must be an object")
    return msg


def reply_ok(rid: Any, result: Any, version: str = __version__) -> bytes:
    return encode({"v": PROTOCOL, "id": rid, "ok": True, "result": result, "daemon": version})


def reply_error(rid: Any, exc: TsmError, version: str = __version__) -> bytes:
    return encode({"v": PROTOCOL, "id": rid, "ok": False, "error": exc.to_reply(), "daemon": version})
