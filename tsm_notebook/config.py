"""Home-wide defaults, read from ``$TSM_HOME/config.toml`` (all keys optional)::

    [logs]
    max_size = "10M"        # rotate current.out/err past this size
    rotate_every = "1d"     # and at least this often ("0" turns time rotation off)
    retain = 10             # rotated files kept per stream
    max_age = "7d"          # rotated files older than this are removed
    compress = true         # gzip rotated files

    [history]
    sample_interval = "2s"  # metric sampling period
    retention = "7d"        # events and metrics older than this are removed

    [daemon]
    launch_window = "250ms" # a start returns once the child is alive this long (or its port accepts)

Durations take ms/s/m/h/d suffixes (plain numbers are seconds here), sizes B/K/M/G.
"""

from __future__ import annotations

import re
import sys
from dataclasses import dataclass, fields
from pathlib import Path

from .errors import UsageError

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover
    import tomli as tomllib

_DUR = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*(ms|s|m|h|d)?\s*$", re.I)
_DUR_UNITS = {"ms": 0.001, "s": 1, "m": 60, "h": 3600, "d": 86400}
_SIZE = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*([kmg]i?b?|b)?\s*$", re.I)
_SIZE_UNITS = {"b": 1, "k": 1024, "m": 1024**2, "g": 1024**3}


def _duration(value, key: str) -> float:
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        return float(value)
    m = _DUR.match(str(value))
    if not m:
        raise UsageError(f"config {key}: invalid duration {value!r}")
    return float(m.group(1)) * _DUR_UNITS[(m.group(2) or "s").lower()]


def _size(value, key: str) -> int:
    if isinstance(value, int) and not isinstance(value, bool):
        return value
    m = _SIZE.match(str(value))
    if not m:
        raise UsageError(f"config {key}: invalid size {value!r}")
    return int(float(m.group(1)) * _SIZE_UNITS[(m.group(2) or "b")[0].lower()])


@dataclass(frozen=True)
class Config:
    """Effective home-wide settings (seconds, bytes)."""

    log_max_size: int = 10 * 1024**2
    log_rotate_every: float = 86400.0
    log_retain: int = 10
    log_max_age: float = 7 * 86400.0
    log_compress: bool = True
    sample_interval: float = 2.0
    history_retention: float = 7 * 86400.0
    launch_window: float = 0.25

    @classmethod
    def load(cls, path: Path) -> "Config":
        """Read ``path`` if it exists; a malformed file raises :class:`UsageError` naming it."""
        try:
            raw = tomllib.loads(path.read_text())
        except FileNotFoundError:
            return cls()
        except (OSError, tomllib.TOMLDecodeError) as exc:
            raise UsageError(f"config file {path}: {exc}") from None
        logs, hist, daemon = raw.get("logs", {}), raw.get("history", {}), raw.get("daemon", {})
        values = {}
        if "max_size" in logs:
            values["log_max_size"] = _size(logs["max_size"], "logs.max_size")
        if "rotate_every" in logs:
            values["log_rotate_every"] = _duration(logs["rotate_every"], "logs.rotate_every")
        if "retain" in logs:
            values["log_retain"] = int(logs["retain"])
        if "max_age" in logs:
            values["log_max_age"] = _duration(logs["max_age"], "logs.max_age")
        if "compress" in logs:
            values["log_compress"] = bool(logs["compress"])
        if "sample_interval" in hist:
            values["sample_interval"] = max(0.1, _duration(hist["sample_interval"], "history.sample_interval"))
        if "retention" in hist:
            values["history_retention"] = _duration(hist["retention"], "history.retention")
        if "launch_window" in daemon:
            values["launch_window"] = _duration(daemon["launch_window"], "daemon.launch_window")
        return cls(**values)

    def to_dict(self) -> dict:
        return {f.name: getattr(self, f.name) for f in fields(self)}
