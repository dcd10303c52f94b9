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
#: words a target can be that are not names
RESERVED = frozenset({"all"})
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
    if name.lower() in RESERVED:
        raise UsageError(f"invalid name {name!r}: it is a target word (`tsm stop {name}` would mean every process)")
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
        """Create the home (mode 0700) and its subdirectories; refuse a home that is not the
        caller's own real directory (see :meth:`check`)."""
        self.root.mkdir(mode=0o700, parents=True, exist_ok=True)
        self.check()
        os.chmod(self.root, 0o700)
        for d in (self.root / "runtime", self.processes, self.db_dir):
            try:
                d.mkdir(mode=0o700)
            except FileExistsError:
                pass
            check_own_dir(d, "a directory of TSM_HOME")

    def check(self) -> None:
        """Raise :class:`UsageError` unless the home is a real directory (not a symlink) owned
        by the caller: another user's home could read every request's environment, plant a
        process to run as the caller, or point writes anywhere. A missing home passes."""
        check_own_dir(self.root, "TSM_HOME", missing_ok=True)


def check_own_dir(path: Path, what: str, *, missing_ok: bool = False) -> None:
    """Raise :class:`UsageError` unless ``path`` is a directory owned by us, not a symlink."""
    try:
        st = os.lstat(path)
    except FileNotFoundError:
        if missing_ok:
            return
        raise UsageError(f"{what} {str(path)!r} does not exist") from None
    import stat

    if stat.S_ISLNK(st.st_mode):
        target = os.readlink(path)
        raise UsageError(
            f"{what} {str(path)!r} is a symlink (to {target!r}): tsm does not follow it, so nobody "
            "can redirect its files; point TSM_HOME at the real directory instead"
        )
    if not stat.S_ISDIR(st.st_mode):
        raise UsageError(f"{what} {str(path)!r} is not a directory")
    if st.st_uid != os.geteuid():
        raise UsageError(
            f"{what} {str(path)!r} belongs to uid {st.st_uid}, not to you (uid {os.geteuid()}): "
            "tsm refuses a home another user could control; use your own (unset TSM_HOME for "
            "~/.tsm, or choose a new path), or have its owner remove it"
        )


def open_nofollow(path: Path, flags: int, mode: int = 0o600) -> int:
    """``os.open`` that refuses a symlink at ``path`` (ELOOP) instead of writing through it."""
    return os.open(path, flags | os.O_NOFOLLOW | getattr(os, "O_CLOEXEC", 0), mode)


def write_text_nofollow(path: Path, text: str, *, mode: int = 0o644) -> None:
    """Replace ``path``'s content with ``text``, never through a symlink planted there."""
    fd = open_nofollow(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, mode)
    with os.fdopen(fd, "w") as f:
        f.write(text)


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
