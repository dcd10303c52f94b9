"""`tsm doctor` through the real command line: ports and their holders, orphans by marker, stale
and quarantined state, the home's modes; `--fix` stops orphans, never a foreign process."""

from __future__ import annotations

import json
import os
import signal
import subprocess

from conftest import PY, accepts, free_port, pid_alive, wait_for


def orphan(tsm, tsm_id: int = 999) -> subprocess.Popen:
    """A process carrying the home's marker that no managed run owns."""
    env = dict(os.environ, TSM_HOME=str(tsm.home), TSM_ID=str(tsm_id), TSM_RUN=f"{tsm_id}.lost")
    return subprocess.Popen(["sleep", "601"], env=env, start_new_session=True)


def doctor(tsm, *args: str) -> dict:
    r = tsm.run("doctor", "--json", *args)
    assert r.returncode in (0, 1), r.stderr
    return json.loads(r.stdout)


def test_ports_are_listed_with_the_tsm_name_of_their_holder(tsm):
    port = free_port()
    tsm.run("start", f"{PY} -m http.server {port} --bind 127.0.0.1", "--name", "web", check=True)
    wait_for(lambda: accepts(port), message="the server")
    rows = [p for p in doctor(tsm)["ports"] if p["port"] == port]
    assert rows and rows[0]["ours"] and rows[0]["tsm_name"] == f"web-{port}", rows
    assert rows[0]["pid"] == tsm.row(f"web-{port}")["pid"]


def test_orphans_are_reported_and_fixed_but_foreign_processes_never(tsm, foreign):
    tsm.run("start", "sleep 700", "--name", "kept", check=True)
    lost = orphan(tsm)
    try:
        r = doctor(tsm)
        assert [o["pid"] for o in r["orphans"]] == [lost.pid]
        assert f"orphan: pid {lost.pid}" in tsm.run("patrol", check=True).stdout
        text = tsm.run("doctor")
        assert text.returncode == 1 and "doctor --fix" in text.stdout
        r = doctor(tsm, "--fix")
        assert any(str(lost.pid) in f for f in r["fixed"])
        wait_for(lambda: lost.poll() is not None, message="the orphan to be stopped")
        assert foreign.poll() is None
        assert tsm.row("kept")["status"] == "online"
        assert doctor(tsm)["orphans"] == []
    finally:
        if lost.poll() is None:
            lost.kill()
        lost.wait()


def test_with_a_dead_daemon_doctor_finds_survivors_and_stale_state_without_starting_one(tsm, foreign):
    tsm.run("start", "sh -c '(setsid sleep 1001 &); exec sleep 1000'", "--name", "d", check=True)
    pid = tsm.daemon_pid()
    os.kill(pid, signal.SIGKILL)
    wait_for(lambda: not pid_alive(pid), message="the daemon to die")
    tsm.client.close()
    r = doctor(tsm)
    assert r["daemon_pid"] is None and len(r["orphans"]) == 2
    assert {s["kind"] for s in r["stale"]} >= {"dead-daemon"}
    r = doctor(tsm, "--fix")
    assert not r["orphans"] or all(not pid_alive(o["pid"]) for o in r["orphans"])
    assert not (tsm.home / "daemon.json").exists() and not (tsm.home / "daemon.sock").exists()
    assert tsm.daemon_pid() is None  # doctor started no daemon
    assert foreign.poll() is None


def test_quarantined_state_and_home_checks_are_reported(tsm):
    tsm.run("start", "sleep 700", "--name", "q", check=True)
    tsm.client.kill(keep=True)
    (tsm.proc_dir("q") / "spec.json").write_text("null")
    tsm.run("ping", check=True)
    r = doctor(tsm)
    assert [s["kind"] for s in r["stale"]] == ["quarantined"]
    assert any("quarantined" in p for p in r["problems"])
    home = [c for c in r["checks"] if c["path"] == str(tsm.home)][0]
    assert home["ok"]
    os.chmod(tsm.home, 0o755)
    home = [c for c in doctor(tsm)["checks"] if c["path"] == str(tsm.home)][0]
    assert not home["ok"] and "0755" in home["detail"]
