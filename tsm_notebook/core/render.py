"""Text renderers: the only place raw values (seconds, bytes) become ``12s`` or ``34.5 MB``."""

from __future__ import annotations

TYPE_CHECKING = False  # typing costs the command line ~8 ms to import; annotations are postponed
if TYPE_CHECKING:
    from typing import Any, Iterable, Sequence


def duration(seconds: float | None) -> str:
    """``45s``, ``12m``, ``3h``, ``2d`` (PM2's style); ``-`` for unknown."""
    if seconds is None:
        return "-"
    s = int(seconds)
    if s < 60:
        return f"{s}s"
    if s < 3600:
        return f"{s // 60}m"
    if s < 86400:
        return f"{s // 3600}h"
    return f"{s // 86400}d"


def size(n: int | None) -> str:
    """Bytes as ``512 B``, ``34.5 MB`` (powers of 1024); ``-`` for unknown."""
    if n is None:
        return "-"
    value = float(n)
    for unit in ("B", "KB", "MB", "GB"):
        if value < 1024 or unit == "GB":
            return f"{value:.0f} {unit}" if unit == "B" else f"{value:.1f} {unit}"
        value /= 1024
    return f"{value:.1f} TB"


def percent(p: float | None) -> str:
    return "-" if p is None else f"{p:.1f}%"


def when(t: float | None) -> str:
    """Epoch seconds as local ISO time to the second."""
    if t is None:
        return "-"
    import datetime as _dt  # only describe pays for it

    return _dt.datetime.fromtimestamp(t).isoformat(sep=" ", timespec="seconds")


def table(headers: Sequence[str], rows: Iterable[Sequence[Any]]) -> str:
    """A plain aligned table with a dashed rule under the headers, like the seed's ``tsm ls``."""
    rows = [list(map(str, r)) for r in rows]
    widths = [max(len(h), max(map(len, col), default=0)) for h, col in zip(headers, zip(*rows) if rows else [()] * len(headers))]
    lines = ["  ".join(map(str.ljust, headers, widths)).rstrip(), "  ".join("-" * w for w in widths)]
    lines += ["  ".join(map(str.ljust, r, widths)).rstrip() for r in rows]  # map: a few thousand rows stay fast
    return "\n".join(lines)


LS_HEADERS = ("ID", "Name", "Env", "PID", "Port", "Status", "Uptime", "CPU", "Mem", "Restarts")
#: the fields of a listing row the table shows: ``tsm ls`` asks the daemon for these alone
LS_FIELDS = ("tsm_id", "name", "env_file", "pid", "port", "status", "uptime", "cpu", "memory", "restarts")


def ls_row(r: dict[str, Any]) -> list[Any]:
    env = r.get("env_file") or ""
    return [
        r["tsm_id"], r["name"], env.rsplit("/", 1)[-1] if env else "-", r.get("pid") or "-",
        r.get("port") or "-", r["status"], duration(r.get("uptime")), percent(r.get("cpu")),
        size(r.get("memory")), r.get("restarts", 0),
    ]


def ls(rows: list[dict[str, Any]]) -> str:
    """The ``tsm ls`` table."""
    return table(LS_HEADERS, [ls_row(r) for r in rows])


def describe(r: dict[str, Any]) -> str:
    """A ``tsm describe`` card as aligned ``key  value`` lines."""
    items = [
        ("name", r["name"]), ("tsm_id", r["tsm_id"]), ("status", r["status"]), ("pid", r.get("pid") or "-"),
        ("port", r.get("port") or "-"), ("listening", ", ".join(map(str, r.get("listen_ports") or [])) or "-"),
        ("command", r["command"]), ("argv", " ".join(r.get("argv") or [])), ("cwd", r["cwd"]),
        ("type", r.get("type")), ("interpreter", r.get("interpreter") or "-"), ("env file", r.get("env_file") or "-"),
        ("env keys", ", ".join(r.get("env_keys") or []) or "-"),
        ("uptime", duration(r.get("uptime"))), ("started", when(r.get("start_time"))),
        ("created", when(r.get("created"))), ("restarts", r.get("restarts")),
        ("unstable restarts", r.get("unstable_restarts")),
        ("last exit", exit_text(r)), ("cpu", percent(r.get("cpu"))), ("memory", size(r.get("memory"))),
        ("autorestart", r.get("autorestart")), ("max restarts", r.get("max_restarts")),
        ("min uptime", f"{r.get('min_uptime')}s"), ("restart delay", f"{r.get('restart_delay')}s"),
        ("exp backoff", f"{r['exp_backoff']}s" if r.get("exp_backoff") else "-"),
        ("max memory", size(r.get("max_memory")) if r.get("max_memory") else "-"),
        ("kill timeout", f"{r.get('kill_timeout')}s"), ("stop signal", r.get("stop_signal")),
        ("out log", r.get("out_log")), ("err log", r.get("err_log")),
    ]
    spec = r.get("spec") or {}
    for key in ("watch", "watch_ignore", "cron_restart", "cron", "on_crash", "on_errored", "on_restart",
                "on_memory_limit", "on_online", "on_stop"):  # the triggers, only those set
        value = spec.get(key)
        if value:
            items.append((key.replace("_", " "), ", ".join(value) if isinstance(value, list) else value))
    for key, value in (r.get("problems") or {}).items():
        items.append((f"problem ({key})", value))
    width = max(len(k) for k, _ in items)
    return "\n".join(f"{k.ljust(width)}  {v}" for k, v in items)


def exit_text(r: dict[str, Any]) -> str:
    """How a process last ended: ``code 1``, ``SIGKILL`` or ``-``."""
    if r.get("exit_signal") is not None:
        import signal

        try:
            return signal.Signals(r["exit_signal"]).name
        except ValueError:
            return f"signal {r['exit_signal']}"
    if r.get("exit_code") is not None:
        return f"code {r['exit_code']}"
    return "-"


#: the start line's verb for each ``action`` a smart start reports
_START_VERBS = {
    "unchanged": "Already running (same spec)",
    "restarted with the new spec": "Restarted with the new spec",
    "started with the new spec": "Started with the new spec",
}


def started(r: dict[str, Any]) -> str:
    """The seed's start line; a re-run says what it did (``Already running (same spec): ...``)."""
    port = r.get("port")
    verb = _START_VERBS.get(r.get("action") or "", "Started")
    return f"{verb}: {r['name']} (TSM ID: {r['tsm_id']}, PID: {r.get('pid') or '-'}, Port: {port if port is not None else '-'})"


def start_note(r: dict[str, Any]) -> str | None:
    """What a re-run start did, in words, or None for a plain start."""
    action = r.get("action")
    if action in (None, "started"):
        return None
    note = _START_VERBS.get(action, action)
    if r.get("replaced") and r["replaced"] != r.get("name"):
        note += f" (replaces {r['replaced']})"
    return note


_ANSI_RE = None


def strip_ansi(text: str) -> str:
    """``text`` without ANSI escape sequences (colours, cursor moves, titles)."""
    global _ANSI_RE
    if "\x1b" not in text:
        return text
    if _ANSI_RE is None:
        import re

        _ANSI_RE = re.compile(r"\x1b\[[0-9;:?<=>]*[ -/]*[@-~]|\x1b\][^\x07\x1b]*(?:\x07|\x1b\\)?|\x1b[@-_]?")
    return _ANSI_RE.sub("", text)


#: ANSI colours of process names in a mixed log stream (`tsm logs -f` of several processes)
NAME_ANSI = ("34", "32", "35", "33", "36", "31", "94", "92", "95", "93", "96", "91")


def name_label(name: str, colour: bool) -> str:
    """``name`` in a stable ANSI colour (the same name, the same colour) when ``colour``."""
    if not colour:
        return name
    import zlib

    return f"\x1b[{NAME_ANSI[zlib.crc32(name.encode()) % len(NAME_ANSI)]}m{name}\x1b[0m"

