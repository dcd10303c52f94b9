"""The keys of a stack file's app, derived from the grammar of ``tsm start``.

Every option of ``tsm start`` is a key under its long name with dashes as underscores
(``--kill-timeout`` is ``kill_timeout``, ``--env-file`` is ``env_file``); a ``--no-X`` switch is
the key ``X`` with the opposite value (``autorestart = false``); a repeatable option takes a list
(``env`` also a table). The values then go through :func:`commands.spec_from_args`, so a key is
checked exactly as its option is, and an option added to ``tsm start`` is a key here at once.
Numbers are seconds and bytes (TOML values); a duration in a string needs a unit (``"3s"``).
"""

from __future__ import annotations

import argparse
from collections.abc import Mapping
from functools import lru_cache
TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Any

from ..core.errors import UsageError
from ..core.spec import DURATION_OPTIONS, LaunchSpec
from ..core.units import parse_bool, parse_duration

__all__ = ["build_from_options", "option_keys", "spec_from_options", "start_parser"]

#: options of `tsm start` that are not app keys: the name is the app's table, the cell's language
#: belongs to %%tsm
_NOT_KEYS = frozenset({argparse.SUPPRESS, "command", "name", "lang"})


@lru_cache(maxsize=1)
def start_parser() -> argparse.ArgumentParser:
    """The parser of ``tsm start`` (from :func:`commands.build_parser`)."""
    from .commands import build_parser

    parser = build_parser(only="start")
    sub = next(a for a in parser._actions if isinstance(a, argparse._SubParsersAction))
    return sub.choices["start"]


@lru_cache(maxsize=1)
def option_keys() -> dict[str, tuple[argparse.Action, bool]]:
    """app key -> (the ``tsm start`` option's action, whether the key's value is inverted)."""
    keys: dict[str, tuple[argparse.Action, bool]] = {}
    actions = [a for a in start_parser()._actions if a.option_strings and a.dest not in _NOT_KEYS]
    dests = {a.dest for a in actions}
    for action in actions:
        # `--no-autorestart` is the key `autorestart = false`; but `--no-port` beside `--port`
        # keeps its own name (`no_port = true`), or it would shadow the port
        if (isinstance(action, argparse._StoreTrueAction) and action.dest.startswith("no_")
                and action.dest[3:] not in dests):
            keys[action.dest[3:]] = (action, True)
        else:
            keys[action.dest] = (action, False)
    return keys


def _known() -> str:
    return ", ".join(["cmd", "argv", "depends_on", "ready", "ready_timeout", "instances", *sorted(option_keys())])


def _value(key: str, action: argparse.Action, inverted: bool, value: Any) -> Any:
    """The value the parsed option would have, from a TOML value."""
    flag = action.option_strings[-1]
    if action.nargs == 0:  # a switch
        on = parse_bool(value, key)
        return not on if inverted else on
    if isinstance(action, argparse._AppendAction) or action.nargs in ("*", "+"):
        if isinstance(value, Mapping):
            value = [f"{k}={v}" for k, v in value.items()]
        elif isinstance(value, str):
            value = [value]
        if not isinstance(value, list) or not all(isinstance(v, (str, int, float)) and not isinstance(v, bool) for v in value):
            raise UsageError(f"{key}: expected a list of strings", key=key)
        return [str(v) for v in value]
    if isinstance(value, (bool, list, dict)):
        raise UsageError(f"{key}: expected a value for {flag}, got {value!r}", key=key)
    if key in DURATION_OPTIONS and isinstance(value, str):
        return parse_duration(value, key, bare=None)  # "3000" is refused: 3000 what?
    if isinstance(value, str) and action.type is not None:
        try:
            value = action.type(value)
        except (argparse.ArgumentTypeError, ValueError, TypeError) as exc:
            raise UsageError(f"{key}: {exc}", key=key) from None
    if action.choices is not None and value not in action.choices:
        raise UsageError(f"{key}: {value!r} is not one of {', '.join(map(str, action.choices))}", key=key)
    return value


def _blame(message: str, given: list[str]) -> str | None:
    """Which key a message from ``build_spec`` is about (it names the option or the value)."""
    keys = option_keys()
    for key in given:
        if key in keys and any(s in message for s in keys[key][0].option_strings if s.startswith("--")):
            return key
    lowered = message.lower()
    for key in given:
        if key.replace("_", " ") in lowered or key in lowered:
            return key
    if "command" in lowered or "cannot run" in lowered or "argv" in lowered:
        return "argv" if "argv" in given else "cmd"
    return None


def _namespace(options: Mapping[str, Any], name: str | None) -> argparse.Namespace:
    """The parsed ``tsm start`` that ``options`` stand for. Raises UsageError with a ``key``."""
    keys = option_keys()
    ns = argparse.Namespace(**{a.dest: (list(a.default) if isinstance(a.default, list) else a.default)
                               for a in start_parser()._actions if a.dest != argparse.SUPPRESS})
    ns.cmd, ns.home, ns.name = "start", None, name
    for key, value in options.items():
        if key == "cmd":
            if not isinstance(value, str) or not value.strip():
                raise UsageError("cmd: must be a non-empty string (or give argv = [...])", key=key)
            ns.command, ns.argv_mode = [value], False
        elif key == "argv":
            if not isinstance(value, list) or not value or not all(isinstance(a, str) for a in value):
                raise UsageError("argv: must be a non-empty list of strings", key=key)
            ns.command, ns.argv_mode = list(value), True
        elif key in keys:
            action, inverted = keys[key]
            try:
                setattr(ns, action.dest, _value(key, action, inverted, value))
            except UsageError as exc:
                raise UsageError(exc.message, key=key) from None
        else:
            import difflib

            close = difflib.get_close_matches(key, [*keys, "cmd", "argv"], n=1)
            hint = f"did you mean {close[0]!r}? " if close else ""
            raise UsageError(f"unknown option: {hint}(known: {_known()})", key=key)
    return ns


def spec_from_options(options: Mapping[str, Any], *, base_cwd: str, name: str | None = None,
                      env: dict[str, str] | None = None) -> LaunchSpec:
    """The :class:`LaunchSpec` of an app's ``options`` (``cmd`` or ``argv`` plus ``tsm start``
    keys); ``cwd`` and ``env_file`` are relative to ``base_cwd``. Raises UsageError with a ``key``
    field naming the key at fault; an unknown key is refused with the list of known ones."""
    from . import commands

    ns = _namespace(options, name)
    try:
        return commands.spec_from_args(ns, cwd=base_cwd, env=env)
    except UsageError as exc:
        key = exc.fields.get("key") or _blame(exc.message, list(options))
        raise UsageError(exc.message, key=key) from None


def build_from_options(options: Mapping[str, Any], *, name: str | None = None) -> dict[str, Any]:
    """The ``build_spec`` keywords of an app that runs on another host (what ``tsm -H HOST
    start`` sends): every key checked as for a local app, except what depends on the machine
    (the cwd, the env file, the program and interpreter), which the host checks when it builds
    the spec. Raises UsageError with a ``key`` field."""
    from . import commands

    build = commands.spec_kwargs(_namespace(options, name))
    if build.get("port") is not None:
        from ..core.cmdline import parse_port

        try:
            parse_port(build["port"])
        except UsageError as exc:
            raise UsageError(exc.message, key="port") from None
    return build
