"""Turn the options of ``tsm start`` into a validated :class:`LaunchSpec`, on the client side.

Everything here is pure (standard library, :mod:`.errors`, :mod:`.paths`): it reads the file
system only to check a working directory, find a program and read an env file, and it starts
nothing. The daemon later adds the ``tsm_id``, checks that the port is free and the name unique,
and finalizes the name with :func:`final_name`.

Units follow the rest of the package: durations in seconds (float), sizes in bytes (int). On the
command line, strings are parsed (``"500ms"``, ``"200M"``; a bare number of milliseconds, as with
PM2's flags); from Python, numbers are taken as seconds and bytes. Every bad value raises
:class:`~tsm_notebook.errors.UsageError` with a one-line message.
"""

from __future__ import annotations

import math
import os
import re
import shlex
import signal
from collections.abc import Iterable, Mapping
from pathlib import PurePosixPath
TYPE_CHECKING = False  # typing costs `tsm start` milliseconds to import; annotations are postponed
if TYPE_CHECKING:
    from typing import Any

from .errors import UsageError
from .paths import MAX_NAME, check_name

__all__ = [
    "LaunchSpec",
    "base_name",
    "build_spec",
    "classify",
    "final_name",
    "parse_duration",
    "parse_env_assignments",
    "parse_env_file",
    "parse_port",
    "parse_size",
    "port_from_command",
    "split_command",
    "uses_shell",
]

SHELL = "/bin/sh"
_ASSIGN_RE = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*=")

# --------------------------------------------------------------------------- sizes, durations

_SIZE_RE = re.compile(r"^\s*(\d+(?:\.\d+)?|\.\d+)\s*([a-z]*)\s*$", re.IGNORECASE)
_SIZE_UNITS = {
    "": 1, "b": 1,
    "k": 1024, "kb": 1024, "kib": 1024,
    "m": 1024**2, "mb": 1024**2, "mib": 1024**2,
    "g": 1024**3, "gb": 1024**3, "gib": 1024**3,
}  # fmt: skip

_DURATION_RE = re.compile(r"^\s*(\d+(?:\.\d+)?|\.\d+)\s*([a-z]*)\s*$", re.IGNORECASE)
_DURATION_UNITS = {"ms": 0.001, "s": 1.0, "m": 60.0, "h": 3600.0, "d": 86400.0}


def _is_number(value: object) -> bool:
    # bool is an int subclass, but `max_restarts=True` is a mistake, not 1.
    return isinstance(value, (int, float)) and not isinstance(value, bool)


def parse_size(text: str | int) -> int:
    """Parse a size into bytes: ``"200M"`` is 200 MiB; an int is a number of bytes.

    Units are binary and case-insensitive: ``B``, ``K``/``KB``/``KiB``, ``M``/``MB``/``MiB``,
    ``G``/``GB``/``GiB``; no unit means bytes; ``"1.5G"`` is allowed and rounds down to a byte.
    A number is bytes. The result is > 0. Raises :class:`UsageError`.
    """
    if _is_number(text):
        if not math.isfinite(text) or int(text) <= 0:
            raise UsageError(f"invalid size '{text}': must be more than 0 bytes")
        return int(text)
    match = _SIZE_RE.match(text) if isinstance(text, str) else None
    unit = _SIZE_UNITS.get(match.group(2).lower()) if match else None
    if match is None or unit is None:
        raise UsageError(f"invalid size '{text}': use a number with B, K, M or G")
    size = int(float(match.group(1)) * unit)
    if size <= 0:
        raise UsageError(f"invalid size '{text}': must be more than 0 bytes")
    return size


def parse_duration(text: str | int | float, *, default_unit: str = "ms") -> float:
    """Parse a duration into seconds: ``"500ms"``, ``"2s"``, ``"1.5m"``, ``"1h"``, ``"1d"``.

    A bare number (string or not) is in ``default_unit`` (milliseconds, as PM2's flags are).
    The result is finite and >= 0. Raises :class:`UsageError`; an unknown ``default_unit`` is a
    programming error and raises :class:`ValueError`.
    """
    if default_unit not in _DURATION_UNITS:
        raise ValueError(f"unknown duration unit {default_unit!r}")
    if _is_number(text):
        value, unit = float(text), default_unit
    else:
        match = _DURATION_RE.match(text) if isinstance(text, str) else None
        unit = (match.group(2).lower() or default_unit) if match else ""
        if match is None or unit not in _DURATION_UNITS:
            raise UsageError(f"invalid duration '{text}': use a number with ms, s, m, h or d")
        value = float(match.group(1))
    if not math.isfinite(value) or value < 0:
        raise UsageError(f"invalid duration '{text}': must be a finite number >= 0")
    return value * _DURATION_UNITS[unit]


# --------------------------------------------------------------------------- ports


def _check_port(port: int, text: object) -> int:
    if not 1 <= port <= 65535:
        raise UsageError(f"port {text} out of range 1-65535")
    return port


def parse_port(text: str | int) -> tuple[int, bool]:
    """Parse ``--port``: ``"7777"`` gives ``(7777, False)``; ``"8000+"`` gives ``(8000, True)``.

    The second item asks for the first free port >= the number (the daemon finds it). Ports are
    1-65535. Raises :class:`UsageError`.
    """
    if _is_number(text) and isinstance(text, int):
        return _check_port(text, text), False
    match = re.fullmatch(r"\s*(\d+)(\+?)\s*", text) if isinstance(text, str) else None
    if match is None:
        raise UsageError(f"invalid port '{text}': use a number 1-65535, or P+ for the first free port from P")
    return _check_port(int(match.group(1)), match.group(1)), bool(match.group(2))


# A word that is "[HOST]:PORT": ":8000", "0.0.0.0:8000", "localhost:8000", "[::1]:8000". URLs
# are left out on purpose: "redis://localhost:6379" names where a process connects, and a
# declared port that some other server holds would make the start fail. A host of digits only
# is refused too, so docker's "8080:80" is not read as port 80.
_HOSTPORT_RE = re.compile(r"^(?:\[[0-9A-Fa-f:.]+\]|(?!\d+:)[A-Za-z0-9_.-]*):(\d{1,5})$")
# --port, plus the dotted config style of streamlit and jupyter (--server.port, --ServerApp.port)
_PORT_FLAG_RE = re.compile(r"^--(?:[A-Za-z]+\.)?port$")
# http.server's options that take a value, so their value is not read as the port
_HTTP_SERVER_VALUE_OPTS = {"-b", "--bind", "-d", "--directory", "-p", "--protocol"}


def _isdigits(text: str) -> bool:
    # str.isdigit() is also True for "²", which int() refuses
    return text.isascii() and text.isdigit()


def _as_port(text: str) -> int | None:
    if _isdigits(text) and 1 <= int(text) <= 65535:
        return int(text)
    return None


def _is_shell_wrapper(argv: list[str]) -> bool:
    return len(argv) == 3 and argv[0] == SHELL and argv[1] == "-c"


def _shell_tokens(command: str) -> list[str]:
    """Words and operators of a shell command; best effort (never raises)."""
    lexer = shlex.shlex(command, posix=True, punctuation_chars=True)
    lexer.whitespace_split = True
    try:
        return list(lexer)
    except ValueError:  # unbalanced quotes: fall back to plain words
        return command.split()


def port_from_command(argv: list[str], command: str) -> int | None:
    """The port a command line declares, or None.

    Looks, in this order, for ``--port N`` / ``--port=N`` / ``-p N`` (and ``--server.port N``),
    then the positional port of ``http.server N`` and ``runserver [HOST:]N``, then any word
    that is ``[HOST]:N`` (``0.0.0.0:8000``, ``localhost:8000``, ``--bind=:8000``; not URLs), then a
    ``PORT=N`` assignment. A shell-wrapped ``argv`` is read from ``command``. These are
    guesses; ``--port`` or ``PORT`` in the environment override them. Never raises.
    """
    tokens = _shell_tokens(command) if (not argv or _is_shell_wrapper(argv)) else list(argv)
    for i, tok in enumerate(tokens):
        nxt = tokens[i + 1] if i + 1 < len(tokens) else ""
        if _PORT_FLAG_RE.match(tok) or tok == "-p":
            if (port := _as_port(nxt)) is not None:
                return port
        elif tok.startswith("--") and "=" in tok and _PORT_FLAG_RE.match(tok.split("=", 1)[0]):
            if (port := _as_port(tok.split("=", 1)[1])) is not None:
                return port
    for i, tok in enumerate(tokens):
        if tok in ("http.server", "runserver"):
            after = tokens[i + 1 :]
            for j, arg in enumerate(after):
                if tok == "http.server" and j and after[j - 1] in _HTTP_SERVER_VALUE_OPTS:
                    continue
                if arg.startswith("-"):
                    continue
                port = _as_port(arg.rsplit(":", 1)[-1] if tok == "runserver" else arg)
                if port is not None:
                    return port
                if tok == "runserver":  # runserver's first positional is the address, or none
                    break
    for tok in tokens:
        value = tok.split("=", 1)[1] if tok.startswith("-") and "=" in tok else tok
        match = _HOSTPORT_RE.match(value)
        if match and (port := _as_port(match.group(1))) is not None:
            return port
    for tok in tokens:  # PORT=3000 node app.js, env PORT=3000 ..., export PORT=3000 && ...
        if tok.startswith("PORT=") and (port := _as_port(tok[5:])) is not None:
            return port
    return None


# --------------------------------------------------------------------------- commands

_SHELL_CHARS = set("|&;<>()`$*?[{~\n")
# First words that only mean something to a shell (there is no such program to exec).
_SHELL_WORDS = {
    ".", "alias", "case", "cd", "done", "elif", "esac", "eval", "exec", "export", "fi", "for",
    "if", "set", "source", "trap", "ulimit", "umask", "unset", "until", "while",
}  # fmt: skip
# Words that may open a simple command before the program itself (`while x; do prog; done`).
_LEADING_WORDS = {"exec", "do", "then", "else", "!", "{"}


def uses_shell(command: str) -> bool:
    """True when ``command`` needs ``/bin/sh -c``: shell syntax outside quotes, or a leading ``VAR=value``.

    Shell syntax is any of ``| & ; < > ( ) ` $ * ? [ { ~`` or a newline outside quotes (``$`` and
    backquote count inside double quotes too), a word starting with ``#``, or a first word that
    is a shell keyword or builtin (``cd``, ``export``, ``for``...). A backslash-escaped character
    is literal. Raises :class:`UsageError` for unbalanced quotes or a trailing backslash.
    """
    quote = ""
    word_start = True
    i = 0
    while i < len(command):
        c = command[i]
        if quote == "'":
            if c == "'":
                quote = ""
        elif quote == '"':
            if c == "\\":
                i += 1  # \" \$ \` \\ are literal inside double quotes
            elif c == '"':
                quote = ""
            elif c in "$`":
                return True
        elif c == "\\":
            if i + 1 >= len(command):
                raise UsageError("invalid command: it ends with a lone backslash")
            i += 1
        elif c in "'\"":
            quote = c
        elif c in _SHELL_CHARS or (c == "#" and word_start):
            return True
        word_start = quote == "" and c in " \t"
        i += 1
    if quote:
        raise UsageError(f"invalid command: unbalanced {quote} quote")
    words = shlex.split(command)
    return bool(words) and (_ASSIGN_RE.match(words[0]) is not None or words[0] in _SHELL_WORDS)


def split_command(command: str) -> tuple[list[str], bool]:
    """Split a command string into ``(argv, shell)``.

    With shell syntax (see :func:`uses_shell`) argv is ``["/bin/sh", "-c", command]`` and shell is
    True; otherwise argv is ``shlex.split(command)``. Raises :class:`UsageError` for an empty
    command or unbalanced quotes.
    """
    if not isinstance(command, str) or not command.strip():
        raise UsageError("empty command")
    if uses_shell(command):
        return [SHELL, "-c", command], True
    argv = shlex.split(command)
    if not argv or not argv[0]:
        raise UsageError("empty command")
    return argv, False


_PYTHON_RE = re.compile(r"^(?:python|pypy)\d*(?:\.\d+)*$")
_NODE_NAMES = {"node", "nodejs"}
_SHELL_NAMES = {"bash", "sh", "zsh", "dash"}
_EXT_TYPES = {".py": "python", ".js": "node", ".mjs": "node", ".cjs": "node", ".sh": "bash"}
# What runs a script of a known type that has no exec bit.
_TYPE_INTERPRETERS = {"python": "python3", "node": "node", "bash": "bash"}


def _program_type(path: str) -> str | None:
    """The type of an interpreter program from its basename, or None."""
    base = os.path.basename(path)
    if _PYTHON_RE.match(base):
        return "python"
    if base in _NODE_NAMES:
        return "node"
    if base in _SHELL_NAMES:
        return "bash"
    return None


def _script_type(path: str) -> str | None:
    return _EXT_TYPES.get(PurePosixPath(path).suffix.lower())


def _skip_env(argv: list[str]) -> list[str]:
    """``env [-i] [VAR=x ...] prog args`` -> ``prog args``; other argv unchanged."""
    if not argv or os.path.basename(argv[0]) != "env":
        return argv
    rest = argv[1:]
    while rest and (rest[0].startswith("-") or _ASSIGN_RE.match(rest[0])):
        rest = rest[1:]
    return rest or argv


def classify(argv: list[str], interpreter: str | None = None) -> tuple[str, str]:
    """The ``(type, interpreter)`` of a command: type is python, node, bash or other.

    The type comes from the basename of the program (``python3.11`` and ``pypy3`` are python,
    ``nodejs`` is node, ``sh``/``zsh``/``dash`` are bash), else from a script's extension
    (``.py``, ``.js``/``.mjs``/``.cjs``, ``.sh``). A ``/bin/sh -c CMD`` wrapper is classified by
    the first word of CMD when that is an interpreter, else it is bash. The interpreter is the
    explicit ``interpreter`` if given, else the program for an interpreter type, else ``""``.
    """
    if interpreter:
        kind = _program_type(interpreter)
        if kind is None:  # an interpreter we do not know: go by the script it runs
            scripts = [a for a in argv if a != interpreter and not a.startswith("-")]
            kind = _script_type(scripts[0]) if scripts else None
        return kind or "other", interpreter
    if _is_shell_wrapper(argv):
        segments = _segments(argv[2])
        words = _skip_env(segments[0]) if segments else []
        kind = _program_type(words[0]) if words else None
        return (kind, words[0]) if kind else ("bash", argv[0])
    argv = _skip_env(argv)
    if not argv:
        return "other", ""
    kind = _program_type(argv[0]) or _script_type(argv[0])
    return (kind, argv[0]) if kind else ("other", "")


def _segments(command: str) -> list[list[str]]:
    """The simple commands of a shell string, split at operators.

    Leading assignments and words such as ``exec`` or ``do`` are dropped from each.
    """
    segments: list[list[str]] = [[]]
    for tok in _shell_tokens(command):
        if tok and all(c in "|&;<>()" for c in tok):
            segments.append([])
        elif segments[-1] or not (_ASSIGN_RE.match(tok) or tok in _LEADING_WORDS):
            segments[-1].append(tok)
    return [s for s in segments if s]


# Options of python and node that take a separate value, so the value is not read as the script.
_VALUE_OPTS = {"python": {"-W", "-X", "--check-hash-based-pycs"}, "node": {"-r", "--require"}}
# Options after which the rest of the line is code, not a script.
_CODE_OPTS = {"python": {"-c"}, "node": {"-e", "--eval", "-p", "--print"}, "bash": {"-c"}}


def _sanitize(text: str) -> str:
    """Make ``text`` a valid name, short enough that ``-PORT`` still fits in MAX_NAME."""
    name = re.sub(r"[^A-Za-z0-9_.@+-]+", "-", text).lstrip(".-")[: MAX_NAME - 6].rstrip("-")
    if not name:
        return "process"
    return f"process-{name}" if name.isdigit() else name


def _argv_base(argv: list[str]) -> str:
    argv = _skip_env(argv)
    program = os.path.basename(argv[0]) if argv else ""
    kind = _program_type(argv[0]) if argv else None
    if kind is None:
        return PurePosixPath(program).stem if _script_type(program) else program
    args = argv[1:]
    i = 0
    while i < len(args):
        arg = args[i]
        if arg == "-m" and kind == "python" and i + 1 < len(args):
            return args[i + 1]
        if arg.startswith("-m") and kind == "python" and len(arg) > 2:
            return arg[2:]
        if arg in _CODE_OPTS[kind] or arg == "--":
            if arg == "--" and i + 1 < len(args):
                return PurePosixPath(args[i + 1]).stem or program
            return program
        if arg in _VALUE_OPTS.get(kind, ()):
            i += 2
            continue
        if not arg.startswith("-"):
            return PurePosixPath(arg).stem or program
        i += 1
    return program


def base_name(argv: list[str], shell_command: str | None = None) -> str:
    """A default process name when ``--name`` is absent (always a valid name).

    The script's stem (``app.py`` -> ``app``), else the ``-m`` module (``http.server``), else the
    program's basename (``node``, ``sleep``). For a shell command, the first simple command that
    is not a shell builtin (``cd x && npm start`` -> ``npm``). Characters a name cannot hold
    become ``-``, and the result leaves room for a ``-PORT`` suffix.
    """
    if shell_command is not None or _is_shell_wrapper(argv):
        command = shell_command if shell_command is not None else argv[2]
        for words in _segments(command):
            if words[0] not in _SHELL_WORDS:
                return _sanitize(_argv_base(words))
        return "sh"
    return _sanitize(_argv_base(argv))


def final_name(base: str, port: int | None) -> str:
    """The process name: ``base`` plus ``-PORT`` when a port is known (``web`` + 7777 -> ``web-7777``).

    A base that already ends in ``-PORT`` is kept. The result is checked with
    :func:`~tsm_notebook.paths.check_name`, which raises :class:`UsageError`.
    """
    if port is None or base.endswith(f"-{port}"):
        return check_name(base)
    check_name(base)  # report the user's name, not the suffixed one, when the base is bad
    return check_name(f"{base}-{port}")


# --------------------------------------------------------------------------- environment

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
        env[key] = value
    return env


# --------------------------------------------------------------------------- the spec


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
    "wait_port": False,  # online only once the port listens
    "time": False,  # timestamp log lines
    "log_max_size": None,  # bytes; None = the home's default
    "log_retain": None,  # rotated files kept; None = the home's default
    "log_compress": None,  # None = the home's default
}


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

        Raises :class:`UsageError` when a required field is missing.
        """
        missing = sorted(set(_REQUIRED) - data.keys())
        if missing:
            raise UsageError(f"invalid launch spec: missing {', '.join(missing)}")
        values = {k: v for k, v in data.items() if k in cls.FIELDS}
        try:
            values["argv"] = [str(a) for a in values["argv"]]
            values["env"] = {str(k): str(v) for k, v in dict(values["env"]).items()}
        except (TypeError, ValueError):
            raise UsageError("invalid launch spec: argv must be a list and env a mapping") from None
        return cls(**values)


def _duration(value: str | int | float, flag: str) -> float:
    try:
        return parse_duration(value) if isinstance(value, str) else parse_duration(value, default_unit="s")
    except UsageError as exc:
        raise UsageError(f"{flag}: {exc.message}") from None


def _size(value: str | int, flag: str) -> int:
    try:
        return parse_size(value)
    except UsageError as exc:
        raise UsageError(f"{flag}: {exc.message}") from None


def _count(value: str | int, flag: str) -> int:
    text = value.strip() if isinstance(value, str) else value
    if isinstance(text, str) and _isdigits(text):
        return int(text)
    if _is_number(text) and isinstance(text, int) and text >= 0:
        return text
    raise UsageError(f"{flag}: invalid count '{value}': use a whole number >= 0")


_TRUE = {"1", "true", "yes", "on"}
_FALSE = {"0", "false", "no", "off"}


def _flag(value: bool | str, flag: str) -> bool:
    if isinstance(value, bool):
        return value
    if isinstance(value, str) and value.strip().lower() in _TRUE | _FALSE:
        return value.strip().lower() in _TRUE
    raise UsageError(f"{flag}: invalid value '{value}': use true or false")


def _signal_name(value: str | int) -> str:
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
    import shutil  # only when a program must be found: spares `tsm start` its import

    return shutil.which(program, path=search)


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


def build_spec(
    command: str | None = None,
    argv: list[str] | None = None,
    *,
    name: str | None = None,
    port: str | int | None = None,
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
    wait_port: bool | str = False,
    time: bool | str = False,
    log_max_size: str | int | None = None,
    log_retain: int | str | None = None,
    log_compress: bool | str | None = None,
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
    one in the command. Raises :class:`UsageError` with one line for anything wrong.
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
    if port is not None:
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

    restarts = 15 if max_restarts is None else _count(max_restarts, "--max-restarts")
    kill = 1.6 if kill_timeout is None else _duration(kill_timeout, "--kill-timeout")
    if kill <= 0:
        raise UsageError(f"--kill-timeout: must be more than 0, got '{kill_timeout}'")
    backoff = None if exp_backoff is None else _duration(exp_backoff, "--exp-backoff-restart-delay")
    if backoff is not None and backoff <= 0:
        raise UsageError(f"--exp-backoff-restart-delay: must be more than 0, got '{exp_backoff}'")

    return LaunchSpec(
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
        autorestart=_flag(autorestart, "--autorestart"),
        max_restarts=restarts,
        min_uptime=1.0 if min_uptime is None else _duration(min_uptime, "--min-uptime"),
        restart_delay=0.0 if restart_delay is None else _duration(restart_delay, "--restart-delay"),
        exp_backoff=backoff,
        max_memory=None if max_memory is None else _size(max_memory, "--max-memory-restart"),
        kill_timeout=kill,
        stop_signal="SIGTERM" if stop_signal is None else _signal_name(stop_signal),
        wait_port=_flag(wait_port, "--wait-port"),
        time=_flag(time, "--time"),
        log_max_size=None if log_max_size is None else _size(log_max_size, "--log-max-size"),
        log_retain=None if log_retain is None else _count(log_retain, "--log-retain"),
        log_compress=None if log_compress is None else _flag(log_compress, "--log-compress"),
    )
