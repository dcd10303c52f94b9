"""Engine trust with a real daemon and real children: what is not ours is never touched, what is
ours never escapes (setsid, double fork), whether the daemon stops it, crashes or is killed."""

from __future__ import annotations

import json
import os
import signal
import subprocess

import pytest

from conftest import PY, pid_alive, wait_for
from tsm_notebook.core import marker

ESCAPER = "sh -c '(setsid sleep 1001 &); (sleep 1002 &); exec sleep 1000'"


def marked(tsm) -> dict[int, list[str]]:
    """Live processes carrying the home's marker: {pid: cmdline}."""
    out = {}
    for pid in marker.marked(str(tsm.home)):
        try:
            with open(f"/proc/{pid}/cmdline", "rb") as f:
                out[pid] = f.read().decode().split("\0")
        except OSError:
            pass
    return out


def sleepers(tsm, arg: str) -> list[int]:
    return [p for p, cmd in marked(tsm).items() if cmd[:2] == ["sleep", arg]]


def kill_daemon(tsm) -> None:
    pid = tsm.daemon_pid()
    os.kill(pid, signal.SIGKILL)
    wait_for(lambda: not pid_alive(pid), message="daemon to die")


def start_escaper(tsm, name: str = "d", *extra: str) -> dict:
    tsm.run("start", ESCAPER, "--name", name, *extra, check=True)
    wait_for(lambda: sleepers(tsm, "1001") and sleepers(tsm, "1002"), message="the escapees to run")
    return tsm.row(name)


def test_recovery_never_kills_a_foreign_pid_without_start_time(tsm, foreign):
    tsm.run("start", "sleep 700", "--name", "a", check=True)
    old = tsm.row("a")["pid"]
    kill_daemon(tsm)
    os.kill(old, signal.SIGKILL)
    wait_for(lambda: not marked(tsm), message="the old child to die")
    meta_path = tsm.proc_dir("a") / "meta.json"
    meta = json.loads(meta_path.read_text())
    meta.update(pid=foreign.pid, pid_create_time=None)
    meta_path.write_text(json.dumps(meta))
    tsm.client.close()
    tsm.run("ping", check=True)  # the new daemon recovers "a"
    row = tsm.wait_status("a", "online")
    assert row["pid"] != foreign.pid
    assert foreign.poll() is None, "recovery signalled a process that was not its own"


def test_marker_and_uid_are_on_every_descendant(tsm):
    start_escaper(tsm)
    row = tsm.row("d")
    for pid in sleepers(tsm, "1001") + sleepers(tsm, "1002") + [row["pid"]]:
        env = marker.environ_marker(pid)
        assert env["TSM_HOME"] == str(tsm.home) and env["TSM_ID"] == str(row["tsm_id"])
        assert env["TSM_RUN"] == row["run_token"]
        assert marker.uid_of(pid) == os.getuid()
    assert marker.is_ours(row["pid"], row["pid_create_time"], str(tsm.home), row["tsm_id"])
    assert not marker.is_ours(row["pid"], None, str(tsm.home))


@pytest.mark.parametrize("action", ["stop", "delete", "restart"])
def test_setsid_and_double_forked_descendants_do_not_escape(tsm, action):
    start_escaper(tsm)
    before = set(sleepers(tsm, "1001"))
    tsm.run(action, "d", check=True)
    wait_for(lambda: not before & set(sleepers(tsm, "1001")), message="the setsid sleeper to go")
    assert not before & set(sleepers(tsm, "1001"))
    if action == "restart":  # exactly the new run's copy
        wait_for(lambda: len(sleepers(tsm, "1001")) == 1, message="the new run's escapee")
    else:
        assert not marked(tsm)


def test_tsm_kill_leaves_no_escapee(tsm):
    start_escaper(tsm)
    tsm.client.close()
    tsm.run("kill", check=True)
    assert not marked(tsm)


def test_crash_of_the_leader_takes_its_escapees(tsm):
    row = start_escaper(tsm)
    first = set(sleepers(tsm, "1001"))
    os.kill(row["pid"], signal.SIGKILL)
    wait_for(lambda: not first & set(sleepers(tsm, "1001")), message="the crashed run's escapee to go")
    tsm.wait_status("d", "online")
    wait_for(lambda: len(sleepers(tsm, "1001")) == 1 and len(sleepers(tsm, "1000")) == 1,
             message="exactly one copy of the restarted tree")


def test_daemon_kill9_then_recovery_leaves_exactly_one_tree(tsm):
    start_escaper(tsm)
    old = set(marked(tsm))
    kill_daemon(tsm)
    tsm.client.close()
    tsm.run("ping", check=True)
    wait_for(lambda: not old & set(marked(tsm)), timeout=15, message="the old tree to be stopped")
    tsm.wait_status("d", "online")
    wait_for(lambda: [len(sleepers(tsm, a)) for a in ("1000", "1001", "1002")] == [1, 1, 1],
             message="exactly one copy of each process of the tree")


def test_crash_window_child_is_managed_exactly_once(tsm):
    """A daemon killed after the spawn, before meta.json named the pid: the intent (the run's
    token) is on disk, the child carries it; recovery stops it and runs one copy."""
    tsm.run("start", "sleep 800", "--name", "w", check=True)
    row = tsm.row("w")
    kill_daemon(tsm)
    os.kill(row["pid"], signal.SIGKILL)
    wait_for(lambda: not marked(tsm), message="the old child to die")
    token = f"{row['tsm_id']}.crashwindow"
    env = dict(os.environ, TSM_HOME=str(tsm.home), TSM_ID=str(row["tsm_id"]), TSM_RUN=token, TSM_NAME="w")
    orphan = subprocess.Popen(["sleep", "800"], env=env, start_new_session=True)
    try:
        meta_path = tsm.proc_dir("w") / "meta.json"
        meta = json.loads(meta_path.read_text())
        meta.update(status="launching", pid=None, pid_create_time=None, run_token=token)
        meta_path.write_text(json.dumps(meta))
        tsm.client.close()
        tsm.run("ping", check=True)
        wait_for(lambda: orphan.poll() is not None, timeout=15, message="the crash-window orphan to be stopped")
        tsm.wait_status("w", "online")
        wait_for(lambda: len(sleepers(tsm, "800")) == 1, message="one copy of w")
    finally:
        if orphan.poll() is None:
            orphan.kill()
        orphan.wait()


def test_tsm_kill_with_a_dead_daemon_still_stops_the_home(tsm, foreign):
    start_escaper(tsm)
    tsm.run("start", "sleep 900", "--name", "b", check=True)
    assert len(marked(tsm)) == 4
    kill_daemon(tsm)
    tsm.client.close()
    r = tsm.run("kill", check=True)
    assert "stopped" in r.stdout, r.stdout
    assert not marked(tsm)
    assert foreign.poll() is None


def test_stop_all_after_a_daemon_kill9_stops_every_tree_once(tsm):
    start_escaper(tsm)
    old = set(marked(tsm))
    kill_daemon(tsm)
    tsm.client.close()
    tsm.run("stop", "all", check=True)  # a new daemon recovers, then stops
    assert not old & set(marked(tsm))
    wait_for(lambda: not marked(tsm), message="nothing of the home to run")
    assert tsm.row("d")["status"] == "stopped"


REDIS = "/usr/bin/redis-server"


@pytest.mark.skipif(not os.path.exists(REDIS) and not os.environ.get("CI"), reason="redis-server is not installed")
def test_a_leader_that_overwrites_its_environment_is_still_recovered_once(tsm, port):
    # redis-server sets its process title over the memory /proc/PID/environ shows, so its marker
    # cannot be read: the pid and start time the daemon recorded still prove it is ours
    tsm.run("start", "--name", "r", "--port", str(port), "--", REDIS, "--port", str(port), "--save", "",
            "--bind", "127.0.0.1", check=True)
    old = tsm.row(f"r-{port}")["pid"]
    assert marker.environ_marker(old) == {}  # the premise: no TSM_* left to read
    daemon = tsm.daemon_pid()
    tsm.client.close()
    os.kill(daemon, signal.SIGKILL)
    wait_for(lambda: not pid_alive(daemon), message="the daemon to die")
    tsm.run("ping", check=True)
    row = wait_for(lambda: (lambda r: r if r["status"] == "online" and r["pid"] != old else None)(tsm.row(f"r-{port}")),
                   20, message="redis recovered under a new pid")
    assert not pid_alive(old)
    assert row["restarts"] == 0 and row["status"] == "online"  # it did not crash-loop on its old self's port
