"""Many commands at once against one home: a `kill -9` of the daemon with several processes and two
commands racing to start its successor, many simultaneous first commands, parallel `tsm start`s.

Every command here is the real `tsm` command line in its own process, started together and waited
for together, so their requests really overlap.
"""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys

import psutil

from conftest import PY, pid_alive, wait_for
from tsm_notebook.core import report
from tsm_notebook.core.paths import Home

SLEEP = f"{PY} -c 'import time; time.sleep(600)'"


def together(tsm, *commands: list[str]) -> list[subprocess.CompletedProcess]:
    """Run every command line at once (each a real `tsm` process); their results, in order."""
    procs = [subprocess.Popen([sys.executable, "-m", "tsm_notebook", *argv], env=tsm.env, stdout=subprocess.PIPE,
                              stderr=subprocess.PIPE, text=True, stdin=subprocess.DEVNULL) for argv in commands]
    results = []
    for argv, p in zip(commands, procs):
        out, err = p.communicate(timeout=120)
        results.append(subprocess.CompletedProcess(argv, p.returncode, out, err))
    return results


def daemons(tsm) -> list[int]:
    """Live daemon processes of this home (``python -m tsm_notebook.engine --home HOME``)."""
    found = []
    for p in psutil.process_iter(["cmdline", "status"]):
        cmd = p.info["cmdline"] or []
        if p.info["status"] != psutil.STATUS_ZOMBIE and "--home" in cmd and str(tsm.home) in cmd:
            found.append(p.pid)
    return found


def managed(tsm, name: str) -> list[int]:
    """Live processes started as ``name`` for this home (by the TSM_NAME the daemon gives each child)."""
    found = []
    for p in psutil.process_iter(["status"]):
        try:
            env = p.environ()
        except (psutil.Error, OSError):
            continue
        if p.info["status"] != psutil.STATUS_ZOMBIE and env.get("TSM_HOME") == str(tsm.home) \
                and env.get("TSM_NAME") == name:
            found.append(p.pid)
    return found


def test_kill9_recovery_of_several_processes_with_two_commands_racing(tsm):
    names = ["a", "b", "c"]
    for n in names + ["idle"]:
        tsm.run("start", SLEEP, "--name", n, check=True)
    tsm.run("stop", "idle", check=True)
    old = {n: tsm.row(n)["pid"] for n in names}
    dpid = tsm.daemon_pid()
    os.kill(dpid, signal.SIGKILL)
    wait_for(lambda: not pid_alive(dpid), message="the daemon gone")
    tsm.client.close()
    assert all(pid_alive(p) for p in old.values()), "the children outlive their daemon"

    # two commands at once, each finding no daemon: one successor, each process recovered once
    first, second = together(tsm, ["ls", "--json", "-a"], ["describe", "all", "--json"])
    assert first.returncode == 0 and second.returncode == 0, (first.stderr, second.stderr)
    assert {r["name"] for r in json.loads(first.stdout)} == set(names) | {"idle"}
    wait_for(lambda: len(daemons(tsm)) == 1 and tsm.daemon_pid() in daemons(tsm), message="one daemon")
    successor = tsm.daemon_pid()
    assert successor != dpid
    for n in names:
        row = tsm.wait_status(n, "online")
        assert row["pid"] != old[n]
        wait_for(lambda: not pid_alive(old[n]), message=f"the survivor of {n} stopped")
        assert managed(tsm, n) == [row["pid"]], n  # exactly one of each
    assert tsm.row("idle")["status"] == "stopped" and managed(tsm, "idle") == []
    assert daemons(tsm) == [successor]

    home = Home.resolve(tsm.home)
    tsm.call("history_flush")
    for n in names:
        evs = [e for e in report.events(home, n) if e["event"] in ("orphan-stopped", "recover", "start")]
        # start (the first daemon), then once each: the survivor stopped, recovered, started anew
        assert [e["event"] for e in evs] == ["start", "orphan-stopped", "recover", "start"], (n, evs)
        assert evs[1]["pid"] == old[n] and evs[3]["pid"] == tsm.row(n)["pid"]
    assert [e["event"] for e in report.events(home, "idle") if e["event"] in ("orphan-stopped", "recover")] == []


def test_many_first_commands_start_exactly_one_daemon(tsm):
    results = together(tsm, *(["ping"] for _ in range(8)))
    assert [r.returncode for r in results] == [0] * 8, [r.stderr for r in results]
    pids = {int(re.search(r"daemon pid (\d+)", r.stdout).group(1)) for r in results}
    assert len(pids) == 1, pids  # every command talked to the same daemon
    # the candidates that lost the race exit on their own (code 3): one daemon is left
    pid = pids.pop()
    wait_for(lambda: daemons(tsm) == [pid], message="the losing daemon candidates to exit")
    assert pid == tsm.daemon_pid()


def test_parallel_starts_keep_ids_and_metadata_intact(tsm):
    tsm.run("ping", check=True)
    names = [f"p{i}" for i in range(8)]
    results = together(tsm, *(["start", SLEEP, "--name", n] for n in names))
    assert [r.returncode for r in results] == [0] * 8, [r.stderr for r in results]
    rows = {r["name"]: r for r in tsm.call("ls")}
    assert sorted(rows) == names
    assert sorted(r["tsm_id"] for r in rows.values()) == list(range(8))  # no id given twice or skipped
    for n in names:
        meta = json.loads((tsm.proc_dir(n) / "meta.json").read_text())
        spec = json.loads((tsm.proc_dir(n) / "spec.json").read_text())
        assert meta["name"] == n and meta["tsm_id"] == rows[n]["tsm_id"] and meta["pid"] == rows[n]["pid"]
        assert spec["name"] == n
        assert (tsm.proc_dir(n) / f"{n}.pid").read_text().strip() == str(rows[n]["pid"])
        assert managed(tsm, n) == [rows[n]["pid"]]
    # the same start twice at once (a re-run cell, two terminals): one process, both told about it
    twice = together(tsm, ["start", SLEEP, "--name", "dup"], ["start", SLEEP, "--name", "dup"])
    assert [r.returncode for r in twice] == [0, 0], [r.stderr for r in twice]
    assert len(managed(tsm, "dup")) == 1 and tsm.row("dup")["tsm_id"] == 8
    assert sorted(r.stdout.split(":")[0] for r in twice) == ["Already running (same spec)", "Started"], [r.stdout for r in twice]
