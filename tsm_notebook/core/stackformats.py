"""The formats a stack can be written in, each read into the same raw tables that
:mod:`tsm_notebook.core.stackfile` validates, with a way to find the line of a key:

* ``tsm.toml`` (the standard library's TOML reader);
* a ``Procfile``, as foreman and honcho read it: ``name: command`` lines; ``PORT`` for the apps
  whose command uses it starts at ``$PORT`` (default 5000) and goes up by 100 per app; a ``.env``
  beside it is every app's env file; a ``release`` app is a one-shot job the others wait for;
* PM2's JSON ecosystem (``{"apps": [{"name", "script", "args", "env", "env_production", ...}]}``),
  whose numbers of milliseconds keep their meaning.

:func:`to_toml` writes raw tables back as a ``tsm.toml`` (``tsm convert``).
"""

from __future__ import annotations

import json
import re
import shlex
from collections.abc import Mapping
from pathlib import Path
TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Any

try:
    import tomllib
except ModuleNotFoundError:  # Python 3.10
    import tomli as tomllib  # type: ignore[no-redef]

from .errors import UsageError

__all__ = ["TomlLines", "read_toml", "read_procfile", "read_ecosystem", "to_toml"]


class TomlLines:
    """Finds the line of ``[app]`` or of ``key`` in an app's table (best effort; None if unknown)."""

    def __init__(self, text: str) -> None:
        self.lines = text.splitlines()

    def _header(self, table: tuple[str, ...]) -> int | None:
        dotted = r"\s*\.\s*".join(rf'"?{re.escape(t)}"?' for t in table)
        header = re.compile(rf"^\s*\[\s*{dotted}\s*\]")
        inline = re.compile(rf'^\s*"?{re.escape(table[-1])}"?\s*=') if len(table) == 1 else None
        for i, line in enumerate(self.lines):
            if header.match(line) or (inline is not None and inline.match(line)):
                return i
        return None

    def find(self, where: tuple[str, ...]) -> int | None:
        """1-based line of ``where`` (``(app,)``, ``(app, key)``, ``(env, name, app, key)``...)."""
        for cut in range(len(where), 0, -1):
            start = self._header(where[:cut])
            if start is None:
                continue
            if cut == len(where):
                return start + 1
            name = re.escape(where[cut])
            key = re.compile(rf'^\s*"?{name}"?\s*=|[{{,]\s*"?{name}"?\s*=')
            for i in range(start, len(self.lines)):
                if i > start and self.lines[i].lstrip().startswith("["):
                    break
                if key.search(self.lines[i]):
                    return i + 1
            return start + 1
        return None


class _KnownLines:
    """Lines recorded while reading (Procfile, JSON): an app's line for any of its keys."""

    def __init__(self, lines: dict[str, int]) -> None:
        self.known = lines

    def find(self, where: tuple[str, ...]) -> int | None:
        return self.known.get(where[0]) if where else None


def read_toml(text: str, shown: str) -> dict[str, Any]:
    """The tables of a ``tsm.toml``; a syntax error names the file and the line."""
    try:
        return tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        msg = str(exc)
        m = re.search(r"\(at line (\d+), column \d+\)", msg)
        line = m.group(1) if m else None
        if line is None and "at end of document" in msg:  # e.g. an unclosed [ on the last line
            line = str(len(text.rstrip("\n").splitlines()) or 1)
        where = f"{shown}:{line}" if line else shown
        raise UsageError(f"{where}: invalid TOML: {re.sub(r' *[(]at (line|end of document).*[)]', '', msg)}") from None


_PROCFILE_RE = re.compile(r"^([A-Za-z0-9_-]+)\s*:\s*(.*)$")


def read_procfile(text: str, shown: str, environ: Mapping[str, str], folder: str) -> tuple[dict[str, Any], _KnownLines]:
    """A Procfile's apps as raw tables (see the module's docstring for the conventions)."""
    apps: dict[str, Any] = {}
    lines: dict[str, int] = {}
    for n, line in enumerate(text.splitlines(), 1):
        if not line.strip() or line.lstrip().startswith("#"):
            continue
        m = _PROCFILE_RE.match(line.strip())
        if m is None or not m.group(2).strip():
            raise UsageError(f"{shown}:{n}: expected 'name: command', got {line.strip()!r}")
        name = m.group(1)
        if name in apps:
            raise UsageError(f"{shown}:{n}: {name}: defined twice (first on line {lines[name]})")
        apps[name] = {"cmd": m.group(2).strip()}
        lines[name] = n
    try:
        base = int(environ.get("PORT", "5000"))
    except ValueError:
        raise UsageError(f"PORT {environ['PORT']!r} is not a port (the base port of a Procfile)") from None
    env_file = Path(folder) / ".env"
    for i, (name, table) in enumerate(apps.items()):
        if re.search(r"\$\{?PORT\b", table["cmd"]):
            table["port"] = f"{base + 100 * i}+"
        if env_file.is_file():
            table["env_file"] = ".env"
        if name == "release":
            table["ready"] = "exit"
        elif "release" in apps:
            table["depends_on"] = ["release"]
    return apps, _KnownLines(lines)


#: PM2 ecosystem keys -> tsm.toml keys; numbers of these are milliseconds in PM2
_PM2_KEYS = {
    "cwd": "cwd", "env": "env", "instances": "instances", "autorestart": "autorestart",
    "max_restarts": "max_restarts", "min_uptime": "min_uptime", "restart_delay": "restart_delay",
    "exp_backoff_restart_delay": "exp_backoff", "max_memory_restart": "max_memory",
    "kill_timeout": "kill_timeout", "interpreter": "interpreter", "time": "time", "port": "port",
    "depends_on": "depends_on", "ready": "ready", "ready_timeout": "ready_timeout", "host": "host",
}  # fmt: skip
_PM2_MS = frozenset({"min_uptime", "restart_delay", "exp_backoff_restart_delay", "kill_timeout"})
_PM2_IGNORED = frozenset({"exec_mode", "namespace", "version"})  # cluster mode has no meaning here


def read_ecosystem(text: str, shown: str) -> tuple[dict[str, Any], _KnownLines]:
    """A PM2 JSON ecosystem's apps as raw tables; ``env_NAME`` becomes ``[env.NAME.app]``."""
    try:
        data = json.loads(text)
    except ValueError as exc:
        line = getattr(exc, "lineno", None)
        raise UsageError(f"{shown}:{line}: invalid JSON: {getattr(exc, 'msg', exc)}" if line else f"{shown}: invalid JSON") from None
    items = data.get("apps") if isinstance(data, dict) else data
    if not isinstance(items, list):
        raise UsageError(f"{shown}: expected {{\"apps\": [...]}}")
    raw: dict[str, Any] = {}
    envs: dict[str, dict[str, Any]] = {}
    lines: dict[str, int] = {}
    text_lines = text.splitlines()
    for i, item in enumerate(items):
        if not isinstance(item, dict) or not isinstance(item.get("name"), str) or not isinstance(item.get("script"), str):
            raise UsageError(f"{shown}: apps[{i}]: needs a \"name\" and a \"script\"")
        name = item["name"]
        lines[name] = next((n for n, l in enumerate(text_lines, 1) if re.search(rf'"name"\s*:\s*"{re.escape(name)}"', l)), None)  # type: ignore[assignment]
        args = item.get("args", [])
        argv = shlex.split(args) if isinstance(args, str) else list(args)
        table: dict[str, Any] = {"cmd": shlex.join([item["script"], *map(str, argv)]) if argv else item["script"]}
        for key, value in item.items():
            if key in ("name", "script", "args") or key in _PM2_IGNORED:
                continue
            if key.startswith("env_") and isinstance(value, dict):
                envs.setdefault(key[4:], {})[name] = {"env": {k: str(v) for k, v in value.items()}}
                continue
            if key not in _PM2_KEYS:
                where = f"{shown}:{lines[name]}" if lines.get(name) else shown
                raise UsageError(f"{where}: {name}.{key}: unknown option (tsm reads: {', '.join(sorted(_PM2_KEYS))})")
            if key in _PM2_MS and isinstance(value, (int, float)) and not isinstance(value, bool):
                value = f"{value}ms"
            if key == "env" and isinstance(value, dict):
                value = {k: str(v) for k, v in value.items()}
            table[_PM2_KEYS[key]] = value
        if name in raw:
            raise UsageError(f"{shown}: {name}: defined twice")
        raw[name] = table
    if envs:
        raw["env"] = envs
    return raw, _KnownLines(lines)


# ---------------------------------------------------------------------- writing


def _toml_value(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, (int, float)):
        return repr(value)
    if isinstance(value, str):
        return json.dumps(value)  # a JSON string is a valid TOML basic string
    if isinstance(value, list):
        return "[" + ", ".join(_toml_value(v) for v in value) + "]"
    if isinstance(value, dict):
        return "{ " + ", ".join(f"{_toml_key(k)} = {_toml_value(v)}" for k, v in value.items()) + " }"
    raise UsageError(f"cannot write {value!r} as TOML")


def _toml_key(key: str) -> str:
    return key if re.fullmatch(r"[A-Za-z0-9_-]+", key) else json.dumps(key)


def to_toml(raw: dict[str, Any], name: str | None = None, source: str | None = None) -> str:
    """A ``tsm.toml`` holding ``raw``'s apps (and environments), ``name`` as the stack's name."""
    out = [f"# converted from {source}" if source else "# a tsm stack: tsm up", ""]
    if name:
        out += [f"name = {_toml_value(name)}", ""]
    for app, table in raw.items():
        if app in ("env", "name"):
            continue
        out.append(f"[{_toml_key(app)}]")
        out += [f"{_toml_key(k)} = {_toml_value(v)}" for k, v in table.items()]
        out.append("")
    for env_name, apps in (raw.get("env") or {}).items():
        for app, table in apps.items():
            out.append(f"[env.{_toml_key(env_name)}.{_toml_key(app)}]")
            out += [f"{_toml_key(k)} = {_toml_value(v)}" for k, v in table.items()]
            out.append("")
    return "\n".join(out)
