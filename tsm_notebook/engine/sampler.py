"""Resource samples of whole process trees (a managed process and all its descendants).

The daemon calls :meth:`Sampler.sample` every few seconds for the online processes and hands the
rows to :meth:`tsm_notebook.engine.store.Store.metrics`. On Linux one tick is one pass over
``/proc/*/stat``: that pass finds every tree AND gives each member's CPU time, memory and thread
count, so CPU and memory are exact at every tick without psutil. The dearer fields (open files,
I/O counters, listening ports: a directory listing, a readlink per fd, one more file and a netlink
query) are read again only for a process that ran since they were read (its CPU time moved), that
is new, or every :data:`SLOW_EVERY` ticks; a sleeping process keeps its last values, which cannot
have changed while it did not run, so a hundred idle sleepers cost the table pass and nothing
else. Elsewhere psutil does the work.
"""

from __future__ import annotations

import os
import socket
import struct
import sys
import time
from collections.abc import Callable

import psutil

__all__ = ["Sampler"]

_PROC = "/proc"
_LINUX = sys.platform.startswith("linux") and os.path.isdir(f"{_PROC}/self/fd")
_TABLE_MAX_AGE = 1.0  # seconds tree_rss() may reuse the process table of the last tick
SLOW_EVERY = 5  # ticks between two reads of the dear fields of a process that did not run
_HZ = os.sysconf("SC_CLK_TCK") if hasattr(os, "sysconf") else 100
_PAGE = os.sysconf("SC_PAGE_SIZE") if hasattr(os, "sysconf") else 4096
_TCP_LISTEN = 10  # TCP_LISTEN in the kernel's tcp_states.h


def _read(path: str) -> bytes:
    # os.read on a raw fd is about twice as fast as open().read() for the small /proc files.
    fd = os.open(path, os.O_RDONLY)
    try:
        return os.read(fd, 4096)
    finally:
        os.close(fd)


def _stat_fields(data: bytes) -> list[bytes]:
    """The fields of a ``/proc/PID/stat`` line after the command name, from the state on:
    0 state, 1 ppid, 11 utime, 12 stime, 17 threads, 19 start, 20 vsize, 21 rss (pages)."""
    # The command name may hold spaces and ")": fields start after the LAST ")".
    return data[data.rfind(b")") + 2 :].split(b" ", 22)


def _scan() -> dict[int, list[bytes]]:
    """``pid -> stat fields`` of every process (Linux), one read of each ``/proc/PID/stat``."""
    stats: dict[int, list[bytes]] = {}
    for entry in os.listdir(_PROC):
        if not entry.isdigit():
            continue
        try:
            stats[int(entry)] = _stat_fields(_read(f"{_PROC}/{entry}/stat"))
        except OSError:  # exited since listdir
            continue
    return stats


def _table_of(stats: dict[int, list[bytes]]) -> dict[int, tuple[int, float, bool]]:
    return {pid: (int(f[1]), float(f[19]), f[0] == b"Z") for pid, f in stats.items()}


def _process_table() -> dict[int, tuple[int, float, bool]]:
    """``pid -> (ppid, start, zombie)`` for every process, from psutil (the pass off Linux);
    ``start`` tells pid reuse apart."""
    table: dict[int, tuple[int, float, bool]] = {}
    for proc in psutil.process_iter(["ppid", "create_time", "status"]):
        info = proc.info
        if info["ppid"] is not None:
            zombie = info["status"] == psutil.STATUS_ZOMBIE
            table[proc.pid] = (info["ppid"], info["create_time"] or 0.0, zombie)
    return table


def _listening_ports() -> dict[int, int]:
    """``socket inode -> port`` of every listening TCP socket (v4 and v6) in our network namespace."""
    try:
        return _listening_netlink()
    except OSError:  # no sock_diag here (a sandbox, an old kernel): parse the text tables
        return _listening_procfs()


def _listening_netlink() -> dict[int, int]:
    # Asking sock_diag for LISTEN sockets only makes the kernel walk just its listening hash;
    # reading /proc/net/tcp walks the whole connection table (0.5 ms each even when empty).
    found: dict[int, int] = {}
    nl_sock_diag, sock_diag_by_family, nlm_f_request_dump = 4, 20, 0x301
    nlmsg_done, nlmsg_error = 3, 2
    with socket.socket(socket.AF_NETLINK, socket.SOCK_DGRAM, nl_sock_diag) as nl:
        for seq, family in enumerate((socket.AF_INET, socket.AF_INET6), 1):
            # inet_diag_req_v2: family, protocol, ext, pad, states bitmask, inet_diag_sockid (48 bytes)
            body = struct.pack("=BBBBI", family, socket.IPPROTO_TCP, 0, 0, 1 << _TCP_LISTEN) + bytes(48)
            nl.send(struct.pack("=IHHII", 16 + len(body), sock_diag_by_family, nlm_f_request_dump, seq, 0) + body)
            done = False
            while not done:
                data = nl.recv(65536)
                offset = 0
                while offset + 16 <= len(data):
                    length, kind = struct.unpack_from("=IH", data, offset)
                    if kind == nlmsg_done:
                        done = True
                        break
                    if kind == nlmsg_error:
                        errno = -struct.unpack_from("=i", data, offset + 16)[0]
                        raise OSError(errno, "sock_diag request refused")
                    # inet_diag_msg: 4 bytes, then sockid (sport big-endian first), ... inode at +68
                    port = struct.unpack_from(">H", data, offset + 16 + 4)[0]
                    inode = struct.unpack_from("=I", data, offset + 16 + 4 + 48 + 16)[0]
                    found[inode] = port
                    offset += (length + 3) & ~3
                if not data:
                    break
    return found


def _listening_procfs() -> dict[int, int]:
    found: dict[int, int] = {}
    for table in ("tcp", "tcp6"):
        try:
            with open(f"{_PROC}/net/{table}", "rb") as f:
                lines = f.read().splitlines()[1:]
        except OSError:  # no IPv6
            continue
        for line in lines:
            fields = line.split()
            if len(fields) > 9 and fields[3] == b"0A":  # 0A: LISTEN
                found[int(fields[9])] = int(fields[1].rsplit(b":", 1)[1], 16)
    return found


def _fds_and_sockets(pid: int, sockets: bool) -> tuple[int, list[int]]:
    """Open file count of ``pid`` and, if asked, the inodes of its sockets (Linux)."""
    base = f"{_PROC}/{pid}/fd/"
    fds = os.listdir(base)
    inodes: list[int] = []
    if sockets:
        for fd in fds:
            try:
                target = os.readlink(base + fd)
            except OSError:  # closed since listdir
                continue
            if target.startswith("socket:["):
                inodes.append(int(target[8:-1]))
    return len(fds), inodes


def _io_bytes(pid: int) -> tuple[int | None, int | None]:
    """``read_bytes, write_bytes`` of ``/proc/PID/io`` (``None, None`` when another user's)."""
    try:
        data = _read(f"{_PROC}/{pid}/io")
    except PermissionError:
        return None, None
    read = write = None
    for line in data.split(b"\n"):
        if line.startswith(b"read_bytes:"):
            read = int(line[11:])
        elif line.startswith(b"write_bytes:"):
            write = int(line[12:])
    return read, write


class _Member:
    """What the fast path remembers of one process between ticks."""

    __slots__ = ("ticks", "at", "dear_at", "fds", "read_bytes", "write_bytes", "inodes", "ports")

    def __init__(self) -> None:
        self.ticks = 0  # utime + stime, clock ticks
        self.at = 0.0  # time.monotonic() of that reading
        self.dear_at = -SLOW_EVERY  # tick number of the last read of the dear fields
        self.fds: int | None = None
        self.read_bytes: int | None = None
        self.write_bytes: int | None = None
        self.inodes: list[int] = []
        self.ports: set[int] | None = None  # listening ports among those inodes, once resolved


class Sampler:
    """Samples each online process TREE (the leader and all its descendants).

    ``psutil.Process`` objects are kept from one tick to the next, keyed by (pid, start time),
    because a fresh object's first ``cpu_percent()`` is a meaningless 0.0; objects of processes
    that were not seen in a tick are dropped, so memory stays bounded.
    """

    def __init__(self, *, clock: Callable[[], float] = time.time, portable: bool = False) -> None:
        """``clock`` gives the epoch seconds stamped on each row. ``portable=True`` takes the
        psutil pass that runs where there is no ``/proc`` (so tests run both passes here)."""
        self._clock = clock
        self._linux = _LINUX and not portable
        self._procs: dict[tuple[int, float], psutil.Process] = {}
        self._members: dict[tuple[int, float], _Member] = {}
        self._ticks = 0
        self._full_at = -SLOW_EVERY  # tick of the last full pass over /proc
        self._ran = True  # a member ran during the last tick (so a tree may have changed)
        self._trees: dict[int, list[int]] = {}  # leader -> tree, as of the last full pass
        self._stats: dict[int, list[bytes]] = {}
        self._table: dict[int, tuple[int, float, bool]] = {}
        self._children: dict[int, list[int]] = {}
        self._table_at = float("-inf")  # time.monotonic() of the last process-table read

    def sample(self, targets: dict[int, tuple[str, int]], *, ports: bool = True) -> list[dict]:
        """One row per live target: ``tsm_id -> (name, leader pid)`` in, Store.metrics rows out.

        Sums over the tree: ``cpu`` (percent of one core since the previous tick; ``None`` when
        every process of the tree is new this tick), ``rss``/``vms`` (bytes), ``threads``,
        ``fds``, ``read_bytes``/``write_bytes`` (cumulative bytes). ``children`` counts the
        descendants, ``ports`` is the sorted listening TCP ports of the tree (``None`` when
        ``ports`` is false). A field no process could report is ``None``. A target whose
        leader is gone or a zombie gets no row; processes that vanish or deny access are
        skipped quietly. Never raises for a dead process.
        """
        now = self._clock()
        if self._linux:
            return self._sample_linux(targets, now, ports)
        self._refresh_table()
        kept: dict[tuple[int, float], psutil.Process] = {}
        rows = []
        for tsm_id, (name, leader) in targets.items():
            tree = self._tree(leader)
            if not tree:
                continue
            row = {
                "time": now, "tsm_id": tsm_id, "name": name, "pid": leader, "cpu": None,
                "rss": None, "vms": None, "threads": None, "fds": None, "read_bytes": None,
                "write_bytes": None, "children": len(tree) - 1, "ports": None,
            }  # fmt: skip
            found: set[int] = set()  # listening ports of the tree
            leader_alive = False
            for pid in tree:
                key = (pid, self._table[pid][1])
                proc = self._procs.get(key)
                try:
                    if proc is None:
                        proc = psutil.Process(pid)
                        proc.cpu_percent()  # the baseline for the next tick
                        is_new = True
                    else:
                        is_new = False
                    self._sample_process(proc, row, found, is_new=is_new, ports=ports)
                except (psutil.NoSuchProcess, psutil.AccessDenied):
                    continue
                kept[key] = proc
                leader_alive = leader_alive or pid == leader
            if not leader_alive:
                continue
            if ports:
                row["ports"] = sorted(found)
            rows.append(row)
        self._procs = kept
        return rows

    def _sample_linux(self, targets: dict[int, tuple[str, int]], now: float, ports: bool) -> list[dict]:
        """:meth:`sample` from the stat fields of the table pass (see the module docstring)."""
        self._ticks += 1
        leaders = {leader for _, leader in targets.values()}
        if not self._quick_pass(leaders):
            self._refresh_table()
            self._full_at = self._ticks
            self._trees = {leader: self._tree(leader) for leader in leaders}
        self._ran = False
        mono = self._table_at
        kept: dict[tuple[int, float], _Member] = {}
        rows = []
        unresolved: list[_Member] = []  # re-read members holding sockets: one netlink query for all
        pending: list[tuple[dict, list[_Member]]] = []
        for tsm_id, (name, leader) in targets.items():
            tree = self._trees.get(leader) or []
            if not tree:
                continue
            row = {
                "time": now, "tsm_id": tsm_id, "name": name, "pid": leader, "cpu": None,
                "rss": 0, "vms": 0, "threads": 0, "fds": None, "read_bytes": None,
                "write_bytes": None, "children": len(tree) - 1, "ports": None,
            }  # fmt: skip
            members = []
            leader_alive = False
            for pid in tree:
                f = self._stats[pid]
                key = (pid, self._table[pid][1])
                ticks = int(f[11]) + int(f[12])
                member = self._members.get(key)
                new = member is None
                if new:
                    member = _Member()
                elif mono > member.at:
                    cpu = (ticks - member.ticks) / _HZ / (mono - member.at) * 100.0
                    row["cpu"] = cpu if row["cpu"] is None else row["cpu"] + cpu
                if not new and ticks != member.ticks:
                    self._ran = True  # it may have forked: the next tick makes a full pass
                if new or ticks != member.ticks or self._ticks - member.dear_at >= SLOW_EVERY or (ports and member.ports is None):
                    try:
                        self._read_dear(pid, member, ports)
                    except FileNotFoundError:  # gone since the table pass
                        continue
                    if ports and member.inodes:
                        unresolved.append(member)
                    elif ports:
                        member.ports = set()
                member.ticks, member.at = ticks, mono
                row["rss"] += int(f[21]) * _PAGE
                row["vms"] += int(f[20])
                row["threads"] += int(f[17])
                for field in ("fds", "read_bytes", "write_bytes"):
                    value = getattr(member, field)
                    if value is not None:
                        row[field] = value if row[field] is None else row[field] + value
                kept[key] = member
                members.append(member)
                leader_alive = leader_alive or pid == leader
            if leader_alive:
                pending.append((row, members))
        if unresolved:
            listening = _listening_ports()
            for member in unresolved:
                member.ports = {listening[i] for i in member.inodes if i in listening}
        for row, members in pending:
            if ports:
                row["ports"] = sorted(set().union(*(m.ports or () for m in members)))
            rows.append(row)
        self._members = kept
        return rows

    def _quick_pass(self, leaders: set[int]) -> bool:
        """Read only the known trees' stat lines, when none of them can have changed shape.

        A tree changes only when one of its processes runs (forks, exits) or dies: after a tick
        in which no member's CPU time moved, and no member is gone, the trees of the last full
        pass stand, so a tick costs one read per member instead of one per process on the
        machine. Every :data:`SLOW_EVERY` ticks a full pass runs anyway. False: do a full pass.
        """
        if self._ran or self._ticks - self._full_at >= SLOW_EVERY or not leaders <= self._trees.keys():
            return False
        stats: dict[int, list[bytes]] = {}
        for leader in leaders:
            for pid in self._trees[leader]:
                try:
                    f = _stat_fields(_read(f"{_PROC}/{pid}/stat"))
                except OSError:
                    return False
                if float(f[19]) != self._table[pid][1] or f[0] == b"Z":
                    return False
                stats[pid] = f
        self._stats = stats
        self._table_at = time.monotonic()
        return True

    def _read_dear(self, pid: int, member: _Member, ports: bool) -> None:
        """Read the open files, socket inodes and I/O counters of ``pid`` into ``member``."""
        member.dear_at = self._ticks
        try:
            member.fds, member.inodes = _fds_and_sockets(pid, ports)
        except PermissionError:
            member.fds, member.inodes = None, []
        member.read_bytes, member.write_bytes = _io_bytes(pid)
        member.ports = None

    @property
    def tracked(self) -> int:
        """How many processes are remembered for the next tick (those seen in the last one)."""
        return len(self._members) if self._linux else len(self._procs)

    def tree_rss(self, pid: int) -> int | None:
        """Current resident memory of the tree of ``pid`` in bytes; ``None`` if it is gone.

        Reuses the process table of a tick less than a second old, so checking every process
        after a tick costs one small file read per tree member.
        """
        if time.monotonic() - self._table_at > _TABLE_MAX_AGE:
            self._refresh_table()
        total = None
        for member in self._tree(pid):
            if self._linux:  # the member's own stat line now: one small read
                try:
                    f = _stat_fields(_read(f"{_PROC}/{member}/stat"))
                except OSError:
                    continue
                if float(f[19]) == self._table[member][1] and f[0] != b"Z":
                    total = (total or 0) + int(f[21]) * _PAGE
                continue
            # A fresh object, never stored: storing it would fake the cpu baseline of the next tick.
            proc = self._procs.get((member, self._table[member][1]))
            try:
                rss = (proc or psutil.Process(member)).memory_info().rss
            except (psutil.NoSuchProcess, psutil.AccessDenied):
                continue
            total = (total or 0) + rss
        return total

    def _refresh_table(self) -> None:
        if self._linux:
            self._stats = _scan()
            self._table = _table_of(self._stats)
        else:
            self._table = _process_table()
        children: dict[int, list[int]] = {}
        for pid, (ppid, _start, _zombie) in self._table.items():
            children.setdefault(ppid, []).append(pid)
        self._children = children
        self._table_at = time.monotonic()

    def _tree(self, leader: int) -> list[int]:
        """``leader`` then its live descendants (zombies skipped); ``[]`` if the leader is not live."""
        entry = self._table.get(leader)
        if entry is None or entry[2]:
            return []
        tree, i = [leader], 0
        while i < len(tree):
            for child in self._children.get(tree[i], ()):
                if child != tree[i]:  # pid 0's table entry lists itself on some systems
                    tree.append(child)
            i += 1
        return [pid for pid in tree if not self._table[pid][2]]

    @staticmethod
    def _sample_process(proc: psutil.Process, row: dict, found: set[int], *, is_new: bool, ports: bool) -> None:
        """Add one process's figures to ``row`` and its listening ports to ``found`` (the pass off
        Linux); nothing at all if it vanishes meanwhile."""
        with proc.oneshot():
            values = {}
            if not is_new:
                values["cpu"] = proc.cpu_percent()
            mem = proc.memory_info()
            values["rss"], values["vms"] = mem.rss, mem.vms
            values["threads"] = proc.num_threads()
            try:
                io = proc.io_counters()
                values["read_bytes"], values["write_bytes"] = io.read_bytes, io.write_bytes
            except (psutil.AccessDenied, AttributeError, NotImplementedError):
                pass  # another user's process, or a platform without io counters
            values["fds"] = proc.num_fds()
            if ports:
                conns = proc.net_connections("tcp")
                found.update(c.laddr.port for c in conns if c.status == psutil.CONN_LISTEN and c.laddr)
        for field, value in values.items():
            row[field] = value if row[field] is None else row[field] + value
