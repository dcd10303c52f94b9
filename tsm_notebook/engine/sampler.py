"""Resource samples of whole process trees (a managed process and all its descendants), via psutil.

The daemon calls :meth:`Sampler.sample` every few seconds for the online processes and hands the
rows to :meth:`tsm_notebook.store.Store.metrics`. One tick reads the process table once (one pass
over ``/proc/*/stat`` on Linux) to find every tree, asks the kernel once for the listening TCP
sockets (netlink ``sock_diag``, else ``/proc/net/tcp*``), and reads only the tree members' own
files after that, so its cost grows with the managed processes, not with the machine.
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
_TCP_LISTEN = 10  # TCP_LISTEN in the kernel's tcp_states.h


def _read(path: str) -> bytes:
    # os.read on a raw fd is about twice as fast as open().read() for the small /proc files.
    fd = os.open(path, os.O_RDONLY)
    try:
        return os.read(fd, 4096)
    finally:
        os.close(fd)


def _process_table() -> dict[int, tuple[int, float, bool]]:
    """``pid -> (ppid, start, zombie)`` for every process; ``start`` tells pid reuse apart."""
    table: dict[int, tuple[int, float, bool]] = {}
    if _LINUX:
        for entry in os.listdir(_PROC):
            if not entry.isdigit():
                continue
            try:
                data = _read(f"{_PROC}/{entry}/stat")
            except OSError:  # exited since listdir
                continue
            # The command name may hold spaces and ")": fields start after the LAST ")".
            fields = data[data.rfind(b")") + 2 :].split(b" ", 20)
            table[int(entry)] = (int(fields[1]), float(fields[19]), fields[0] == b"Z")
        return table
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


class Sampler:
    """Samples each online process TREE (the leader and all its descendants).

    ``psutil.Process`` objects are kept from one tick to the next, keyed by (pid, start time),
    because a fresh object's first ``cpu_percent()`` is a meaningless 0.0; objects of processes
    that were not seen in a tick are dropped, so memory stays bounded.
    """

    def __init__(self, *, clock: Callable[[], float] = time.time) -> None:
        """``clock`` gives the epoch seconds stamped on each row."""
        self._clock = clock
        self._procs: dict[tuple[int, float], psutil.Process] = {}
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
        self._refresh_table()
        kept: dict[tuple[int, float], psutil.Process] = {}
        listening: dict[int, int] | None = None
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
            inodes: list[int] = []  # socket inodes held by the tree (Linux)
            found: set[int] = set()  # listening ports seen directly (elsewhere)
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
                    self._sample_process(proc, row, inodes, found, is_new=is_new, ports=ports)
                except (psutil.NoSuchProcess, psutil.AccessDenied):
                    continue
                kept[key] = proc
                leader_alive = leader_alive or pid == leader
            if not leader_alive:
                continue
            if ports:
                if inodes and listening is None:
                    listening = _listening_ports()
                if inodes:
                    found.update(listening[i] for i in inodes if i in listening)
                row["ports"] = sorted(found)
            rows.append(row)
        self._procs = kept
        return rows

    @property
    def tracked(self) -> int:
        """How many process objects are kept for the next tick (those seen in the last one)."""
        return len(self._procs)

    def tree_rss(self, pid: int) -> int | None:
        """Current resident memory of the tree of ``pid`` in bytes; ``None`` if it is gone.

        Reuses the process table of a tick less than a second old, so checking every process
        after a tick costs one small file read per tree member.
        """
        if time.monotonic() - self._table_at > _TABLE_MAX_AGE:
            self._refresh_table()
        total = None
        for member in self._tree(pid):
            # A fresh object, never stored: storing it would fake the cpu baseline of the next tick.
            proc = self._procs.get((member, self._table[member][1]))
            try:
                rss = (proc or psutil.Process(member)).memory_info().rss
            except (psutil.NoSuchProcess, psutil.AccessDenied):
                continue
            total = (total or 0) + rss
        return total

    def _refresh_table(self) -> None:
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
    def _sample_process(
        proc: psutil.Process, row: dict, inodes: list[int], found: set[int], *, is_new: bool, ports: bool
    ) -> None:
        """Add one process's figures to ``row``, its socket inodes to ``inodes`` (Linux) or its
        listening ports to ``found`` (elsewhere); nothing at all if it vanishes meanwhile."""
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
            if _LINUX:
                try:
                    values["fds"], found = _fds_and_sockets(proc.pid, ports)
                    inodes.extend(found)
                except PermissionError:
                    pass
                except FileNotFoundError:
                    raise psutil.NoSuchProcess(proc.pid) from None
            else:
                values["fds"] = proc.num_fds()
                if ports:
                    conns = proc.net_connections("tcp")
                    found.update(c.laddr.port for c in conns if c.status == psutil.CONN_LISTEN and c.laddr)
        for field, value in values.items():
            row[field] = value if row[field] is None else row[field] + value
