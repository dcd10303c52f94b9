"""The one grammar of option values: sizes, durations, counts and switches.

The command line, ``%tsm``, the Python API, ``config.toml``, ``tsm.toml``, ``--since`` and the
reports all parse through these functions, so a value means the same thing everywhere:

* **sizes** are bytes: ``"200M"`` is 200 MiB. Units are binary and case-insensitive (``B``,
  ``K``/``KB``/``KiB``, ``M``/``MB``/``MiB``, ``G``/``GB``/``GiB``); a number without a unit is
  bytes; a size is always more than 0.
* **durations** are seconds (float): ``"500ms"``, ``"2s"``, ``"1.5m"``, ``"1h"``, ``"1d"``, ``"1w"``.
  A number *without a unit* is where the places differ, and each says which it is:

  - on the command line (and ``%tsm``), a bare number is **milliseconds**, as PM2's flags are
    (``--kill-timeout 3000``);
  - a number given as a number (Python, TOML) is **seconds** (``kill_timeout=3``);
  - in ``config.toml`` and ``tsm.toml`` a bare number *in a string* is refused (``"3"`` could mean
    either): write ``"3s"`` or ``3`` (``"0"`` needs no unit);
  - ``--since`` takes an age with a unit (``30s``, ``500ms``, ``2h``) or an ISO time.

* **counts** are whole numbers >= 0; **switches** are ``true``/``false`` (also ``yes``/``no``,
  ``on``/``off``, ``1``/``0``) and never a non-empty string taken as true.

Every bad value raises :class:`~tsm_notebook.core.errors.UsageError` whose message starts with
``what`` (an option like ``--kill-timeout`` or a key like ``logs.max_size``).
"""

from __future__ import annotations

import math
import re

from .errors import UsageError

__all__ = ["DURATION_UNITS", "SIZE_UNITS", "is_number", "parse_bool", "parse_count", "parse_duration", "parse_size"]

_NUMBER_RE = re.compile(r"^\s*(\d+(?:\.\d+)?|\.\d+)\s*([a-z]*)\s*$", re.IGNORECASE)
SIZE_UNITS = {
    "": 1, "b": 1,
    "k": 1024, "kb": 1024, "kib": 1024,
    "m": 1024**2, "mb": 1024**2, "mib": 1024**2,
    "g": 1024**3, "gb": 1024**3, "gib": 1024**3,
}  # fmt: skip
DURATION_UNITS = {"ms": 0.001, "s": 1.0, "m": 60.0, "h": 3600.0, "d": 86400.0, "w": 604800.0}
_TRUE = {"1", "true", "yes", "on"}
_FALSE = {"0", "false", "no", "off"}


def is_number(value: object) -> bool:
    """An int or float, but not a bool (``max_restarts=True`` is a mistake, not 1)."""
    return isinstance(value, (int, float)) and not isinstance(value, bool)


def _label(what: str | None, text: str) -> str:
    return f"{what}: {text}" if what else text


def parse_size(value: str | int, what: str | None = None) -> int:
    """A size in bytes, more than 0: ``"200M"``, ``"1.5G"`` (rounded down to a byte), ``4096``."""
    if is_number(value):
        if not math.isfinite(value) or int(value) <= 0:
            raise UsageError(_label(what, f"invalid size '{value}': must be more than 0 bytes"))
        return int(value)
    match = _NUMBER_RE.match(value) if isinstance(value, str) else None
    unit = SIZE_UNITS.get(match.group(2).lower()) if match else None
    if match is None or unit is None:
        raise UsageError(_label(what, f"invalid size '{value}': use a number with B, K, M or G"))
    size = int(float(match.group(1)) * unit)
    if size <= 0:
        raise UsageError(_label(what, f"invalid size '{value}': must be more than 0 bytes"))
    return size


def parse_duration(
    value: str | int | float, what: str | None = None, *, bare: str | None = "ms", number: str = "s"
) -> float:
    """A duration in seconds, finite and >= 0.

    ``bare`` is the unit of a string without one (``"ms"`` on the command line; ``None`` refuses
    it, as the TOML files do); ``number`` is the unit of a Python or TOML number (seconds).
    """
    if is_number(value):
        amount, unit = float(value), number
    else:
        match = _NUMBER_RE.match(value) if isinstance(value, str) else None
        unit = (match.group(2).lower() or bare or "s") if match else ""
        if match is not None and not match.group(2) and bare is None and float(match.group(1)) != 0:
            raise UsageError(_label(what, f"'{value}' needs a unit: write '{match.group(1)}s', '{match.group(1)}ms', ..."))
        if match is None or unit not in DURATION_UNITS:
            raise UsageError(_label(what, f"invalid duration '{value}': use a number with ms, s, m, h, d or w"))
        amount = float(match.group(1))
    if not math.isfinite(amount) or amount < 0:
        raise UsageError(_label(what, f"invalid duration '{value}': must be a finite number >= 0"))
    return amount * DURATION_UNITS[unit]


def parse_count(value: str | int, what: str | None = None, *, minimum: int = 0) -> int:
    """A whole number >= ``minimum``: ``3``, ``"3"``; never ``True``, ``2.5`` or ``"-1"``."""
    text = value.strip() if isinstance(value, str) else value
    if isinstance(text, str) and text.isascii() and text.isdigit():
        text = int(text)
    if is_number(text) and isinstance(text, int) and text >= minimum:
        return text
    raise UsageError(_label(what, f"invalid count '{value}': use a whole number >= {minimum}"))


def parse_bool(value: bool | str, what: str | None = None) -> bool:
    """``True``/``False``, or one of the words true/false, yes/no, on/off, 1/0 (any case)."""
    if isinstance(value, bool):
        return value
    if isinstance(value, str) and value.strip().lower() in _TRUE | _FALSE:
        return value.strip().lower() in _TRUE
    raise UsageError(_label(what, f"invalid value '{value}': use true or false"))
