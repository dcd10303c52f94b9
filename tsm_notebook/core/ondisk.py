"""Checks for what is read back from disk or the wire: a spec dict, ``meta.json``, ``env.json``
and ``dump.json`` entries get the same checks as user input, so one malformed file is refused
with its field named instead of failing deep in the daemon (or at the kernel's ``execve``).

Every check raises :class:`~tsm_notebook.core.errors.UsageError` with one line naming the field.
"""

from __future__ import annotations

import math
import signal

from .errors import UsageError
from .paths import check_name

TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Any

TYPES = ("python", "node", "bash", "other")


def _bad(where: str, field: str, why: str) -> UsageError:
    return UsageError(f"invalid {where}: {field} {why}")


def text(value: Any, field: str, where: str = "launch spec", *, empty: bool = True) -> str:
    """A string without NUL bytes (the kernel cannot pass one)."""
    if not isinstance(value, str):
        raise _bad(where, field, f"must be a string, got {type(value).__name__}")
    if "\0" in value:
        raise _bad(where, field, "holds a NUL byte")
    if not empty and not value:
        raise _bad(where, field, "is empty")
    return value


def flag(value: Any, field: str, where: str = "launch spec", *, none: bool = False) -> bool | None:
    if value is None and none:
        return None
    if not isinstance(value, bool):
        raise _bad(where, field, f"must be true or false, got {value!r:.40}")
    return value


def number(value: Any, field: str, where: str = "launch spec", *, none: bool = False, integer: bool = False,
           positive: bool = False) -> float | int | None:
    """A finite non-negative number (an int with ``integer``; more than 0 with ``positive``)."""
    if value is None and none:
        return None
    ok = isinstance(value, int) if integer else isinstance(value, (int, float))
    if isinstance(value, bool) or not ok or (isinstance(value, float) and not math.isfinite(value)):
        kind = "a whole number" if integer else "a number"
        raise _bad(where, field, f"must be {kind}, got {value!r:.40}")
    if value < 0 or (positive and value == 0):
        raise _bad(where, field, f"must be {'more than' if positive else 'at least'} 0, got {value!r}")
    return value


def port(value: Any, field: str = "port", where: str = "launch spec") -> int | None:
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int) or not 1 <= value <= 65535:
        raise _bad(where, field, f"must be a port 1-65535, got {value!r:.40}")
    return value


def env_map(value: Any, field: str = "env", where: str = "launch spec") -> dict[str, str]:
    """A mapping of strings to strings, no NUL, no ``=`` in a key."""
    if not isinstance(value, dict):
        raise _bad(where, field, f"must be an object of strings, got {type(value).__name__}")
    for k, v in value.items():
        if not isinstance(k, str) or not k or "=" in k or "\0" in k:
            raise _bad(where, field, f"has an invalid key {k!r:.40}")
        if not isinstance(v, str):
            raise _bad(where, f"{field}[{k}]", f"must be a string, got {type(v).__name__}")
        if "\0" in v:
            raise _bad(where, f"{field}[{k}]", "holds a NUL byte")
    return dict(value)


def check_spec(values: dict[str, Any]) -> dict[str, Any]:
    """Check every field of a spec dict (the ones present); return it unchanged."""
    w = "launch spec"
    v = values
    text(v["command"], "command", w)
    argv = v["argv"]
    if not isinstance(argv, list) or not argv:
        raise _bad(w, "argv", "must be a non-empty list of strings")
    for i, a in enumerate(argv):
        text(a, f"argv[{i}]", w, empty=i > 0)
    flag(v["shell"], "shell", w)
    if v["name"] is not None:
        try:
            check_name(text(v["name"], "name", w))
        except UsageError as exc:
            raise _bad(w, "name", f"is not valid ({exc.message})") from None
    flag(v["name_given"], "name_given", w)
    port(v["port"], "port", w)
    flag(v["port_search"], "port_search", w)
    cwd = text(v["cwd"], "cwd", w, empty=False)
    if not cwd.startswith("/"):
        raise _bad(w, "cwd", f"must be an absolute path, got {cwd!r:.60}")
    env_map(v["env"], "env", w)
    text(v["env_file"], "env_file", w)
    text(v["interpreter"], "interpreter", w)
    if v["type"] not in TYPES:
        raise _bad(w, "type", f"must be one of {', '.join(TYPES)}, got {v['type']!r:.40}")
    if "wait_port" in v and not isinstance(v["wait_port"], bool):  # True (60 s), or the limit in seconds
        number(v["wait_port"], "wait_port", w, positive=True)
    for key, kind in (("autorestart", "flag"), ("time", "flag"), ("log_compress", "flag?"),
                      ("max_restarts", "int"), ("min_uptime", "num"), ("restart_delay", "num"),
                      ("exp_backoff", "pos?"), ("max_memory", "posint?"), ("kill_timeout", "pos"),
                      ("log_max_size", "posint?"), ("log_retain", "int?")):
        if key not in v:
            continue
        x = v[key]
        if kind.startswith("flag"):
            flag(x, key, w, none=kind.endswith("?"))
        else:
            number(x, key, w, none=kind.endswith("?"), integer="int" in kind, positive=kind.startswith("pos"))
    if "stop_signal" in v:
        name = v["stop_signal"]
        if not isinstance(name, str) or name not in signal.Signals.__members__:
            raise _bad(w, "stop_signal", f"must be a signal name like SIGTERM, got {name!r:.40}")
    return values


def check_meta(meta: Any, dirname: str) -> dict[str, Any]:
    """The fields of ``meta.json`` recovery relies on; return the dict."""
    w = "meta.json"
    if not isinstance(meta, dict):
        raise UsageError(f"invalid {w}: not a JSON object")
    if meta.get("name") != dirname:
        raise _bad(w, "name", f"{meta.get('name')!r:.40} does not match its directory {dirname!r}")
    number(meta.get("tsm_id"), "tsm_id", w, integer=True)
    if meta["tsm_id"] > 10**9:
        raise _bad(w, "tsm_id", f"is out of range: {meta['tsm_id']}")
    for key in ("restarts", "unstable_restarts"):
        number(meta.get(key, 0) or 0, key, w, integer=True)
    for key in ("created", "start_time", "pid_create_time"):
        number(meta.get(key), key, w, none=True)
    for key in ("exit_code", "exit_signal", "pid"):
        x = meta.get(key)
        if x is not None and (isinstance(x, bool) or not isinstance(x, int)):
            raise _bad(w, key, f"must be a whole number or null, got {x!r:.40}")
    port(meta.get("port"), "port", w)
    if meta.get("status") is not None and not isinstance(meta.get("status"), str):
        raise _bad(w, "status", "must be a string")
    if meta.get("run_token") is not None:
        text(meta["run_token"], "run_token", w)
    if meta.get("interpreter") is not None:
        text(meta["interpreter"], "interpreter", w)
    return meta
