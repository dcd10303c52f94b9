"""The daemon against stray signals and files on disk: it never dies of a signal, children
inherit no ignored signal or mask, and one malformed file is quarantined while every other
process goes on."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys

import pytest

from conftest import pid_alive, wait_for
from tsm_notebook.core.report import events


def sig_fields(pid: int) -> dict[str, int]:
    out = {}
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            key, _, value = line.partition(":")
            if key in ("SigIgn", "SigBlk"):
                out[key] = int(value.strip(), 16)
    return out


def home_events(tsm) -> list[dict]:
    from tsm_notebook.core.paths import Home

    tsm.call("history_flush")
    return events(Home(tsm.home))


@pytest.mark.parametrize("sig", ["SIGHUP", "SIGUSR1", "SIGUSR2", "SIGQUIT", "SIGALRM", "SIGPIPE"])
def test_a_stray_signal_leaves_the_daemon_serving(tsm, sig):
    tsm.run("start", "sleep 600", "--name", "s", check=True)
    pid = tsm.daemon_pid()
    os.kill(pid, getattr(signal, sig))
    # a signal is delivered before the next request is answered on the daemon's loop
    assert tsm.call("ping")["pid"] == pid
    tsm.client.close()
    assert tsm.call("ping")["pid"] == pid
    assert tsm.row("s")["status"] == "online"


def test_hup_reloads_config_and_keeps_the_old_one_when_bad(tsm):
    tsm.run("ping", check=True)
    pid = tsm.daemon_pid()
    (tsm.home / "config.toml").write_text("[logs\nbroken = \n")
    os.kill(pid, signal.SIGHUP)
    wait_for(lambda: "config-error" in [e["event"] for e in home_events(tsm)], message="the refused reload")
    assert pid_alive(pid) and tsm.call("ping")["pid"] == pid
    (tsm.home / "config.toml").write_text("[history]\n")
    os.kill(pid, signal.SIGHUP)
    wait_for(lambda: "config-reload" in [e["event"] for e in home_events(tsm)], message="the reload")


def test_children_get_default_dispositions_and_an_empty_mask(tsm):
    """A daemon first started by `nohup`-like caller (SIGHUP ignored, signals blocked)."""

    def hostile():
        signal.signal(signal.SIGHUP, signal.SIG_IGN)
        signal.signal(signal.SIGINT, signal.SIG_IGN)
        signal.pthread_sigmask(signal.SIG_BLOCK, [signal.SIGUSR1, signal.SIGTERM])

    subprocess.run([sys.executable, "-m", "tsm_notebook", "ping"], env=tsm.env, check=True,
                   capture_output=True, preexec_fn=hostile, timeout=60)
    tsm.run("start", "sleep 600", "--name", "c", check=True)
    fields = sig_fields(tsm.row("c")["pid"])
    # only the signals a process can set count: glibc keeps 32 and 33 for itself (a caller's
    # shell may leave them ignored, and nothing in user space can reset them)
    settable = sum(1 << (int(s) - 1) for s in signal.valid_signals() if int(s) < 64)
    assert {k: v & settable for k, v in fields.items()} == {"SigIgn": 0, "SigBlk": 0}, fields


# ---------------------------------------------------------------------- files on disk


BAD_SPECS = {
    "empty": {},
    "null": None,
    "port": {"port": 70000},
    "argv": {"argv": []},
    "signal": {"stop_signal": "SIGFOO"},
    "kill": {"kill_timeout": "x"},
    "envval": {"env": {"A": 1}},
    "nul": {"argv": ["sleep", "6\u00000"]},
}


def _clone(tsm, src: str, name: str, *, spec=None, meta=None, env=None) -> None:
    """A copy of process ``src``'s directory as ``name``, with one part damaged."""
    d, new = tsm.proc_dir(src), tsm.proc_dir(name)
    new.mkdir()
    m = json.loads((d / "meta.json").read_text())
    s = json.loads((d / "spec.json").read_text())
    m.update(name=name, tsm_id=1000 + len(list(new.parent.iterdir())), status="online", pid=None)
    s["name"] = name
    s.update(spec or {})
    if meta:
        m.update(meta)
    (new / "meta.json").write_text(json.dumps(m))
    (new / "spec.json").write_text(json.dumps(s))
    (new / "env.json").write_text(json.dumps({} if env is None else env))


def test_malformed_files_are_quarantined_and_the_others_run(tsm):
    tsm.run("start", "sleep 600", "--name", "good", check=True)
    tsm.client.kill(keep=True)  # as `tsm update` does: "good" comes back with the next daemon
    for key, spec in BAD_SPECS.items():
        _clone(tsm, "good", f"bad-{key}", spec=spec)
    (tsm.proc_dir("bad-null") / "spec.json").write_text("null")
    (tsm.proc_dir("bad-empty") / "spec.json").write_text("{}")
    _clone(tsm, "good", "bad-restarts", meta={"restarts": "x"})
    _clone(tsm, "good", "bad-id")
    p = tsm.proc_dir("bad-id") / "meta.json"
    p.write_text(p.read_text().replace('"tsm_id":', '"tsm_id":1e999,"x":'))
    _clone(tsm, "good", "bad-env", env=["not", "an", "object"])
    _clone(tsm, "good", "bad-envstr", env={"A": 5})
    bad = sorted(x.name for x in tsm.proc_dir("good").parent.iterdir() if x.name.startswith("bad-"))
    assert len(bad) == 12
    r = tsm.run("patrol", check=True)  # starts the daemon, which recovers
    assert tsm.wait_status("good", "online")
    names = {row["name"] for row in tsm.call("ls")}
    assert names == {"good"}, names
    for name in bad:
        assert f"{name}: quarantined" in r.stdout, (name, r.stdout)
    q = tsm.home / "runtime" / "quarantine"
    assert sorted(x.name.rsplit(".", 1)[0] for x in q.iterdir()) == bad
    assert sum(e["event"] == "quarantined" for e in home_events(tsm)) == 12


def test_dump_gets_a_backup_and_resurrect_falls_back_to_it(tsm):
    tsm.run("start", "sleep 600", "--name", "a", check=True)
    tsm.run("save", check=True)
    tsm.run("save", check=True)
    assert (tsm.home / "dump.json.bak").exists()
    (tsm.home / "dump.json").write_text('{"processes": "not a list"}')
    tsm.run("delete", "a", check=True)
    r = tsm.call("resurrect")
    assert r["started"] == ["a"] and "backup" in r["note"]


def test_dump_entries_are_checked_one_by_one(tsm):
    tsm.run("start", "sleep 600", "--name", "a", check=True)
    tsm.run("start", "sleep 601", "--name", "b", check=True)
    tsm.run("save", check=True)
    dump = json.loads((tsm.home / "dump.json").read_text())
    dump["processes"][0]["port"] = 70000
    dump["processes"][1]["env"] = {"X": 3}
    dump["processes"].append("junk")
    (tsm.home / "dump.json").write_text(json.dumps(dump))
    tsm.run("delete", "all", check=True)
    tsm.run("start", "sleep 602", "--name", "c", check=True)
    r = tsm.call("resurrect")
    assert r["started"] == [] and set(r["failed"]) == {"a", "b", "None"}
    assert "port" in r["failed"]["a"] and "env[X]" in r["failed"]["b"]
    assert tsm.row("c")["status"] == "online"


def test_nul_bytes_are_refused_up_front_naming_the_field(tsm, tmp_path):
    envf = tmp_path / "e.env"
    envf.write_text("A=1\nB=x\0y\n")
    r = tsm.run("start", "sleep 600", "--name", "n", "--env-file", str(envf))
    assert r.returncode == 2 and "line 2" in r.stderr and "NUL" in r.stderr, r.stderr
    with pytest.raises(Exception) as e:
        tsm.call("start", spec={**_spec(tsm), "argv": ["sleep", "6\x000"]}, env={})
    assert "argv[1]" in str(e.value) and "NUL" in str(e.value)
    with pytest.raises(Exception) as e:
        tsm.call("start", spec=_spec(tsm), env={"K": "a\x00b"})
    assert "env[K]" in str(e.value)
    assert tsm.call("ls") == [] or all(row["name"] != "n" for row in tsm.call("ls"))
    assert not tsm.proc_dir("n").exists()


def _spec(tsm) -> dict:
    from tsm_notebook.core.spec import build_spec

    return build_spec("sleep 600", name="n").to_dict()


def test_usr1_reopens_the_logs_after_an_outside_rotation(tsm):
    tsm.run("start", "sh -c 'while true; do echo tick; sleep 0.05; done'", "--name", "r", check=True)
    pid = tsm.daemon_pid()
    log, out = tsm.home / "daemon.log", tsm.proc_dir("r") / "current.out"
    os.rename(log, tsm.home / "daemon.log.moved")
    os.rename(out, tsm.proc_dir("r") / "moved.out")
    os.kill(pid, signal.SIGUSR1)
    wait_for(lambda: log.exists() and "logs reopened" in log.read_text(), message="daemon.log to be reopened")
    wait_for(lambda: out.exists() and b"tick" in out.read_bytes(), message="current.out to be reopened")
    assert tsm.call("ping")["pid"] == pid
