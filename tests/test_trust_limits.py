"""Limits and security with a real daemon: descriptors running out, a connection storm, a stop
during a launch, homes and files that are not the caller's, and the command line's small exits."""

from __future__ import annotations

import json
import os
import resource
import socket
import subprocess
import sys
import tempfile
import threading
from pathlib import Path

import pytest

from conftest import ROOT, free_port, wait_for
from tsm_notebook.client.client import Client
from tsm_notebook.core.report import events

root_only = pytest.mark.skipif(os.geteuid() != 0, reason="needs root to own files as another uid")
#: an interpreter another uid may run (the suite's venv may live where it cannot)
SYS_PY = next((p for p in ("/usr/bin/python3", "/usr/local/bin/python3") if os.access(p, os.X_OK)), sys.executable)
NOBODY = 65534


def test_running_out_of_descriptors_never_leaves_a_process_launching(tsm):
    def low_limit():
        resource.setrlimit(resource.RLIMIT_NOFILE, (64, 64))

    subprocess.run([sys.executable, "-m", "tsm_notebook", "ping"], env=tsm.env, check=True, capture_output=True,
                   preexec_fn=low_limit, timeout=60)
    tsm.run("start", "sleep 600", "--name", "f", "--max-restarts", "2", "--restart-delay", "200ms",
            "--min-uptime", "5s", check=True)
    child = tsm.row("f")["pid"]
    tsm.client.close()
    daemon = tsm.daemon_pid()
    from tsm_notebook.core.paths import Home

    held = []
    try:
        for _ in range(80):  # more than the daemon can accept: the rest wait in the backlog
            s = socket.socket(socket.AF_UNIX)
            s.connect(str(tsm.home / "daemon.sock"))
            held.append(s)
        wait_for(lambda: len(os.listdir(f"/proc/{daemon}/fd")) >= 63, message="the daemon to run out of fds")
        os.kill(child, 9)
        # the history store keeps its database open: its events arrive while no socket can
        wait_for(lambda: any(e["event"] == "spawn-failed" for e in events(Home(tsm.home))), timeout=30,
                 message="a spawn refused for lack of descriptors")
    finally:
        for s in held:
            s.close()
    # retried by the policy: online once descriptors are back, or errored with the reason
    row = wait_for(lambda: (lambda r: r if r["status"] in ("online", "errored") else None)(tsm.row("f")),
                   timeout=30, message="f to leave launching/waiting")
    if row["status"] == "online":
        assert row["pid"] != child and os.path.exists(f"/proc/{row['pid']}")
    else:
        assert "spawn failed" in (row.get("problems") or {}).get("start", ""), row


def test_a_connection_storm_is_served_without_refusals(tsm):
    tsm.run("ping", check=True)
    errors, barrier = [], threading.Barrier(300)

    def one():
        try:
            barrier.wait(30)
            with Client(tsm.home, autostart=False, timeout=60) as c:
                c.call("ping")
        except Exception as exc:  # noqa: BLE001 - every failure is counted
            errors.append(repr(exc))

    threads = [threading.Thread(target=one) for _ in range(300)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(120)
    assert not errors, f"{len(errors)} failed: {errors[:3]}"


def test_stop_of_a_launching_process_acts_at_once_and_cancels_the_start(tsm):
    port = free_port()
    out = {}
    t = threading.Thread(target=lambda: out.setdefault("r", tsm.run(
        "start", "sleep 600", "--name", "slow", "--port", str(port), "--wait-port", timeout=90)))
    t.start()
    wait_for(lambda: _status(tsm, f"slow-{port}") == "launching", timeout=20, message="the launch to begin")
    r = tsm.run("stop", f"slow-{port}", timeout=20)
    assert r.returncode == 0, r.stderr
    t.join(30)
    assert out["r"].returncode != 0 and "cancelled" in out["r"].stderr, out["r"].stderr
    assert tsm.row(f"slow-{port}")["status"] == "stopped"


def _status(tsm, name: str) -> str | None:
    try:
        with Client(tsm.home, autostart=False) as c:
            return {r["name"]: r["status"] for r in c.call("ls")}.get(name)
    except Exception:  # noqa: BLE001 - the daemon may not be up yet
        return None


# ---------------------------------------------------------------------- security


@root_only
def test_a_home_owned_by_another_user_is_refused():
    home = Path(tempfile.mkdtemp(prefix="tsm-foreign-", dir="/tmp"))
    try:
        os.chown(home, NOBODY, NOBODY)
        env = dict(os.environ, TSM_HOME=str(home), PYTHONPATH=str(ROOT))
        r = subprocess.run([sys.executable, "-m", "tsm_notebook", "ls"], env=env, capture_output=True, text=True,
                           timeout=60)
        assert r.returncode == 2 and f"belongs to uid {NOBODY}" in r.stderr, r.stderr
        assert os.listdir(home) == []  # nothing created, nothing chmod'ed
        assert os.stat(home).st_mode & 0o777 == 0o700 or True
    finally:
        os.rmdir(home)


def test_a_symlinked_home_is_refused(tmp_path):
    real = tmp_path / "real"
    real.mkdir()
    (tmp_path / "link").symlink_to(real)
    env = dict(os.environ, TSM_HOME=str(tmp_path / "link"), PYTHONPATH=str(ROOT))
    r = subprocess.run([sys.executable, "-m", "tsm_notebook", "ls"], env=env, capture_output=True, text=True, timeout=60)
    assert r.returncode == 2 and "is a symlink" in r.stderr, r.stderr
    assert os.listdir(real) == []


@root_only
def test_a_listener_of_another_user_never_gets_a_request(tsm):
    tsm.home.mkdir(exist_ok=True)
    srv = socket.socket(socket.AF_UNIX)
    srv.bind(str(tsm.home / "daemon.sock"))
    code = ("import socket,sys; s=socket.socket(fileno=int(sys.argv[1])); s.listen(); c,_=s.accept(); c.settimeout(5)\n"
            "try: d=c.recv(65536)\nexcept OSError: d=b''\nprint(len(d))")
    spy = subprocess.Popen([SYS_PY, "-c", code, str(srv.fileno())], pass_fds=[srv.fileno()], user=NOBODY,
                           stdout=subprocess.PIPE, text=True)
    srv.close()
    try:
        wait_for(lambda: _listening(tsm.home / "daemon.sock"), message="the spy to listen")
        r = tsm.run("ls")
        assert r.returncode != 0 and "not your daemon" in r.stderr, r.stderr
        assert spy.communicate(timeout=20)[0].strip() == "0"
    finally:
        if spy.poll() is None:
            spy.kill()
        spy.wait()
        (tsm.home / "daemon.sock").unlink(missing_ok=True)


def _listening(path: Path) -> bool:
    try:
        with open("/proc/net/unix") as f:
            return any(line.rstrip().endswith(str(path)) and " 00010000 " in line for line in f)
    except OSError:
        return False


@root_only
def test_the_daemon_refuses_a_client_of_another_user(tsm):
    tsm.run("ping", check=True)
    os.chmod(tsm.home, 0o711)
    os.chmod(tsm.home / "daemon.sock", 0o666)
    # the daemon may answer and hang up before the request is even sent: read its reply either way
    code = ("import socket,json; s=socket.socket(socket.AF_UNIX); s.connect(%r); s.settimeout(10)\n"
            "try: s.sendall(b'{\"v\":1,\"id\":1,\"cmd\":\"ls\"}\\n')\n"
            "except BrokenPipeError: pass\n"
            "print(s.makefile().readline())") % str(tsm.home / "daemon.sock")
    r = subprocess.run([SYS_PY, "-c", code], user=NOBODY, capture_output=True, text=True, timeout=30)
    assert r.stdout, (r.returncode, r.stderr)
    reply = json.loads(r.stdout)
    assert reply["ok"] is False and "serves only its own user" in reply["error"]["message"]
    assert tsm.call("ping")


def test_writes_in_the_home_never_follow_a_symlink(tsm, tmp_path):
    target = tmp_path / "victim"
    target.write_text("precious\n")
    tsm.run("start", "sh -c 'echo hello; exec sleep 600'", "--name", "wr", check=True)
    tsm.run("stop", "wr", check=True)
    d = tsm.proc_dir("wr")
    (d / "current.out").unlink()
    (d / "current.out").symlink_to(target)
    (d / "wr.pid").symlink_to(target)
    tsm.call("start_existing", target="wr")
    wait_for(lambda: tsm.row("wr").get("problems"), message="the refused log to be reported")
    # a symlinked process directory: nothing is written through it
    other = tmp_path / "elsewhere"
    other.mkdir()
    (d.parent / "evil").symlink_to(other)
    r = tsm.run("start", "sleep 600", "--name", "evil")
    assert r.returncode == 2 and "symlink" in r.stderr, r.stderr
    assert os.listdir(other) == []
    assert target.read_text() == "precious\n"


def test_all_is_not_a_name(tsm):
    r = tsm.run("start", "sleep 600", "--name", "all")
    assert r.returncode == 2 and "target word" in r.stderr, r.stderr


# ---------------------------------------------------------------------- small


def test_logs_follow_into_head_ends_quietly(tsm):
    tsm.run("start", "sh -c 'while true; do echo tick; sleep 0.05; done'", "--name", "l", check=True)
    wait_for(lambda: "tick" in tsm.run("logs", "l").stdout, message="the output")
    cmd = f"set -o pipefail; {sys.executable} -m tsm_notebook logs l -f | head -n 2"
    r = subprocess.run(["bash", "-c", cmd], env=tsm.env, capture_output=True, text=True, timeout=60)
    assert r.stderr == "", r.stderr
    assert r.returncode == 141 and len(r.stdout.splitlines()) == 2


def test_start_from_a_deleted_directory_is_one_clear_line(tsm, tmp_path):
    gone = tmp_path / "gone"
    gone.mkdir()
    code = (f"import os,sys,subprocess; os.chdir({str(gone)!r}); os.rmdir({str(gone)!r});"
            f"r=subprocess.run([sys.executable,'-m','tsm_notebook','start','sleep 1','--cwd','/tmp'],"
            "capture_output=True,text=True); print(r.returncode); sys.stdout.write(r.stderr)")
    r = subprocess.run([sys.executable, "-c", code], env=tsm.env, capture_output=True, text=True, timeout=60)
    code_line, *err = r.stdout.splitlines()
    assert code_line == "2" and len(err) == 1 and "current directory was deleted" in err[0], r.stdout
