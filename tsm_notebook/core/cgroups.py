"""Run cgroups: one cgroup (v2) per run, where the machine lets the daemon create them.

A process cannot leave its cgroup by itself (``setsid``, a double fork or ``env -i`` change
nothing), so a run's cgroup lists every descendant, even one that wiped the run's marker from its
environment and left its process group. Only membership is used (no controller is needed):
``cgroup.procs``, and ``cgroup.kill`` where the kernel has it.

The base directory is ``<cgroup2 mount><the daemon's own cgroup>/tsm-<uid>-<hash of the home>``,
each run gets ``run-<token>`` under it. Anything that goes wrong while setting up (no writable
cgroup2, a read-only mount, a busy or vanished directory) disables cgroups for the daemon's life,
logged once: the marker stays the fallback everywhere and the user never sees an error. Nothing
here scans on a periodic tick; a stop reads one ``cgroup.procs``.
"""

from __future__ import annotations

import errno
import hashlib
import logging
import os
import signal
import stat

log = logging.getLogger("tsm.cgroups")

#: set in the daemon's environment to run without cgroups (the marker alone)
DISABLE_ENV = "TSM_NO_CGROUPS"
PREFIX = "run-"
#: a passing shortage of the daemon's: that run goes without its cgroup (the marker covers it),
#: the next ones get theirs
TRANSIENT = (errno.EMFILE, errno.ENFILE, errno.ENOMEM, errno.ENOSPC)


def _unescape(field: str) -> str:
    """mountinfo escapes space, tab, newline and backslash as octal."""
    return field.replace("\\040", " ").replace("\\011", "\t").replace("\\012", "\n").replace("\\134", "\\")


def find_mount(mountinfo: str = "/proc/self/mountinfo") -> tuple[str, str] | None:
    """``(mount point, root inside the hierarchy)`` of the first read-write cgroup2 mount."""
    with open(mountinfo, encoding="utf-8", errors="replace") as f:
        for line in f:
            left, sep, right = line.partition(" - ")
            if not sep:
                continue
            fields, tail = left.split(), right.split()
            if len(fields) < 6 or not tail or tail[0] != "cgroup2":
                continue
            if "rw" in fields[5].split(","):
                return _unescape(fields[4]), _unescape(fields[3])
    return None


def own_path(procfile: str = "/proc/self/cgroup") -> str | None:
    """This process's cgroup v2 path (the ``0::/path`` line)."""
    with open(procfile, encoding="utf-8", errors="replace") as f:
        for line in f:
            if line.startswith("0::"):
                return line[3:].rstrip("\n")
    return None


def _mkdir(path: str) -> None:
    """Create ``path`` (0o755, ours), or accept it when it is already our real directory."""
    try:
        os.mkdir(path, 0o755)
    except FileExistsError:
        pass
    st = os.lstat(path)  # never follow a symlink
    if not stat.S_ISDIR(st.st_mode) or st.st_uid != os.getuid():
        raise PermissionError(f"{path} is not a directory of ours")


class Cgroups:
    """The run cgroups of one home; every method is a no-op once disabled."""

    def __init__(self, home: str, *, env: dict[str, str] | None = None, create: bool = True):
        """Set up the home's base (``create``: make it and sweep its empty run cgroups; else
        only find an existing one, as ``tsm kill`` does with no daemon)."""
        self.base: str | None = None
        self.reason = ""
        self._quiet = not create  # a command-line look-up prints nothing
        env = os.environ if env is None else env
        if env.get(DISABLE_ENV):
            self.reason = f"disabled by {DISABLE_ENV}"
            return
        try:
            mount = find_mount()
            if mount is None:
                self.reason = "no writable cgroup2 hierarchy"
                return
            point, root = mount
            own = own_path()
            if own is None:
                self.reason = "this process has no cgroup2 path"
                return
            if root != "/" and not (own == root or own.startswith(root.rstrip("/") + "/")):
                self.reason = f"own cgroup {own} is outside the mount's root {root}"
                return
            rel = own[len(root.rstrip("/")):] if root != "/" else own
            digest = hashlib.sha256(home.encode()).hexdigest()[:10]
            base = os.path.join(point + rel.rstrip("/"), f"tsm-{os.getuid()}-{digest}")
            if not create and not os.path.isdir(base):
                self.reason = "no run cgroup of this home"
                return
            _mkdir(base)
            self.base = base
            if create:
                self.sweep()
        except OSError as exc:
            self._disable(exc)

    # ------------------------------------------------------------------ set-up, state

    def _disable(self, exc: OSError) -> None:
        """Turn cgroups off for the daemon's life, logged once (every caller is a no-op after)."""
        if exc.errno in TRANSIENT and self.base is not None:
            log.info("a run goes without its cgroup (marker tracking only): %s", exc.strerror or exc)
            return
        self.reason = f"cannot be set up: {exc.strerror or exc}"
        self.base = None
        (log.debug if self._quiet else log.warning)("run cgroups disabled (marker tracking only): %s", self.reason)

    @property
    def enabled(self) -> bool:
        return self.base is not None

    def describe(self) -> str:
        """``/path (v2)`` when in use, else ``not used: reason`` (for ``tsm doctor``)."""
        return f"{self.base} (v2)" if self.base else f"not used: {self.reason}"

    def path(self, token: str | None) -> str | None:
        if not self.base or not token or "/" in token or token.startswith("."):
            return None
        return os.path.join(self.base, PREFIX + token)

    # ------------------------------------------------------------------ per run

    def prepare(self, token: str) -> int | None:
        """Create the run's cgroup and open its ``cgroup.procs`` for the child to join (see
        :func:`joiner`); None when cgroups are off. The caller closes the descriptor."""
        path = self.path(token)
        if path is None:
            return None
        try:
            _mkdir(path)
            return os.open(os.path.join(path, "cgroup.procs"), os.O_WRONLY | os.O_NOFOLLOW | os.O_CLOEXEC)
        except OSError as exc:
            self._disable(exc)
            return None

    def enter(self, token: str, pid: int) -> None:
        """Create the run's cgroup and move ``pid`` into it; on failure disable cgroups."""
        path = self.path(token)
        if path is None:
            return
        try:
            _mkdir(path)
            fd = os.open(os.path.join(path, "cgroup.procs"), os.O_WRONLY | os.O_NOFOLLOW)
            try:
                os.write(fd, str(pid).encode())
            finally:
                os.close(fd)
        except ProcessLookupError:
            self.remove(token)  # the child is already gone: nothing to hold
        except OSError as exc:
            self._disable(exc)

    def pids(self, token: str | None) -> list[int]:
        """The live pids in the run's cgroup (never pid <= 1 nor the daemon)."""
        path = self.path(token)
        return _read_procs(path) if path else []

    def signal(self, token: str | None, sig: int, *, signalled: int | None = None) -> list[int]:
        """Signal every process of the run's cgroup; SIGKILL through ``cgroup.kill`` where it
        exists. Return the pids found. ``signalled`` (the run's leader, just signalled through its
        group) is not signalled again one by one."""
        path = self.path(token)
        if path is None:
            return []
        pids = _read_procs(path)
        if not pids:
            return pids
        if sig == signal.SIGKILL and _write(os.path.join(path, "cgroup.kill"), "1"):
            return pids
        others = [p for p in pids if p != signalled]
        if others:
            _signal_members(path, others, sig)
        return pids

    def remove(self, token: str | None) -> bool:
        """rmdir the run's cgroup if it is empty; True once it is gone."""
        path = self.path(token)
        if path is None:
            return True
        try:
            os.rmdir(path)
        except FileNotFoundError:
            return True
        except OSError:
            return False
        return True

    # ------------------------------------------------------------------ the whole home

    def tokens(self) -> list[str]:
        """The tokens of every run cgroup under the base."""
        if not self.base:
            return []
        try:
            with os.scandir(self.base) as it:
                return sorted(e.name[len(PREFIX):] for e in it
                              if e.name.startswith(PREFIX) and e.is_dir(follow_symlinks=False))
        except OSError:
            return []

    def survivors(self) -> dict[int, str]:
        """``{pid: token}`` of every process in a run cgroup of this home."""
        return {pid: t for t in self.tokens() for pid in self.pids(t)}

    def sweep(self) -> list[str]:
        """Remove every empty run cgroup; return the tokens left (still populated)."""
        return [t for t in self.tokens() if not self.remove(t)]

    def stop_all(self, *, timeout: float = 5.0) -> list[int]:
        """With no daemon: SIGTERM, then SIGKILL after ``timeout``, every member of the home's
        run cgroups (a dead daemon's runs, ours by construction); remove the emptied cgroups and
        the base. Return the pids found."""
        import time

        found = sorted(set(self.survivors()))
        for sig in (signal.SIGTERM, signal.SIGKILL):
            for token in self.tokens():
                self.signal(token, sig)
            deadline = time.monotonic() + (timeout if sig == signal.SIGTERM else 2.0)
            while self.sweep() and time.monotonic() < deadline:
                time.sleep(0.02)
            if not self.tokens():
                break
        if self.base:
            try:
                os.rmdir(self.base)
            except OSError:
                pass
        return found


def joiner(fd: int):
    """A ``preexec_fn`` that moves the forked child into the cgroup whose ``cgroup.procs`` is
    ``fd`` ("0" is the writer itself), before it execs and before it can fork anything. It only
    makes one system call (no lock is taken in the forked child); a failure is left to the
    parent's :meth:`Cgroups.enter` after the spawn."""
    def join() -> None:
        try:
            os.write(fd, b"0")
        except OSError:
            pass
    return join


def _read_procs(path: str) -> list[int]:
    try:
        fd = os.open(os.path.join(path, "cgroup.procs"), os.O_RDONLY | os.O_NOFOLLOW)
        try:
            data = b""
            while chunk := os.read(fd, 65536):
                data += chunk
        finally:
            os.close(fd)
    except OSError:
        return []
    me = os.getpid()
    return [p for p in (int(x) for x in data.split() if x.isdigit()) if p > 1 and p != me]


def _write(path: str, value: str) -> bool:
    try:
        fd = os.open(path, os.O_WRONLY | os.O_NOFOLLOW)
    except OSError:
        return False
    try:
        os.write(fd, value.encode())
        return True
    except OSError:
        return False
    finally:
        os.close(fd)


def _signal_members(path: str, pids: list[int], sig: int) -> None:
    """Signal each pid through a pidfd opened before cgroup.procs is read again, so a pid that
    left (and was reused) after the first read is never hit."""
    fds: dict[int, int | None] = {}
    for pid in pids:
        try:
            fds[pid] = os.pidfd_open(pid) if hasattr(os, "pidfd_open") else None
        except OSError:
            pass
    try:
        still = set(_read_procs(path))
        for pid, fd in fds.items():
            if pid not in still:
                continue
            try:
                if fd is not None:
                    signal.pidfd_send_signal(fd, sig)
                else:
                    os.kill(pid, sig)
            except OSError:
                pass
    finally:
        for fd in fds.values():
            if fd is not None:
                os.close(fd)
