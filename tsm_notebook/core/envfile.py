"""Env files and ``-e KEY=VALUE`` items, parsed into dicts: never executed by a shell."""

from __future__ import annotations

import os
import re
from collections.abc import Iterable, Mapping

from .errors import UsageError

__all__ = ["parse_env_assignments", "parse_env_file"]

_KEY_RE = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")
_DQ_ESCAPES = {"n": "\n", "t": "\t", "r": "\r", '"': '"', "\\": "\\"}


def _env_value(raw: str) -> str | None:
    """The value of one dotenv line after ``=``, or None if malformed."""
    text = raw.lstrip()
    if text[:1] == "'":
        end = text.find("'", 1)
        if end < 0 or not _only_comment(text[end + 1 :]):
            return None
        return text[1:end]
    if text[:1] == '"':
        out: list[str] = []
        i = 1
        while i < len(text):
            c = text[i]
            if c == "\\" and i + 1 < len(text):
                nxt = text[i + 1]
                out.append(_DQ_ESCAPES.get(nxt, "\\" + nxt))
                i += 2
                continue
            if c == '"':
                return "".join(out) if _only_comment(text[i + 1 :]) else None
            out.append(c)
            i += 1
        return None
    return re.sub(r"(?:^|\s+)#.*$", "", raw).strip()


def _only_comment(rest: str) -> bool:
    rest = rest.strip()
    return not rest or rest.startswith("#")


def parse_env_file(path: str | os.PathLike[str]) -> dict[str, str]:
    """Read a dotenv file into a dict; it is parsed, never executed.

    Lines are ``KEY=VALUE`` with an optional ``export``; blank lines and ``#`` comments are
    skipped. Single-quoted values are literal; double-quoted ones understand ``\\n \\t \\r \\" \\\\``;
    unquoted ones lose a trailing `` # comment`` and surrounding whitespace. Keys match
    ``[A-Za-z_][A-Za-z0-9_]*``; a later key wins. Raises :class:`UsageError` naming the file,
    and the line number for a malformed line.
    """
    try:
        with open(path, encoding="utf-8") as f:
            text = f.read()
    except OSError as exc:
        raise UsageError(f"cannot read env file '{os.fspath(path)}': {exc.strerror or exc}") from None
    except UnicodeDecodeError:
        raise UsageError(f"cannot read env file '{os.fspath(path)}': not UTF-8 text") from None
    env: dict[str, str] = {}
    for number, line in enumerate(text.splitlines(), start=1):
        stripped = line.strip()
        if not stripped or stripped.startswith("#"):
            continue
        if re.match(r"export\s", stripped):
            stripped = stripped[6:].lstrip()
        key, eq, raw = stripped.partition("=")
        key = key.strip()
        value = _env_value(raw) if eq and _KEY_RE.match(key) else None
        if value is None:
            raise UsageError(f"env file '{os.fspath(path)}', line {number}: expected KEY=VALUE")
        if "\0" in value:  # the kernel cannot pass it; refused here rather than at the spawn
            raise UsageError(f"env file '{os.fspath(path)}', line {number}: {key} holds a NUL byte")
        env[key] = value
    return env


def parse_env_assignments(items: Iterable[str] | Mapping[str, str]) -> dict[str, str]:
    """Parse repeated ``-e KEY=VALUE`` items (or check a dict from Python) into a dict.

    The value is taken literally (the shell has already removed quotes); a later key wins.
    Raises :class:`UsageError` naming the bad item.
    """
    if isinstance(items, str):  # one "A=1" string, not its characters
        items = [items]
    if isinstance(items, Mapping):
        pairs = [(str(k), v, f"{k}={v}") for k, v in items.items()]
    else:
        pairs = []
        for item in items:
            if not isinstance(item, str) or "=" not in item:
                raise UsageError(f"invalid environment item '{item}': expected KEY=VALUE")
            key, _, value = item.partition("=")
            pairs.append((key, value, item))
    env: dict[str, str] = {}
    for key, value, item in pairs:
        if not _KEY_RE.match(key):
            raise UsageError(
                f"invalid environment item '{item}': "
                "a key is letters, digits and _, not starting with a digit"
            )
        if not isinstance(value, str):
            raise UsageError(f"invalid environment item '{item}': the value must be a string")
        if "\0" in value:
            raise UsageError(f"invalid environment item {key!r}: the value holds a NUL byte")
        env[key] = value
    return env
