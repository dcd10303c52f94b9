"""The command line beyond one machine: ``tsm hosts``, ``tsm forward``, ``-H`` (``tsm bridge``: cli/bridge.py).

``tsm -H gpu CMD`` (or ``tsm @gpu CMD``) runs CMD against the daemon of host ``gpu`` through
:class:`~tsm_notebook.client.remote.RemoteClient`; every read goes through a daemon request there
(nothing reads the remote's files). ``tsm ls -H all`` (or ``-H a,b``) asks every host at once and
prints a Host column; a host that does not answer within its timeout is one row saying so.
"""

from __future__ import annotations

import json
import os
import sys
import time
from pathlib import Path
TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Any

from ..client import commands
from ..client.client import Client
from ..client.remote import LOCAL, RemoteClient, configured_hosts, fan_out, forward_command, host_names
from ..core import render
from ..core.errors import TsmError, UsageError
from ..core.paths import Home

#: subcommands that run on one host at a time through -H, and those that fan out over several
FAN_OUT = ("ls", "ping")
LOCAL_ONLY = ("hosts", "forward", "bridge", "monit")


# ---------------------------------------------------------------------- tsm hosts


def _config_path(home: Home) -> Path:
    return home.config_file


def _header(name: str) -> str:
    return f"[hosts.{name}]"


def _without(text: str, name: str) -> tuple[str, bool]:
    """``text`` without the ``[hosts.NAME]`` table (its header up to the next header)."""
    out, skipping, found = [], False, False
    for line in text.splitlines(keepends=True):
        bare = line.split("#", 1)[0].strip().replace(" ", "")
        if bare.startswith("["):
            skipping = bare in (_header(name), f'[hosts."{name}"]')
            found = found or skipping
        if not skipping:
            out.append(line)
    return "".join(out), found


def _write_checked(home: Home, text: str) -> None:
    """Write ``config.toml`` only if the result loads: a bad edit never reaches the disk."""
    from ..core.config import Config

    path = _config_path(home)
    home.ensure()
    tmp = path.with_name(f".config.toml.{os.getpid()}.tmp")
    tmp.write_text(text, encoding="utf-8")
    try:
        Config.load(tmp)
    except UsageError as exc:
        tmp.unlink()
        raise UsageError(exc.message.replace(str(tmp), str(path))) from None
    os.chmod(tmp, 0o600)
    os.replace(tmp, path)


def hosts_cmd(ns, home: Home) -> int:
    """``tsm hosts add NAME USER@HOST [--remote-home H] [--tsm T] [--ssh-option A]...``, ``ls``,
    ``rm NAME``, ``check [NAME]``."""
    from ..core.config import check_host_name

    path = _config_path(home)
    hosts = configured_hosts(home)
    if ns.action == "add":
        if not ns.name or not ns.ssh:
            raise UsageError("tsm hosts add NAME USER@HOST: both are needed")
        check_host_name(ns.name)
        if ns.name in hosts:
            raise UsageError(f"host {ns.name!r} exists: `tsm hosts rm {ns.name}` first")
        q = json.dumps  # a JSON string is a TOML basic string
        lines = [_header(ns.name), f"ssh = {q(ns.ssh)}"]
        if ns.remote_home:
            lines.append(f"home = {q(ns.remote_home)}")
        if ns.tsm:
            lines.append(f"tsm = {q(ns.tsm)}")
        if ns.ssh_options:
            lines.append(f"ssh_options = [{', '.join(q(o) for o in ns.ssh_options)}]")
        if ns.timeout:
            lines.append(f"timeout = {q(ns.timeout)}")
        old = path.read_text(encoding="utf-8") if path.exists() else ""
        sep = "" if not old or old.endswith("\n\n") else ("\n" if old.endswith("\n") else "\n\n")
        _write_checked(home, old + sep + "\n".join(lines) + "\n")
        print(f"Added host {ns.name} ({ns.ssh}); `tsm hosts check {ns.name}` tries it")
        return 0
    if ns.action == "rm":
        if not ns.name or ns.name not in hosts:
            raise UsageError(f"no host named {ns.name!r}" if ns.name else "tsm hosts rm NAME: a name is needed")
        text, _ = _without(path.read_text(encoding="utf-8"), ns.name)
        _write_checked(home, text)
        print(f"Removed host {ns.name}")
        return 0
    if ns.action == "ls":
        if ns.json:
            print(json.dumps({n: {"ssh": h.ssh, "home": h.home, "tsm": h.tsm, "ssh_options": list(h.ssh_options),
                                  "timeout": h.timeout} for n, h in hosts.items()}, indent=2))
        else:
            print(render.table(("Name", "SSH", "Home", "TSM", "Options"),
                               [[n, h.ssh, h.home or "-", h.tsm, " ".join(h.ssh_options) or "-"] for n, h in sorted(hosts.items())]))
        return 0
    names = host_names(ns.name, hosts) if ns.name else sorted(hosts)
    if not names:
        raise UsageError("no hosts yet: add one with `tsm hosts add NAME user@host`")

    def ping(c: Client) -> dict:
        t0 = time.monotonic()
        info = c.call("ping")
        info["ms"] = (time.monotonic() - t0) * 1000
        return info

    results = fan_out(names, ping, home=home.root, hosts=hosts)
    failed = 0
    for name, r in results.items():
        if isinstance(r, TsmError):
            failed += 1
            print(f"{name}: {type(r).__name__}: {r.message}")
        else:
            print(f"{name}: ok: tsm_notebook {r['version']}, daemon pid {r['pid']}, {r['processes']} processes, "
                  f"home {r['home']}, {r['ms']:.0f} ms")
    return 1 if failed else 0


# ---------------------------------------------------------------------- fan-out


def fan_out_cmd(ns, names: list[str], home: Home) -> int:
    """``tsm ls -H all`` (and ``ping``): every host in parallel, a Host column, one row per failed host."""
    if ns.cmd not in FAN_OUT:
        raise UsageError(f"tsm {ns.cmd} works on one host at a time: use -H NAME (only {', '.join(FAN_OUT)} take several)")
    work = (lambda c: c.call("ls", all=ns.all)) if ns.cmd == "ls" else (lambda c: c.call("ping"))
    results = fan_out(names, work, home=home.root)
    failed = {n: r for n, r in results.items() if isinstance(r, TsmError)}
    if getattr(ns, "json", False):
        out = []
        for n, r in results.items():
            if n in failed:
                out.append({"host": n, "error": type(r).__name__, "message": r.message})
            else:
                out.extend({"host": n, **row} for row in (r if isinstance(r, list) else [r]))
        print(json.dumps(out, indent=2, default=str))
        return 1 if failed else 0
    if ns.cmd == "ping":
        for n, r in results.items():
            print(f"{n}: {type(r).__name__}: {r.message}" if n in failed else
                  f"{n}: pong: daemon pid {r['pid']}, version {r['version']}, {r['processes']} processes")
        return 1 if failed else 0
    rows = []
    for n, r in results.items():
        if n in failed:
            status = "version-mismatch" if type(r).__name__ == "VersionMismatch" else "unreachable"
            rows.append([n, "-", f"({status})", *["-"] * 3, status, *["-"] * 4])
        else:
            rows.extend([n, *render.ls_row(row)] for row in r)
    print(render.table(("Host", *render.LS_HEADERS), rows))
    for n, r in failed.items():
        print(f"{n}: {r.message}", file=sys.stderr)
    return 1 if failed else 0


# ---------------------------------------------------------------------- one remote host


def remote_start(c: RemoteClient, ns) -> int:
    """``tsm -H HOST start``: the host builds the spec (its paths, PATH and environment)."""
    print(render.started(c.call("start_build", build=commands.spec_kwargs(ns))))
    return 0


def _line(d: dict):
    from ..core.logread import LogLine

    return LogLine(d["stream"], d["raw"].encode("latin-1"), d["time"])


def remote_logs(c: RemoteClient, ns, print_line) -> int:
    """``tsm -H HOST logs`` (and ``-f``) through the ``logs`` and ``follow_*`` requests."""
    if ns.target == "rotate" and ns.rest:
        for name in c.call("rotate", target=ns.rest):
            print(f"Rotated: {name}")
        return 0
    if ns.rest:
        raise UsageError(f"tsm logs: unexpected argument {ns.rest!r}")
    stream = "out" if ns.out else "err" if ns.err else "both"
    if ns.since:
        from ..core.logread import parse_since

        parse_since(ns.since)  # a bad --since is refused here, with the local message
    args = {"target": ns.target, "stream": stream, "lines": ns.lines, "since": ns.since}
    if not ns.follow:
        groups = c.call("logs", **args)
        for g in groups:
            for d in g["lines"]:
                print_line(g["name"], _line(d), ns, labelled=len(groups) > 1)
        sys.stdout.flush()
        return 0
    opened = c.call("follow_open", **args)
    name, batch = opened["name"], opened["lines"]
    try:
        while True:
            for d in batch:
                print_line(name, _line(d), ns, labelled=False)
            sys.stdout.flush()
            batch = c.call("follow_poll", token=opened["token"], wait=2.0)["lines"]
    except KeyboardInterrupt:
        pass
    finally:
        try:
            c.call("follow_close", token=opened["token"])
        except (TsmError, OSError):
            pass
    return 0


def remote_history(c: RemoteClient, ns) -> int:
    """``tsm -H HOST events`` / ``report`` through the daemon's requests."""
    from ..core import report

    if ns.cmd == "events":
        rows = c.call("events", target=ns.target, since=ns.since)
        text = report.events_table(rows)
    else:
        rows = c.call("report", since=ns.since)
        text = report.report_table(rows)
    print(json.dumps(rows, indent=2, default=str) if ns.json else text)
    return 0


# ---------------------------------------------------------------------- tsm forward


def forward(ns, home: Home) -> int:
    """``tsm forward HOST:PORT``: a managed local process (``HOST-fwd-PORT``) running ``ssh -N -L``,
    so the remote port answers on this machine's 127.0.0.1 and is restarted if the link drops."""
    host_name, sep, port_text = ns.target.rpartition(":")
    if not sep or not host_name or not port_text.isdigit() or not 0 < int(port_text) < 65536:
        raise UsageError(f"tsm forward: {ns.target!r}: write HOST:PORT, e.g. gpu:8888")
    hosts = configured_hosts(home)
    host_names(host_name, hosts)
    if host_name == LOCAL:
        raise UsageError("tsm forward: the local host needs no forward")
    host = hosts[host_name]
    remote_port = int(port_text)
    local = ns.local_port or f"{remote_port}+"
    from ..core.spec import build_spec

    name, command = forward_command(host, remote_port)
    spec = build_spec(command=command, name=name, port=local, wait_port=True)
    with Client(home) as c:
        row = commands.start(c, spec)
    print(f"Forwarding http://127.0.0.1:{row['port']} -> {host_name}:{remote_port} (process {row['name']}; "
          f"`tsm stop {row['name']}` closes it)")
    return 0


def run(ns) -> int | None:
    """Handle what needs hosts (``hosts``, ``bridge``, ``forward``, ``-H``); None leaves the rest
    to the local command line."""
    home = Home.resolve(ns.home)
    if ns.cmd == "hosts":
        return hosts_cmd(ns, home)
    if ns.cmd == "forward":
        return forward(ns, home)
    if ns.host is None or ns.host == LOCAL:
        return None
    names = host_names(ns.host, configured_hosts(home))
    if len(names) > 1 or ns.host == "all" or "," in ns.host:
        return fan_out_cmd(ns, names, home)
    if names == [LOCAL]:
        return None
    if ns.cmd in LOCAL_ONLY:
        raise UsageError(f"tsm {ns.cmd} does not take -H")
    return -1  # the caller runs its handler with a RemoteClient


__all__ = ["fan_out_cmd", "forward", "hosts_cmd", "remote_history", "remote_logs", "remote_start", "run"]
