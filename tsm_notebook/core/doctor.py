"""``tsm doctor``: where a user goes when something is odd.

It reports, as raw data (a renderer formats it): the home's ownership and modes, the TCP ports
listening on the machine with their holders (the tsm name where the holder is ours), orphans
(processes carrying this home's marker that no managed run owns), and stale or quarantined
state. With ``fix`` it stops the orphans (each checked for the marker right before the signal,
never a foreign process) and clears stale state (temp files, pid files of processes not running,
a dead daemon's status file and socket). The daemon runs it with its knowledge of the live runs
(the ``doctor`` request); with no daemon the command line runs it alone, and then every marked
process is an orphan. Pure standard library on ``/proc``.
"""

from __future__ import annotations

import json
import os
import stat

from . import marker
from .paths import Home

TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Any

_LISTEN = "0A"


def _listening_inodes() -> dict[int, list[tuple[str, int]]]:
    """{socket inode: [(address, port)]} of every listening TCP socket (v4 and v6)."""
    out: dict[int, list[tuple[str, int]]] = {}
    for table in ("tcp", "tcp6"):
        try:
            with open(f"/proc/net/{table}") as f:
                next(f, None)
                for line in f:
                    parts = line.split()
                    if len(parts) < 10 or parts[3] != _LISTEN:
                        continue
                    addr, _, port = parts[1].rpartition(":")
                    out.setdefault(int(parts[9]), []).append((_address(addr), int(port, 16)))
        except OSError:
            continue
    return out


def _address(hexaddr: str) -> str:
    if len(hexaddr) == 8:
        return ".".join(str(int(hexaddr[i:i + 2], 16)) for i in (6, 4, 2, 0))
    return "::" if set(hexaddr) == {"0"} else "[v6]" if hexaddr != "00000000000000000000000001000000" else "::1"


def _cmdline(pid: int) -> str:
    try:
        with open(f"/proc/{pid}/cmdline", "rb") as f:
            return f.read().replace(b"\0", b" ").decode(errors="replace").strip()[:200]
    except OSError:
        return ""


def ports(home: Home, names: dict[int, str]) -> list[dict[str, Any]]:
    """Listening ports: ``{port, address, pid, command, tsm_name, tsm_id, ours}`` sorted by port.
    ``pid`` is None for sockets of processes we may not inspect (another user's, as non-root)."""
    inodes = _listening_inodes()
    holders: dict[int, int] = {}
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            fds = os.listdir(f"/proc/{entry}/fd")
        except OSError:
            continue
        for fd in fds:
            try:
                link = os.readlink(f"/proc/{entry}/fd/{fd}")
            except OSError:
                continue
            if link.startswith("socket:["):
                ino = int(link[8:-1])
                if ino in inodes:
                    holders.setdefault(ino, int(entry))
    rows, seen = [], set()
    for ino, addrs in inodes.items():
        pid = holders.get(ino)
        tid = None
        if pid is not None:
            env = marker.environ_marker(pid) or {}
            if env.get("TSM_HOME") == str(home.root) and marker.uid_of(pid) == os.getuid():
                try:
                    tid = int(env.get("TSM_ID", ""))
                except ValueError:
                    tid = None
        for address, port in addrs:
            if (port, address, pid) in seen:
                continue
            seen.add((port, address, pid))
            rows.append({"port": port, "address": address, "pid": pid,
                         "command": _cmdline(pid) if pid else None, "tsm_id": tid,
                         "tsm_name": names.get(tid) if tid is not None else None, "ours": tid is not None})
    return sorted(rows, key=lambda r: (r["port"], r["address"]))


def home_checks(home: Home) -> list[dict[str, Any]]:
    """Ownership and modes of the home and its key files: ``{path, ok, detail}``."""
    out = []
    me = os.geteuid()
    for path, want in ((home.root, 0o700), (home.socket, 0o600), (home.processes, None)):
        try:
            st = os.lstat(path)
        except FileNotFoundError:
            continue
        problems = []
        if stat.S_ISLNK(st.st_mode):
            problems.append("is a symlink")
        if st.st_uid != me:
            problems.append(f"belongs to uid {st.st_uid}, not {me}")
        mode = stat.S_IMODE(st.st_mode)
        if want is not None and mode & 0o077:
            problems.append(f"mode {mode:04o}, expected {want:04o}")
        out.append({"path": str(path), "ok": not problems, "detail": "; ".join(problems) or f"mode {mode:04o}, yours"})
    return out


def stale(home: Home, *, daemon_alive: bool, running: set[str]) -> list[dict[str, Any]]:
    """Stale or quarantined state: ``{kind, path, detail, fixable}``."""
    out = []
    q = home.root / "runtime" / "quarantine"
    if q.is_dir():
        for d in sorted(q.iterdir()):
            out.append({"kind": "quarantined", "path": str(d), "fixable": False,
                        "detail": "a process directory that could not be read; inspect it, then remove it"})
    if home.processes.is_dir():
        for d in sorted(home.processes.iterdir()):
            if not d.is_dir() or d.is_symlink():
                continue
            for f in d.iterdir():
                if f.name.startswith(".") and f.name.endswith(".tmp"):
                    out.append({"kind": "temp-file", "path": str(f), "fixable": True,
                                "detail": "left by an interrupted write"})
            pidfile = d / f"{d.name}.pid"
            if d.name not in running and (pidfile.exists() or pidfile.is_symlink()):
                out.append({"kind": "pid-file", "path": str(pidfile), "fixable": True,
                            "detail": "the process is not running"})
    if not daemon_alive:
        for f in (home.status_file, home.socket):
            if f.exists() or f.is_symlink():
                out.append({"kind": "dead-daemon", "path": str(f), "fixable": True,
                            "detail": "left by a daemon that is gone"})
    return out


def diagnose(home: Home, *, runs: dict[int, tuple[str, str | None]] | None = None, daemon_pid: int | None = None,
             fix: bool = False) -> dict[str, Any]:
    """The whole report. ``runs`` maps each managed tsm_id to (name, live run token or None)
    (None: no daemon; names are then read from meta.json and every marked process is an orphan)."""
    names: dict[int, str] = {}
    if runs is not None:
        names = {tid: name for tid, (name, _) in runs.items()}
    elif home.processes.is_dir():
        for d in home.processes.iterdir():
            try:
                meta = json.loads((d / "meta.json").read_text())
                names[int(meta["tsm_id"])] = str(meta["name"])
            except (OSError, ValueError, KeyError, TypeError):
                continue
    live_tokens = {tok for _, tok in (runs or {}).values() if tok}
    # never the daemon, nor this process's own ancestors (a shell of a managed process)
    exclude = {*_ancestors(), *((daemon_pid,) if daemon_pid else ())}
    orphans = []
    for pid, (tid, token) in sorted(marker.marked(str(home.root), exclude=exclude).items()):
        if token in live_tokens:
            continue
        orphans.append({"pid": pid, "tsm_id": tid, "tsm_name": names.get(tid), "command": _cmdline(pid),
                        "start_time": marker.start_time(pid)})
    running = {name for tid, (name, tok) in (runs or {}).items() if tok}
    report = {
        "home": str(home.root),
        "daemon_pid": daemon_pid,
        "checks": home_checks(home),
        "ports": ports(home, names),
        "orphans": orphans,
        "stale": stale(home, daemon_alive=daemon_pid is not None, running=running),
        "fixed": [],
    }
    if fix:
        report["fixed"] = _fix(home, report)
    return report


def _ancestors() -> set[int]:
    out, pid = set(), os.getpid()
    while pid > 1 and pid not in out:
        out.add(pid)
        try:
            with open(f"/proc/{pid}/stat", "rb") as f:
                data = f.read()
            pid = int(data[data.rindex(b")") + 2:].split()[1])
        except (OSError, ValueError, IndexError):
            break
    return out


def _fix(home: Home, report: dict[str, Any]) -> list[str]:
    done = []
    pids = [o["pid"] for o in report["orphans"]]
    if pids:
        marker.stop_marked(str(home.root), pids)
        gone = [p for p in pids if marker.start_time(p) is None]
        done.extend(f"orphan pid {p} stopped" for p in gone)
    for s in report["stale"]:
        if not s["fixable"]:
            continue
        try:
            os.unlink(s["path"])
            done.append(f"removed {s['path']} ({s['kind']})")
        except OSError as exc:
            done.append(f"could not remove {s['path']}: {exc.strerror or exc}")
    return done


def render(report: dict[str, Any]) -> str:
    """The report as text, one finding a line."""
    lines = [f"home {report['home']}" + (f" (daemon pid {report['daemon_pid']})" if report["daemon_pid"] else " (no daemon running)")]
    for c in report["checks"]:
        lines.append(f"  {'ok' if c['ok'] else 'PROBLEM'}: {c['path']}: {c['detail']}")
    if report.get("cgroups"):  # said by the daemon: whether each run has its own cgroup
        lines.append(f"cgroups: {report['cgroups']}")
    lines.append("listening ports:" if report["ports"] else "listening ports: none")
    for p in report["ports"]:
        who = f"tsm {p['tsm_name'] or '?'} (TSM ID {p['tsm_id']})" if p["ours"] else "not tsm"
        holder = f"pid {p['pid']} {p['command']}" if p["pid"] else "holder not visible"
        lines.append(f"  {p['port']:>5} {p['address']:<9} {who}: {holder}")
    lines.append(f"orphans: {len(report['orphans'])}" if report["orphans"] else "orphans: none")
    for o in report["orphans"]:
        lines.append(f"  pid {o['pid']} of {o['tsm_name'] or 'an unknown process'} (TSM ID {o['tsm_id']}): {o['command']}")
    lines.append("stale state:" if report["stale"] else "stale state: none")
    for s in report["stale"]:
        lines.append(f"  {s['kind']}: {s['path']}: {s['detail']}")
    for f in report["fixed"]:
        lines.append(f"fixed: {f}")
    if not report["fixed"] and (report["orphans"] or any(s["fixable"] for s in report["stale"])):
        lines.append("run `tsm doctor --fix` to stop the orphans and clear the stale state")
    return "\n".join(lines)
