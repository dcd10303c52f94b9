"""Start at boot: the systemd user unit of `tsm startup`, run by hand, and binder/start."""

from __future__ import annotations

import json
import os
import shlex
import subprocess
import sys
from pathlib import Path

import pytest

from conftest import PY, ROOT, pid_alive, wait_for
from tsm_notebook.client.client import Client

SLEEP = f"{PY} -c 'import time; time.sleep(600)'"
ANALYZE = "/usr/bin/systemd-analyze"


def unit_fields(text: str) -> dict[str, list[str]]:
    out: dict[str, list[str]] = {}
    for line in text.splitlines():
        if "=" in line and not line.startswith(("#", "[")):
            key, value = line.split("=", 1)
            out.setdefault(key, []).append(value)
    return out


def run_with(env: dict[str, str], *args: str) -> subprocess.CompletedProcess:
    r = subprocess.run([PY, "-m", "tsm_notebook", *args], env=env, capture_output=True, text=True, timeout=60,
                       stdin=subprocess.DEVNULL)
    assert r.returncode == 0, r.stderr
    return r


def saved_home(tsm) -> None:
    """A home with one saved process and no daemon (as after a reboot)."""
    tsm.run("start", "--name", "boot", SLEEP, check=True)
    assert "1 processes" in tsm.run("save", check=True).stdout
    tsm.run("kill", check=True)
    assert not (tsm.home / "daemon.sock").exists()


def test_startup_writes_a_unit_systemd_accepts_and_unstartup_removes_it(tsm, tmp_path):
    env = dict(tsm.env, XDG_CONFIG_HOME=str(tmp_path / "config"))
    printed = run_with(env, "startup", "--print").stdout
    assert not (tmp_path / "config").exists() and not (tsm.home / "daemon.sock").exists()  # writes, starts nothing
    fields = unit_fields(printed)
    assert fields["Type"] == ["simple"] and fields["WantedBy"] == ["default.target"]
    assert f'"TSM_HOME={tsm.home}"' in fields["Environment"]
    assert f'"PATH={os.environ["PATH"]}"' in fields["Environment"]  # the user's PATH, not systemd's
    argv = shlex.split(fields["ExecStart"][0])
    assert argv[1:] == ["-m", "tsm_notebook.engine", "--home", str(tsm.home), "--foreground", "--resurrect"]

    out = run_with(env, "startup").stdout
    units = list((tmp_path / "config" / "systemd" / "user").glob("tsm-notebook*.service"))
    assert len(units) == 1 and units[0].read_text() == printed
    assert "systemctl --user enable " + units[0].name in out and "loginctl enable-linger" in out
    if os.path.exists(ANALYZE):
        r = subprocess.run([ANALYZE, "verify", str(units[0])], capture_output=True, text=True, timeout=60)
        assert r.returncode == 0, r.stderr
    out = run_with(env, "unstartup").stdout
    assert "Removed" in out and not units[0].exists()
    assert "No boot unit" in run_with(env, "unstartup").stdout


@pytest.mark.skipif(not os.path.exists(ANALYZE), reason="no systemd-analyze here")
def test_systemd_analyze_refuses_a_broken_unit(tmp_path):
    """The check above can fail: the same tool refuses a relative ExecStart."""
    bad = tmp_path / "tsm-notebook-bad.service"
    bad.write_text("[Service]\nType=simple\nExecStart=python -m nothing\nWorkingDirectory=relative\n")
    assert subprocess.run([ANALYZE, "verify", str(bad)], capture_output=True, timeout=60).returncode != 0


def test_the_units_execstart_starts_a_daemon_that_resurrects_the_saved_list(tsm, tmp_path):
    saved_home(tsm)
    dump = (tsm.home / "dump.json").read_text()
    fields = unit_fields(tsm.run("startup", "--print", check=True).stdout)
    env = {"HOME": os.environ.get("HOME", "/root")}  # systemd's bare environment, plus the unit's
    for item in fields["Environment"]:
        key, value = shlex.split(item)[0].split("=", 1)
        env[key] = value
    daemon = subprocess.Popen(shlex.split(fields["ExecStart"][0].replace("$$", "$")), env=env,
                              stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    try:
        client = Client(tsm.home, autostart=False)
        row = wait_for(lambda: (tsm.home / "daemon.sock").exists() and
                       next((r for r in client.call("ls") if r["name"] == "boot" and r["status"] == "online"), None),
                       timeout=30, message="the saved process back under the unit's daemon")
        assert json.loads((tsm.home / "daemon.json").read_text())["pid"] == daemon.pid  # the foreground process
        assert pid_alive(row["pid"])
        assert (tsm.home / "dump.json").read_text() == dump  # read, never rewritten at boot
        client.kill(timeout=30)
        assert daemon.wait(timeout=30) == 0
    finally:
        if daemon.poll() is None:
            daemon.kill()
            daemon.wait()


def test_a_boot_with_nothing_saved_keeps_nothing_and_writes_no_list(tsm):
    fields = unit_fields(tsm.run("startup", "--print", check=True).stdout)
    daemon = subprocess.Popen(shlex.split(fields["ExecStart"][0]), env=tsm.env, stdin=subprocess.DEVNULL,
                              stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        client = Client(tsm.home, autostart=False)
        wait_for(lambda: (tsm.home / "daemon.sock").exists(), timeout=30, message="the daemon")
        assert client.call("ls") == [] and not (tsm.home / "dump.json").exists()
        client.kill(timeout=30)
        assert daemon.wait(timeout=30) == 0
    finally:
        if daemon.poll() is None:
            daemon.kill()
            daemon.wait()


def test_binder_start_resurrects_then_runs_the_server_command(tsm, tmp_path):
    saved_home(tsm)
    env = dict(tsm.env, PATH=f"{Path(sys.executable).parent}{os.pathsep}{os.environ['PATH']}")  # `tsm` is there
    marker = tmp_path / "server-ran"
    r = subprocess.run(["bash", str(ROOT / "binder" / "start"), "touch", str(marker)], env=env,
                       capture_output=True, text=True, timeout=60)
    assert r.returncode == 0 and "failed" not in r.stderr, r.stderr
    assert "Started: boot" in r.stdout and marker.exists()  # exec "$@": the server command ran
    assert [x["name"] for x in tsm.call("ls") if x["status"] == "online"] == ["boot"]
