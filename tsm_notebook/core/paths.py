"""Where state lives on disk, and which process names are safe there.

``$TSM_HOME`` (default ``~/.tsm``) holds the daemon's socket, status file and log, the SQLite
history under ``db/``, and one directory per process under ``runtime/processes/<name>/``.
"""

from __future__ import annotations

import json
import os
import re
from pathlib import Path
TYPE_CHECKING = False  # typing costs the command line ~8 ms to import; annotations are postponed
if TYPE_CHECKING:
    from typing import Any

from .errors import UsageError

MAX_NAME = 64
_NAME_RE = re.compile(r"^[A-Za-z0-9_][A-Za-z0-9_.@+-]*$")


def default_home() -> Path:
    """``$TSM_HOME`` if set, else ``~/.tsm``."""
    env = os.environ.get("TSM_HOME")
    return Path(env).expanduser() if env else Path.home() / ".tsm"


def check_name(name: str) -> str:
    """Return ``name`` if it is a safe, unique-able process name; raise :class:`UsageError` if not.

    A name is 1-64 characters of letters, digits and ``_ . @ + -``, not starting with ``.`` or
    ``-``, so it can never escape the processes directory (``..``, ``a/b``) or hide as a dot file.
    A name of digits only is refused too: a target of digits means a tsm_id.
    """
    if not isinstance(name, str) or not name:
        raise UsageError("invalid name: a name cannot be empty")
    if len(name) > MAX_NAME:
        raise UsageError(f"invalid name: {len(name)} characters, at most {MAX_NAME}")
    if any(ord(c) < 32 or ord(c) == 127 for c in name):
        raise UsageError(f"invalid name {name!r}: control characters are not allowed")
    if not _NAME_RE.match(name):
        raise UsageError(
            f"invalid name {name!r}: use letters, digits and _ . @ + - (not starting with . or -)"
        )
    if name.isdigit():
        raise UsageError(f"invalid name {name!r}: a name of digits only would read as a tsm_id")
    return name


class Home:
    """The layout of one TSM home directory (a plain class: the command line must start fast)."""

    __slots__ = ("root",)

    def __init__(self, root: Path):
        self.root = Path(root)

    def __repr__(self) -> str:
        return f"Home({str(self.root)!r})"

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Home) and other.root == self.root

    def __hash__(self) -> int:
        return hash(self.root)

    @classmethod
    def resolve(cls, root: str | os.PathLike[str] | None = None) -> "Home":
        """The home at ``root``, or the default one (``$TSM_HOME`` or ``~/.tsm``)."""
        return cls(Path(root).expanduser().absolute() if root else default_home().absolute())

    @property
    def socket(self) -> Path:
        return self.root / "daemon.sock"

    @property
    def status_file(self) -> Path:
        return self.root / "daemon.json"

    @property
    def lock_file(self) -> Path:
        return self.root / "daemon.lock"

    @property
    def daemon_log(self) -> Path:
        return self.root / "daemon.log"

    @property
    def dump_file(self) -> Path:
        return self.root / "dump.json"

    @property
    def config_file(self) -> Path:
        return self.root / "config.toml"

    @property
    def db_dir(self) -> Path:
        return self.root / "db"

    @property
    def db_file(self) -> Path:
        return self.db_dir / "tsm.sqlite"

    @property
    def processes(self) -> Path:
        return self.root / "runtime" / "processes"

    @property
    def next_id_file(self) -> Path:
        return self.root / "runtime" / "next_id"

    def process_dir(self, name: str) -> Path:
        """The directory of process ``name`` (checked: it cannot escape ``processes``)."""
        return self.processes / check_name(name)

    def ensure(self) -> None:
        """Create the home (mode 0700) and its subdirectories."""
        self.root.mkdir(mode=0o700, parents=True, exist_ok=True)
        os.chmod(self.root, 0o700)
        self.processes.mkdir(parents=True, exist_ok=True)
        self.db_dir.mkdir(exist_ok=True)


def write_json_atomic(path: Path, data: Any, *, mode: int = 0o644) -> None:
    """Write ``data`` as JSON to ``path`` through a temp file and a rename (never half-written)."""
    import tempfile

    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "w") as f:
            json.dump(data, f, separators=(",", ":"))
        os.chmod(tmp, mode)
        os.replace(tmp, path)
    except BaseException:
        try:
            os.unlink(tmp)
        except FileNotFoundError:
            pass
        raise
