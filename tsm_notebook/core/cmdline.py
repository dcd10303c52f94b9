"""The analysis of a command line: shell or not, its program's type, its declared port, its name.

Pure (standard library and the core's errors and paths): nothing here runs the command. The client
uses it to build a :class:`~tsm_notebook.core.spec.LaunchSpec`; the daemon only calls
:func:`final_name` to add the port a search found.
"""

from __future__ import annotations

import os
import re
import shlex
from pathlib import PurePosixPath

from .errors import UsageError
from .paths import MAX_NAME, check_name
from .units import is_number

__all__ = ["SHELL", "base_name", "classify", "final_name", "parse_port", "port_from_command", "split_command", "uses_shell"]

SHELL = "/bin/sh"
_ASSIGN_RE = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*=")

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
    if is_number(text) and isinstance(text, int):
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


# Programs whose -p N is the port they listen on. Elsewhere -p means another thing: the port a
# client connects to (ssh, redis-cli, psql), a count (train.py -p 4), a protocol, a path.
_DASH_P_SERVERS = {
    "flask", "mlflow", "http-server", "serve", "next", "rails", "json-server", "hugo", "datasette",
    "memcached", "gatsby", "nuxt", "hexo", "ttyd", "daphne", "sanic", "live-server", "ws",
}  # fmt: skip
# Clients: their --port is where they connect, not a port they hold.
_PORT_CLIENTS = {
    "redis-cli", "redis-benchmark", "psql", "pg_dump", "pg_restore", "pg_isready", "mysql",
    "mysqldump", "mysqladmin", "mongo", "mongosh", "mongodump", "ssh", "scp", "sftp", "curl",
    "wget", "nc", "ncat", "telnet", "kubectl", "docker", "rsync",
}  # fmt: skip
# Runners whose next word is the program (`npx serve -p 3000`, `poetry run flask run -p 5000`).
_RUNNERS = {"npx", "bunx", "pnpx", "uvx", "pipx", "exec", "nohup", "time", "nice"}
_RUNNER_VERBS = {"poetry": "run", "uv": "run", "pipenv": "run", "bundle": "exec", "pnpm": "exec", "yarn": "exec"}


def _program_key(words: list[str]) -> str:
    """The program a simple command runs, as its users name it: ``flask`` for ``python -m flask
    run`` and ``flask run``, ``serve`` for ``npx serve``, ``train`` for ``python train.py``."""
    words = _skip_env(list(words))
    while words:
        base = os.path.basename(words[0])
        if base in _RUNNERS:
            words = words[1:]
            while words and words[0].startswith("-"):  # npx -y serve
                words = words[1:]
            continue
        if _RUNNER_VERBS.get(base) and len(words) > 2 and words[1] == _RUNNER_VERBS[base]:
            words = words[2:]
            continue
        return _argv_base(words)
    return ""


def _flag_port(words: list[str]) -> int | None:
    """The port a ``--port N`` (``--server.port``) or, for the programs of :data:`_DASH_P_SERVERS`,
    ``-p N`` flag gives in one simple command."""
    program = _program_key(words)
    if program in _PORT_CLIENTS:
        return None
    dash_p = program in _DASH_P_SERVERS
    for i, tok in enumerate(words):
        nxt = words[i + 1] if i + 1 < len(words) else ""
        if _PORT_FLAG_RE.match(tok) or (tok == "-p" and dash_p):
            if (port := _as_port(nxt)) is not None:
                return port
        elif tok.startswith("--") and "=" in tok and _PORT_FLAG_RE.match(tok.split("=", 1)[0]):
            if (port := _as_port(tok.split("=", 1)[1])) is not None:
                return port
    return None


def port_from_command(argv: list[str], command: str) -> int | None:
    """The port a command line declares, or None.

    Looks, in this order, for ``--port N`` / ``--port=N`` (and ``--server.port N``) unless the
    program is a client (``redis-cli``, ``psql``, ``ssh``: where they connect), ``-p N`` only for
    servers whose ``-p`` is their port (``flask``, ``mlflow``, ``http-server``, ``serve``, ...),
    then the positional port of ``http.server N`` and ``runserver [HOST:]N``, then any word
    that is ``[HOST]:N`` (``0.0.0.0:8000``, ``localhost:8000``, ``--bind=:8000``; not URLs), then a
    ``PORT=N`` assignment. A shell-wrapped ``argv`` is read from ``command``. These are
    guesses; ``--port``, ``--no-port`` or ``PORT`` in the environment override them. Never raises.
    """
    shell = not argv or _is_shell_wrapper(argv)
    tokens = _shell_tokens(command) if shell else list(argv)
    for words in (_segments(command) if shell else [tokens]):
        if (port := _flag_port(words)) is not None:
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
