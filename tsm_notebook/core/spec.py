"""Turn the options of ``tsm start`` into a validated :class:`LaunchSpec`, on the client side.

Everything here is pure (standard library and the core): it reads the file system only to check a
working directory, find a program and read an env file, and it starts nothing. The daemon later
adds the ``tsm_id``, checks that the port is free and the name unique, and finalizes the name with
:func:`~tsm_notebook.core.cmdline.final_name`.

Values follow :mod:`tsm_notebook.core.units`: durations in seconds (float), sizes in bytes (int).
On the command line, strings are parsed (``"500ms"``, ``"200M"``; a bare number of milliseconds,
as with PM2's flags); from Python, numbers are taken as seconds and bytes. Every bad value raises
:class:`~tsm_notebook.core.errors.UsageError` with a one-line message naming the option.
"""

from __future__ import annotations

import os
import shlex
import signal
from collections.abc import Iterable, Mapping
TYPE_CHECKING = False  # typing costs `tsm start` milliseconds to import; annotations are postponed
if TYPE_CHECKING:
    from typing import Any

from .cmdline import (
    _TYPE_INTERPRETERS,
    _as_port,
    _isdigits,
    _program_type,
    _script_type,
    base_name,
    classify,
    final_name,
    parse_port,
    port_from_command,
    split_command,
)
from .envfile import parse_env_assignments, parse_env_file
from .errors import UsageError
from .paths import check_name
from .units import parse_bool, parse_count, parse_duration, parse_size

__all__ = ["DURATION_OPTIONS", "HOOK_FIELDS", "LaunchSpec", "build_spec", "check_cron", "signal_name"]



#: the fields every spec must be given, in order
_REQUIRED = (
    "command",  # as the user gave it; shlex.join(argv) for an argv
    "argv",  # what is exec'd
    "shell",  # argv is ["/bin/sh", "-c", command]
    "name",  # --name, or the derived base name; final_name() adds the port
    "name_given",
    "port",  # declared: --port, else PORT in env, else from the command
    "port_search",  # "P+": the first free port >= port
    "cwd",  # absolute, an existing directory
    "env",  # env file values, then -e values (later wins)
    "env_file",  # absolute path, or ""
    "interpreter",  # as classify() gives it; the daemon may resolve it
    "type",  # python, node, bash or other
)
#: the optional fields and their defaults
_DEFAULTS: dict[str, object] = {
    "autorestart": True,
    "max_restarts": 15,  # PM2's default
    "min_uptime": 1.0,  # seconds; a shorter run is an unstable restart
    "restart_delay": 0.0,  # seconds
    "exp_backoff": None,  # seconds, base of the exponential delay; None = off
    "max_memory": None,  # bytes of RSS before a restart; None = no limit
    "kill_timeout": 1.6,  # seconds between stop_signal and SIGKILL (PM2's 1600 ms)
    "stop_signal": "SIGTERM",
    "wait_port": False,  # online only once the port listens: True (60 s at most) or the limit in seconds
    "time": False,  # timestamp log lines
    "log_max_size": None,  # bytes; None = the home's default
    "log_retain": None,  # rotated files kept; None = the home's default
    "log_compress": None,  # None = the home's default
    # stack membership (tsm up): kept by the daemon so listings, targets, save and recovery know it
    "stack": None,  # the stack's name, or None for a process started on its own
    "app": None,  # its app in the stack file (instances share it)
    "depends_on": None,  # apps of the same stack that must be ready first (list of names)
    "ready": None,  # "online", "port", "exit", an http(s) URL, or {"log": regex}
    "ready_timeout": None,  # seconds the bring-up waits for ready
    "watch": [],  # absolute paths whose changes restart the process; [] = not watched
    "watch_ignore": [],  # globs (name, relative path or a folder) never acted on
    "cron_restart": None,  # cron expression: restart an online process on schedule
    "cron": None,  # cron expression: start this one-shot job on schedule
    "on_crash": None,  # hook commands (/bin/sh -c) run by the daemon on these events
    "on_errored": None,
    "on_restart": None,
    "on_memory_limit": None,
    "on_online": None,
    "on_stop": None,
}
#: the per-process hooks: spec field -> event name (config.toml's [hooks] keys are the event names)
HOOK_FIELDS = {
    "on_crash": "crash", "on_errored": "errored", "on_restart": "restart",
    "on_memory_limit": "memory-limit", "on_online": "online", "on_stop": "stop",
}

#: the options that are durations: a stack file refuses a bare number in a string for these
DURATION_OPTIONS = ("min_uptime", "restart_delay", "exp_backoff", "kill_timeout")


class LaunchSpec:
    """What to launch and how to supervise it: the validated form of ``tsm start``'s options.

    Durations are seconds, sizes bytes; None means "off" or "the home's default". ``name`` is the
    base name; the daemon appends the port with :func:`final_name`. A plain class with slots
    rather than a dataclass: ``tsm start`` imports this module, and ``dataclasses`` (with the
    ``inspect`` it pulls in) would cost every start about 10 ms.
    """

    FIELDS = _REQUIRED + tuple(_DEFAULTS)
    __slots__ = FIELDS

    command: str
    argv: list[str]
    shell: bool
    name: str | None
    name_given: bool
    port: int | None
    port_search: bool
    cwd: str
    env: dict[str, str]
    env_file: str
    interpreter: str
    type: str
    autorestart: bool
    max_restarts: int
    min_uptime: float
    restart_delay: float
    exp_backoff: float | None
    max_memory: int | None
    kill_timeout: float
    stop_signal: str
    wait_port: bool
    time: bool
    log_max_size: int | None
    log_retain: int | None
    log_compress: bool | None
    stack: str | None
    app: str | None
    depends_on: list[str] | None
    ready: str | dict[str, str] | None
    ready_timeout: float | None
    watch: list[str]
    watch_ignore: list[str]
    cron_restart: str | None
    cron: str | None
    on_crash: str | None
    on_errored: str | None
    on_restart: str | None
    on_memory_limit: str | None
    on_online: str | None
    on_stop: str | None

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        if len(args) > len(self.FIELDS):
            raise TypeError(f"LaunchSpec takes at most {len(self.FIELDS)} positional arguments")
        values = dict(_DEFAULTS)
        for key, value in zip(self.FIELDS, args):
            values[key] = value
        for key, value in kwargs.items():
            if key not in values and key not in _REQUIRED:
                raise TypeError(f"LaunchSpec got an unexpected field {key!r}")
            if key in self.FIELDS[: len(args)]:
                raise TypeError(f"LaunchSpec got {key!r} twice")
            values[key] = value
        missing = [f for f in _REQUIRED if f not in values]
        if missing:
            raise TypeError(f"LaunchSpec is missing {', '.join(missing)}")
        for key in self.FIELDS:
            object.__setattr__(self, key, values[key])

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, LaunchSpec):
            return NotImplemented
        return all(getattr(self, f) == getattr(other, f) for f in self.FIELDS)

    __hash__ = None  # type: ignore[assignment]  # mutable, like the dataclass it replaces

    def __repr__(self) -> str:
        return "LaunchSpec(" + ", ".join(f"{f}={getattr(self, f)!r}" for f in self.FIELDS) + ")"

    def to_dict(self) -> dict[str, Any]:
        """A JSON-able dict of every field (lists and dicts copied)."""
        out = {}
        for f in self.FIELDS:
            value = getattr(self, f)
            out[f] = list(value) if isinstance(value, list) else dict(value) if isinstance(value, dict) else value
        return out

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> LaunchSpec:
        """Rebuild a spec from :meth:`to_dict`'s output; unknown keys (a newer client) are ignored.

        Every field gets the checks user input gets (:func:`~tsm_notebook.core.ondisk.check_spec`):
        a spec read back from disk or the wire is input. Raises :class:`UsageError` naming the field.
        """
        from .ondisk import check_spec

        if not isinstance(data, Mapping):
            raise UsageError(f"invalid launch spec: not an object ({type(data).__name__})")
        missing = sorted(set(_REQUIRED) - data.keys())
        if missing:
            raise UsageError(f"invalid launch spec: missing {', '.join(missing)}")
        values = check_spec({k: v for k, v in data.items() if k in cls.FIELDS})
        values["argv"] = list(values["argv"])
        values["env"] = dict(values["env"])
        _check_stack_fields(values)
        for key in ("watch", "watch_ignore"):
            if not isinstance(values.get(key, []), list) or not all(isinstance(v, str) for v in values.get(key, [])):
                raise UsageError(f"invalid launch spec: {key} must be a list of strings")
        for key in ("cron_restart", "cron", *HOOK_FIELDS):
            if values.get(key) is not None and not isinstance(values[key], str):
                raise UsageError(f"invalid launch spec: {key} must be a string")
        return cls(**values)


def _check_stack_fields(values: Mapping[str, Any]) -> None:
    """The stack fields of a spec read back from disk are input: check their types."""
    for key in ("stack", "app"):
        if values.get(key) is not None and not isinstance(values[key], str):
            raise UsageError(f"invalid launch spec: {key} must be a string")
    deps = values.get("depends_on")
    if deps is not None and not (isinstance(deps, list) and all(isinstance(d, str) for d in deps)):
        raise UsageError("invalid launch spec: depends_on must be a list of names")
    ready = values.get("ready")
    if ready is not None and not isinstance(ready, (str, dict)):
        raise UsageError("invalid launch spec: ready must be a string or a table")
    timeout = values.get("ready_timeout")
    if timeout is not None and (isinstance(timeout, bool) or not isinstance(timeout, (int, float))):
        raise UsageError("invalid launch spec: ready_timeout must be seconds")


def signal_name(value: str | int) -> str:
    """Normalize ``TERM``, ``sigint``, ``15`` or 15 to ``SIGTERM``-style names."""
    text = str(value).strip()
    try:
        if _isdigits(text):
            return signal.Signals(int(text)).name
        upper = text.upper()
        return signal.Signals[upper if upper.startswith("SIG") else "SIG" + upper].name
    except (KeyError, ValueError):
        raise UsageError(f"invalid stop signal '{value}': use a name like SIGTERM, INT or 15") from None


def _which(program: str, cwd: str, path_env: str | None) -> str | None:
    """Where ``program`` is: a path (relative to ``cwd``) if it holds ``/``, else on PATH."""
    if "/" in program:
        path = os.path.join(cwd, os.path.expanduser(program))
        return path if os.path.exists(path) else None
    search = path_env if path_env is not None else os.environ.get("PATH", os.defpath)
    # shutil.which's search, written out: importing shutil (with bz2, lzma and fnmatch) would
    # cost every `tsm start` of a bare program name a few milliseconds
    seen = set()
    for folder in search.split(os.pathsep) if search else ():
        if folder in seen:
            continue
        seen.add(folder)
        path = os.path.join(folder, program)
        if os.path.exists(path) and os.access(path, os.F_OK | os.X_OK) and not os.path.isdir(path):
            return path
    return None


def _resolve_program(argv: list[str], cwd: str, path_env: str | None) -> list[str]:
    """Check that argv[0] can run; run a known script without an exec bit through its interpreter."""
    program = argv[0]
    found = _which(program, cwd, path_env)
    kind = _script_type(program)
    if found is None and "/" not in program and kind and os.path.isfile(os.path.join(cwd, program)):
        # `tsm start app.py`, as with PM2: a script in cwd, not a program on PATH
        return [_TYPE_INTERPRETERS[kind], *argv]
    if found is None:
        raise UsageError(f"command not found: {program}")
    if os.path.isdir(found):
        raise UsageError(f"cannot run '{program}': it is a directory")
    if not os.access(found, os.X_OK):
        if kind:
            return [_TYPE_INTERPRETERS[kind], *argv]
        raise UsageError(f"cannot run '{program}': it is not executable")
    return argv


def _wait_limit(value: bool | str | float) -> bool | float:
    """``--wait-port``: False, True (the default limit, 60 s) or a limit in seconds, more than 0."""
    if isinstance(value, str) and value.strip().lower() in ("true", "false", "yes", "no", "on", "off", "1", "0"):
        return parse_bool(value, "--wait-port")
    if isinstance(value, bool):
        return value
    limit = parse_duration(value, "--wait-port")
    if limit <= 0:
        raise UsageError(f"--wait-port: the limit must be more than 0, got '{value}'")
    return limit


def build_spec(
    command: str | None = None,
    argv: list[str] | None = None,
    *,
    name: str | None = None,
    port: str | int | None = None,
    no_port: bool = False,
    cwd: str | os.PathLike[str] | None = None,
    env_file: str | os.PathLike[str] | None = None,
    env: Iterable[str] | Mapping[str, str] | None = (),
    interpreter: str | None = None,
    autorestart: bool | str = True,
    max_restarts: int | str | None = None,
    min_uptime: str | float | None = None,
    restart_delay: str | float | None = None,
    exp_backoff: str | float | None = None,
    max_memory: str | int | None = None,
    kill_timeout: str | float | None = None,
    stop_signal: str | int | None = None,
    wait_port: bool | str | float = False,
    time: bool | str = False,
    log_max_size: str | int | None = None,
    log_retain: int | str | None = None,
    log_compress: bool | str | None = None,
    watch: bool | str | Iterable[str] | None = None,
    watch_ignore: str | Iterable[str] | None = None,
    cron_restart: str | None = None,
    cron: str | None = None,
    on_crash: str | None = None,
    on_errored: str | None = None,
    on_restart: str | None = None,
    on_memory_limit: str | None = None,
    on_online: str | None = None,
    on_stop: str | None = None,
    base_cwd: str | None = None,
    path_env: str | None = None,
) -> LaunchSpec:
    """Validate the options of ``tsm start`` into a :class:`LaunchSpec`.

    Give exactly one of ``command`` (a string, run through ``/bin/sh -c`` only when it uses shell
    syntax) or ``argv``. Strings are command-line values: durations go through
    :func:`parse_duration` (a bare number is milliseconds), sizes through :func:`parse_size`.
    Numbers are Python values: seconds and bytes. ``cwd`` and ``env_file`` are relative to
    ``base_cwd`` (default: the current directory); the program is looked up on ``path_env``
    (default ``$PATH``). The port is ``port``, else ``PORT`` from the environment given, else the
    one in the command; ``no_port`` says there is none (the command's ``-p 4`` means something
    else). ``wait_port`` is a bool (True waits up to 60 s) or the limit itself (a duration).
    ``watch`` is True or ``[]`` (watch ``cwd``), a path or a list of paths (relative to ``cwd``);
    ``cron_restart`` and ``cron`` are cron expressions (5 fields, or 6 with seconds first), read in
    the daemon's local time; ``cron`` makes a one-shot job (autorestart off). ``on_crash`` etc. are
    shell commands the daemon runs on that event. Raises :class:`UsageError` with one line for
    anything wrong.
    """
    if (command is None) == (argv is None):
        raise UsageError("give either a command string or an argv list, not both or neither")
    base = os.path.abspath(base_cwd if base_cwd is not None else os.getcwd())
    workdir = os.path.normpath(os.path.join(base, os.path.expanduser(os.fspath(cwd)))) if cwd else base
    if not os.path.exists(workdir):
        raise UsageError(f"cwd '{workdir}' does not exist")
    if not os.path.isdir(workdir):
        raise UsageError(f"cwd '{workdir}' is not a directory")

    if command is not None:
        if not isinstance(command, str):
            raise UsageError("the command must be a string; give a list as argv")
        command = command.strip()
        args, shell = split_command(command)
    else:
        if isinstance(argv, str) or not all(isinstance(a, str) for a in argv or ()):
            raise UsageError("argv must be a list of strings")
        args, shell = list(argv or ()), False
        if not args or not args[0]:
            raise UsageError("empty command")
        command = shlex.join(args)

    if interpreter:
        if _which(interpreter, workdir, path_env) is None:
            raise UsageError(f"command not found: {interpreter} (the --interpreter)")
        if shell and _program_type(interpreter) != "bash":
            raise UsageError(f"--interpreter {interpreter} cannot run a shell command; drop the shell syntax")
        args = [interpreter, "-c", command] if shell else [interpreter, *args]
    elif not shell:
        args = _resolve_program(args, workdir, path_env)
    kind, interp = classify(args, interpreter or None)

    env_path = ""
    merged: dict[str, str] = {}
    if env_file:
        env_path = os.path.normpath(os.path.join(base, os.path.expanduser(os.fspath(env_file))))
        merged.update(parse_env_file(env_path))
    merged.update(parse_env_assignments(env or ()))  # argparse leaves an unused -e as None

    port_search = False
    if no_port:
        if port is not None:
            raise UsageError("--no-port and --port contradict each other: give one")
        declared = None
    elif port is not None:
        declared, port_search = parse_port(port)
    elif "PORT" in merged:
        declared = _as_port(merged["PORT"].strip())
        if declared is None:
            raise UsageError(f"PORT '{merged['PORT']}' in the environment is not a port 1-65535")
    else:
        declared = port_from_command(args, command)

    if name is not None:
        check_name(name)
        if not port_search:
            final_name(name, declared)  # a name too long once -PORT is added fails here, not later
        process_name = name
    else:
        process_name = base_name(args, shell_command=command if shell else None)

    restarts = 15 if max_restarts is None else parse_count(max_restarts, "--max-restarts")
    kill = 1.6 if kill_timeout is None else parse_duration(kill_timeout, "--kill-timeout")
    if kill <= 0:
        raise UsageError(f"--kill-timeout: must be more than 0, got '{kill_timeout}'")
    backoff = None if exp_backoff is None else parse_duration(exp_backoff, "--exp-backoff-restart-delay")
    if backoff is not None and backoff <= 0:
        raise UsageError(f"--exp-backoff-restart-delay: must be more than 0, got '{exp_backoff}'")

    if cron is not None:
        autorestart = False  # a scheduled job that exits is done, not crashed
    hooks = {f: _hook(v, "--" + f.replace("_", "-")) for f, v in
             (("on_crash", on_crash), ("on_errored", on_errored), ("on_restart", on_restart),
              ("on_memory_limit", on_memory_limit), ("on_online", on_online), ("on_stop", on_stop))}

    return LaunchSpec(
        **hooks,
        watch=_watch_paths(watch, workdir),
        watch_ignore=_globs(watch_ignore),
        cron_restart=None if cron_restart is None else check_cron(cron_restart, "--cron-restart"),
        cron=None if cron is None else check_cron(cron, "--cron"),
        command=command,
        argv=args,
        shell=shell,
        name=process_name,
        name_given=name is not None,
        port=declared,
        port_search=port_search,
        cwd=workdir,
        env=merged,
        env_file=env_path,
        interpreter=interp,
        type=kind,
        autorestart=parse_bool(autorestart, "--autorestart"),
        max_restarts=restarts,
        min_uptime=1.0 if min_uptime is None else parse_duration(min_uptime, "--min-uptime"),
        restart_delay=0.0 if restart_delay is None else parse_duration(restart_delay, "--restart-delay"),
        exp_backoff=backoff,
        max_memory=None if max_memory is None else parse_size(max_memory, "--max-memory-restart"),
        kill_timeout=kill,
        stop_signal="SIGTERM" if stop_signal is None else signal_name(stop_signal),
        wait_port=_wait_limit(wait_port),
        time=parse_bool(time, "--time"),
        log_max_size=None if log_max_size is None else parse_size(log_max_size, "--log-max-size"),
        log_retain=None if log_retain is None else parse_count(log_retain, "--log-retain"),
        log_compress=None if log_compress is None else parse_bool(log_compress, "--log-compress"),
    )


_CRON_CHARS = frozenset("0123456789*/,-?LW#abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ")


def check_cron(value: object, flag: str) -> str:
    """A cron expression's shape: 5 fields (minute hour day month weekday), 6 with seconds first,
    or an ``@daily``-style alias. The daemon parses it fully (and refuses what this lets by)."""
    if not isinstance(value, str) or not value.strip():
        raise UsageError(f"{flag}: give a cron expression such as '0 3 * * *'")
    text = " ".join(value.split())
    fields = text.split(" ")
    if text.startswith("@"):
        if text not in ("@yearly", "@annually", "@monthly", "@weekly", "@daily", "@midnight", "@hourly"):
            raise UsageError(f"{flag}: unknown alias '{text}': use @hourly, @daily, @weekly, @monthly or @yearly")
        return text
    if len(fields) not in (5, 6) or not all(set(f) <= _CRON_CHARS for f in fields):
        raise UsageError(f"{flag}: invalid cron expression '{value}': use 5 fields "
                         "(minute hour day month weekday) or 6 with seconds first")
    return text


def _hook(value: object, flag: str) -> str | None:
    if value is None:
        return None
    if not isinstance(value, str) or not value.strip():
        raise UsageError(f"{flag}: give a shell command")
    return value.strip()


def _globs(value: str | Iterable[str] | None) -> list[str]:
    items = [value] if isinstance(value, str) else list(value or ())
    for g in items:
        if not isinstance(g, str) or not g.strip():
            raise UsageError("--watch-ignore: give a glob such as '*.log' or 'data/'")
    return [g.strip() for g in items]


def _watch_paths(value: bool | str | Iterable[str] | None, workdir: str) -> list[str]:
    """The absolute paths to watch: none when off, the working directory for True or ``[]``."""
    if value is None or value is False:
        return []
    if value is True or value == "":
        items: list[str] = []
    elif isinstance(value, str):
        items = [value]
    else:
        items = list(value)
    out = []
    for item in items or [workdir]:
        if not isinstance(item, str) or not item:
            raise UsageError("--watch: paths must be non-empty strings")
        path = os.path.normpath(os.path.join(workdir, os.path.expanduser(item)))
        if not os.path.exists(path):
            raise UsageError(f"--watch: '{path}' does not exist")
        if path not in out:
            out.append(path)
    return out
