"""Home-wide settings, read from ``$TSM_HOME/config.toml`` (every key optional)::

    [logs]
    max_size = "10M"        # rotate current.out/err past this size
    rotate_every = "1d"     # and at least this often ("0" turns time rotation off)
    retain = 10             # rotated files kept per stream
    max_age = "7d"          # rotated files older than this are removed
    compress = true         # gzip rotated files

    [history]
    sample_interval = "2s"  # metric sampling period (at least 100ms)
    retention = "7d"        # events and metrics older than this are removed

    [daemon]
    launch_window = "250ms" # a start returns once the child is alive this long (or its port accepts)
    stable_after = "30s"    # a run up this long before it exits counts as stable: --exp-backoff starts over

    [hooks]                 # shell commands the daemon runs on these events, for every process
    crash = "notify-send \"$TSM_NAME crashed\""
    errored = ""            # also: restart, memory-limit, online, stop
    timeout = "30s"         # a hook still running after this is killed (its group)

    [notebook]
    url_template = "https://my.host/proxy/{port}/"  # links to ports (default: found, see notebook.proxy)

    [hosts.gpu]             # another machine, reached with the system ssh client (tsm -H gpu ...)
    ssh = "me@gpu-box"      # what `ssh` is given: user@host or a Host of ~/.ssh/config
    home = "~/.tsm"         # the remote TSM_HOME (default: the remote's own default)
    tsm = "tsm"             # the remote tsm command (default: tsm on the remote PATH)
    ssh_options = ["-p", "2222"]  # extra arguments for ssh, before the host
    timeout = "10s"         # how long a request to this host may take to connect and answer

Values go through the same checks as the command-line options (:mod:`tsm_notebook.core.units`):
sizes take B/K/M/G, durations ms/s/m/h/d/w; a TOML number is bytes or seconds, and a string of
digits alone is refused for a duration (``"3"``: write ``"3s"`` or ``3``). ``compress`` must be a
TOML boolean or true/false, never a string taken as true. An unknown section or key, a value of
the wrong kind or out of range is refused with one line naming the file, the key and the fix.
"""

from __future__ import annotations

import sys
from pathlib import Path

from .errors import UsageError
from .units import parse_bool, parse_count, parse_duration, parse_size

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover
    import tomli as tomllib

__all__ = ["Config", "KEYS", "HOST_KEYS", "check_host_name"]


def _duration(value: object, key: str) -> float:
    return parse_duration(value, key, bare=None)


def _interval(value: object, key: str) -> float:
    seconds = _duration(value, key)
    if seconds < 0.1:
        raise UsageError(f"{key}: '{value}' is too short: sample at most every 100ms")
    return seconds


def _positive_duration(value: object, key: str) -> float:
    seconds = _duration(value, key)
    if seconds <= 0:
        raise UsageError(f"{key}: '{value}' must be more than 0")
    return seconds


def _bool(value: object, key: str) -> bool:
    if isinstance(value, bool):
        return value
    if isinstance(value, str):
        return parse_bool(value, key)
    raise UsageError(f"{key}: invalid value {value!r}: use true or false")


def _text(value: object, key: str) -> str:
    if not isinstance(value, str) or not value.strip():
        raise UsageError(f"{key}: invalid value {value!r}: use a non-empty string")
    if any(ord(c) < 32 or ord(c) == 127 for c in value):
        raise UsageError(f"{key}: control characters are not allowed")
    return value


def _ssh_target(value: object, key: str) -> str:
    target = _text(value, key)
    if target.startswith("-") or any(c.isspace() for c in target):
        raise UsageError(f"{key}: invalid ssh target {value!r}: write user@host or a Host of your ssh config")
    return target


def _ssh_options(value: object, key: str) -> list:
    if not isinstance(value, list):
        raise UsageError(f"{key}: invalid value {value!r}: use a list of strings, e.g. [\"-p\", \"2222\"]")
    return [_text(v, key) for v in value]


_HOST_NAME_OK = frozenset("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789_-.")


def check_host_name(name: object) -> str:
    """``name`` if it can name a host (``tsm -H NAME``, ``tsm @NAME``); raise :class:`UsageError` if not.

    Letters, digits and ``_ - .``, not starting with ``-``; ``all``, ``local`` and names with a
    comma are reserved for ``-H all``, the local home and lists of hosts."""
    if not isinstance(name, str) or not name or len(name) > 64 or not set(name) <= _HOST_NAME_OK or name[0] in "-.":
        raise UsageError(f"invalid host name {name!r}: use letters, digits and _ - . (not starting with - or .)")
    if name in ("all", "local"):
        raise UsageError(f"invalid host name {name!r}: it is reserved (-H all, -H local)")
    return name


#: the keys of one ``[hosts.NAME]`` table -> parser(value, "hosts.NAME.key")
HOST_KEYS = {
    "ssh": _ssh_target,
    "home": _text,
    "tsm": _text,
    "ssh_options": _ssh_options,
    "timeout": lambda value, key: _positive_duration(value, key),
}


def _hosts(table: object, key: str) -> dict:
    """``[hosts.NAME]`` tables -> {NAME: {ssh, home, tsm, ssh_options, timeout}} (checked, ``ssh`` required)."""
    out: dict = {}
    assert isinstance(table, dict)
    for name, host in table.items():
        check_host_name(name)
        where = f"{key}.{name}"
        if not isinstance(host, dict):
            raise UsageError(f"{where} must be a table: write [{where}] and its keys below it")
        entry = {}
        for k, v in host.items():
            if k not in HOST_KEYS:
                raise UsageError(f"unknown key {where}.{k}: [{where}] takes {', '.join(HOST_KEYS)}")
            entry[k] = HOST_KEYS[k](v, f"{where}.{k}")
        if "ssh" not in entry:
            raise UsageError(f"{where}: ssh is required (ssh = \"user@host\")")
        out[name] = entry
    return out


def _count(value: object, key: str) -> int:
    if isinstance(value, float):
        raise UsageError(f"{key}: invalid count {value!r}: use a whole number >= 0")
    return parse_count(value, key)  # type: ignore[arg-type]


def _command(value: object, key: str) -> str:
    if not isinstance(value, str):
        raise UsageError(f"{key}: invalid value {value!r}: use a shell command in quotes")
    return value.strip()
def _url_template(value: object, key: str) -> str:
    if not isinstance(value, str) or "{port}" not in value:
        raise UsageError(f"{key}: invalid value {value!r}: a URL with {{port}} in it, e.g. \"https://host/proxy/{{port}}/\"")
    return value


#: section -> key -> (attribute of Config, parser(value, "section.key"))
KEYS = {
    "logs": {
        "max_size": ("log_max_size", parse_size),
        "rotate_every": ("log_rotate_every", _duration),
        "retain": ("log_retain", _count),
        "max_age": ("log_max_age", _positive_duration),
        "compress": ("log_compress", _bool),
    },
    "history": {
        "sample_interval": ("sample_interval", _interval),
        "retention": ("history_retention", _positive_duration),
    },
    "daemon": {
        "launch_window": ("launch_window", _duration),
        "stable_after": ("stable_after", _positive_duration),
    },
    "hooks": {
        "crash": ("hook_crash", _command),
        "errored": ("hook_errored", _command),
        "restart": ("hook_restart", _command),
        "memory-limit": ("hook_memory_limit", _command),
        "online": ("hook_online", _command),
        "stop": ("hook_stop", _command),
        "timeout": ("hook_timeout", _positive_duration),
    },
    "notebook": {
        "url_template": ("url_template", _url_template),
    },
    # [hosts.NAME] tables: the whole section goes through one parser (its keys are host names)
    "hosts": {"*": ("hosts", _hosts)},
}


class Config:
    """Effective home-wide settings (seconds, bytes); immutable once loaded."""

    __slots__ = (
        "log_max_size", "log_rotate_every", "log_retain", "log_max_age", "log_compress",
        "sample_interval", "history_retention", "launch_window", "stable_after",
        "hook_crash", "hook_errored", "hook_restart", "hook_memory_limit", "hook_online", "hook_stop",
        "hook_timeout", "url_template", "hosts",
    )  # fmt: skip

    def __init__(
        self,
        *,
        log_max_size: int = 10 * 1024**2,
        log_rotate_every: float = 86400.0,
        log_retain: int = 10,
        log_max_age: float = 7 * 86400.0,
        log_compress: bool = True,
        sample_interval: float = 2.0,
        history_retention: float = 7 * 86400.0,
        launch_window: float = 0.25,
        stable_after: float = 30.0,
        hook_crash: str = "",
        hook_errored: str = "",
        hook_restart: str = "",
        hook_memory_limit: str = "",
        hook_online: str = "",
        hook_stop: str = "",
        hook_timeout: float = 30.0,
        url_template: str | None = None,
        hosts: dict | None = None,
    ) -> None:
        values = dict(locals())
        del values["self"]
        values["hosts"] = dict(hosts or {})
        for key, value in values.items():
            object.__setattr__(self, key, value)

    def __setattr__(self, key: str, value: object) -> None:
        raise AttributeError("Config is immutable")

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Config) and self.to_dict() == other.to_dict()

    def __repr__(self) -> str:
        return "Config(" + ", ".join(f"{k}={v!r}" for k, v in self.to_dict().items()) + ")"

    @classmethod
    def load(cls, path: Path) -> Config:
        """Read ``path`` if it exists (defaults otherwise).

        Raises :class:`UsageError` with one line naming the file and, for a bad value, the key:
        ``config file ~/.tsm/config.toml: logs.retain: invalid count '-1': use a whole number >= 0``.
        """
        try:
            raw = tomllib.loads(Path(path).read_text(encoding="utf-8"))
        except FileNotFoundError:
            return cls()
        except UnicodeDecodeError:
            raise UsageError(f"config file {path}: not UTF-8 text") from None
        except (OSError, tomllib.TOMLDecodeError) as exc:
            raise UsageError(f"config file {path}: {exc}") from None
        try:
            return cls(**cls.parse(raw))
        except UsageError as exc:
            raise UsageError(f"config file {path}: {exc.message}") from None

    @staticmethod
    def parse(raw: dict) -> dict:
        """The Config keyword arguments for a parsed TOML document; raises :class:`UsageError`."""
        values: dict = {}
        for section, table in raw.items():
            keys = KEYS.get(section)
            if keys is None:
                known = ", ".join(f"[{s}]" for s in KEYS)
                raise UsageError(f"unknown section [{section}]: the sections are {known}")
            if not isinstance(table, dict):
                raise UsageError(f"{section} must be a table: write [{section}] and its keys below it")
            if "*" in keys:  # a section of named tables ([hosts.NAME])
                attr, parser = keys["*"]
                values[attr] = parser(table, section)
                continue
            for key, value in table.items():
                if key not in keys:
                    raise UsageError(f"unknown key {section}.{key}: [{section}] takes {', '.join(keys)}")
                attr, parser = keys[key]
                values[attr] = parser(value, f"{section}.{key}")
        return values

    def to_dict(self) -> dict:
        return {key: getattr(self, key) for key in self.__slots__}
