"""The daemon's requests for a stack's bring-up: build a spec on this machine, and judge an app's
readiness here, where it runs.

A stack can span hosts (``host = "gpu"`` in a ``tsm.toml``); the client that brings it up may be
on another machine, so whatever depends on the machine is done by the daemon of the app's host:
the spec is built with this machine's paths, PATH and environment (``build_spec``), and each
readiness probe (a port accepting, an HTTP answer, a new log line) is made from here
(``ready_probe``), never from the client's machine. The client polls the request over whichever
transport it has (the Unix socket, or the SSH channel).
"""

from __future__ import annotations

import asyncio
import os
import re
from pathlib import Path
from typing import TYPE_CHECKING, Any

from ..core import states
from ..core.errors import ProtocolError, UsageError
from .handlers import _arg, command

if TYPE_CHECKING:
    from .daemon import Daemon

__all__ = ["build_here", "log_sizes"]

PORT_TIMEOUT = 0.5  # seconds a port probe waits for the connection
HTTP_TIMEOUT = 2.0  # seconds an HTTP probe waits for the answer


def build_here(build: Any, request: str = "build_spec") -> tuple[Any, dict[str, str]]:
    """(the :class:`LaunchSpec` of ``build`` -- ``build_spec`` keywords as typed -- built on this
    machine, the environment a child started from here inherits): ``cwd`` and ``env_file``
    relative to this user's home directory, the program found on the daemon's PATH, the
    daemon's environment (the one its ssh session gave it). Raises UsageError, ProtocolError."""
    import inspect

    from ..core.spec import build_spec

    keys = set(inspect.signature(build_spec).parameters) - {"base_cwd", "path_env"}
    if not isinstance(build, dict) or not set(build) <= keys:
        raise ProtocolError(f"{request} needs 'build' with keys among {', '.join(sorted(keys))}")
    env = {k: v for k, v in os.environ.items() if k not in ("TSM_NAME", "TSM_ID", "TSM_RUN", "TSM_DAEMON_VERSION")}
    try:
        spec = build_spec(**build, base_cwd=os.path.expanduser("~"), path_env=env.get("PATH"))
    except TypeError as exc:
        raise ProtocolError(f"malformed build: {exc}") from None
    return spec, env


@command("build_spec")
async def cmd_build_spec(d: Daemon, args: dict) -> dict:
    """args: {build: build_spec keywords as typed} -> {spec: LaunchSpec dict, env: environment}.

    What ``start_build`` would start, built here and not started: a stack's bring-up compares it
    with the spec the process has, then sends ``start`` with both. Raises UsageError (a path or a
    program this machine does not have, a bad value)."""
    spec, env = build_here(_arg(args, "build", dict))
    return {"spec": spec.to_dict(), "env": env}


def log_sizes(directory: Path) -> dict[str, int]:
    """The sizes of ``current.out`` and ``current.err`` in ``directory`` (0 when missing)."""
    sizes = {}
    for stream in ("out", "err"):
        try:
            sizes[stream] = (directory / f"current.{stream}").stat().st_size
        except OSError:
            sizes[stream] = 0
    return sizes


def _log_match(directory: Path, pattern: str, offsets: dict[str, Any]) -> bool:
    regex = re.compile(pattern)
    for stream in ("out", "err"):
        try:
            with open(directory / f"current.{stream}", "rb") as f:
                start = offsets.get(stream, 0)
                start = start if isinstance(start, int) and not isinstance(start, bool) and start >= 0 else 0
                if f.seek(0, 2) < start:
                    start = 0  # rotated since: the new file is all new
                f.seek(start)
                data = f.read()
        except OSError:
            continue
        if any(regex.search(line) for line in data.decode("utf-8", "replace").splitlines()):
            return True
    return False


def _http(url: str) -> tuple[bool, str]:
    """(whether a GET of ``url`` answered 2xx or 3xx, what it answered). No proxy: the app is on
    this machine."""
    import urllib.error
    import urllib.request

    opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))
    try:
        with opener.open(url, timeout=HTTP_TIMEOUT) as resp:
            return 200 <= resp.status < 400, f"{resp.status} {resp.reason}"
    except urllib.error.HTTPError as exc:
        return 300 <= exc.code < 400, f"{exc.code} {exc.reason}"
    except urllib.error.URLError as exc:
        return False, str(getattr(exc.reason, "strerror", None) or exc.reason)
    except (OSError, ValueError) as exc:
        return False, str(getattr(exc, "strerror", None) or exc)


async def _accepts(port: Any) -> bool:
    if not isinstance(port, int) or isinstance(port, bool):
        return False
    try:
        _, writer = await asyncio.wait_for(asyncio.open_connection("127.0.0.1", port), PORT_TIMEOUT)
    except (OSError, asyncio.TimeoutError):
        return False
    writer.close()
    try:
        await writer.wait_closed()
    except OSError:
        pass
    return True


@command("log_sizes")
async def cmd_log_sizes(d: Daemon, args: dict) -> dict:
    """args: {target: one process} -> {out: bytes, err: bytes}: where a log check starts (a line
    written after this counts)."""
    ms = d.sup.resolve(args.get("target"))
    return log_sizes(ms[0].dir)


@command("ready_probe")
async def cmd_ready_probe(d: Daemon, args: dict) -> dict:
    """args: {target: one process, ready: "port" | "online" | "exit" | an http(s) URL | {log: regex},
    offsets: {out, err} (a log check reads from there), probe: bool (default true; false for an
    HTTP check not due yet)} -> {row: listing row, ok: bool, answer: str}.

    One readiness probe, made on this machine: the port on 127.0.0.1 here, the URL (``$PORT`` is
    the process's port) from here, the process's logs here. ``ok`` is whether the probe passed
    (only ever while the process is online); ``answer`` says what was seen (an HTTP status, the
    port, the pattern). The client decides when to give up."""
    ms = d.sup.resolve(args.get("target"))
    if len(ms) != 1:
        raise UsageError("a readiness probe is of one process")
    m, ready = ms[0], args.get("ready")
    offsets = _arg(args, "offsets", dict, {})
    row = d.row(m)
    if m.status != states.ONLINE or not args.get("probe", True):
        return {"row": row, "ok": False, "answer": ""}
    port = row.get("port")
    loop = asyncio.get_running_loop()
    if ready == "online":
        return {"row": row, "ok": True, "answer": "online"}
    if ready == "port":
        return {"row": row, "ok": await _accepts(port), "answer": f"port {port}"}
    if isinstance(ready, str) and ready.startswith(("http://", "https://")):
        url = re.sub(r"\$\{PORT\}|\$PORT\b", str(port), ready)
        ok, answer = await loop.run_in_executor(None, _http, url)
        return {"row": row, "ok": ok, "answer": answer, "url": url}
    if isinstance(ready, dict) and isinstance(ready.get("log"), str):
        try:
            re.compile(ready["log"])
        except re.error as exc:
            raise UsageError(f"invalid regular expression {ready['log']!r}: {exc}") from None
        ok = await loop.run_in_executor(None, _log_match, m.dir, ready["log"], offsets)
        return {"row": row, "ok": ok, "answer": ready["log"]}
    if ready == "exit":
        return {"row": row, "ok": False, "answer": ""}  # judged from the row: stopped with code 0
    raise ProtocolError(f"unknown readiness {ready!r}")
