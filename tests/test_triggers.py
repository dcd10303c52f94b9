"""Triggers on a real daemon: watch & restart, cron schedules, event hooks, reset.

Cron is proven with seconds-resolution schedules (six fields, seconds first), so nothing waits
minutes; the daemon's clock is the real one.
"""

from __future__ import annotations

import json
import os
import textwrap
import time

from conftest import PY, pid_alive, wait_for
from tsm_notebook.core.paths import Home
from tsm_notebook.core import report

SLEEP = f"{PY} -c 'import time; time.sleep(600)'"


def events(tsm, name: str, kind: str | None = None) -> list[dict]:
    tsm.call("history_flush")
    rows = report.events(Home(tsm.home), name)
    return [r for r in rows if kind is None or r["event"] == kind]


# ---------------------------------------------------------------------- watch


def test_saving_watched_files_restarts_once_and_ignored_paths_do_not(tsm, tmp_path):
    app = tmp_path / "app"
    for d in ("data", ".git", "node_modules", "__pycache__", ".ipynb_checkpoints"):
        (app / d).mkdir(parents=True)
    (app / "app.py").write_text("import time\ntime.sleep(600)\n")
    tsm.run("start", "--name", "w", "--cwd", str(app), "--watch", "--watch-ignore", "data", "--", PY, "app.py",
            check=True)
    first = tsm.wait_status("w", "online")
    assert first["restarts"] == 0
    wait_for(lambda: events(tsm, "w", "watching"), message="the watches to be in place")

    # a burst of saves: one restart
    for i in range(5):
        (app / f"mod{i}.py").write_text(f"x = {i}\n")
    (app / "app.py").write_text("import time\ntime.sleep(600)  # edited\n")
    wait_for(lambda: events(tsm, "w", "watch"), message="a watch restart")
    second = tsm.wait_status("w", "online")
    wait_for(lambda: tsm.row("w")["restarts"] == 1 and tsm.row("w")["status"] == "online", message="one restart")
    second = tsm.row("w")
    assert second["pid"] != first["pid"] and not pid_alive(first["pid"])

    # ignored paths, then one watched file as a barrier: the next restart names that file alone
    for d in ("data", ".git", "node_modules", "__pycache__", ".ipynb_checkpoints"):
        (app / d / "x.txt").write_text("ignored\n")
    (tsm.home / "stray.txt").write_text("the home is never watched\n")
    (app / "barrier.py").write_text("y = 1\n")
    wait_for(lambda: len(events(tsm, "w", "watch")) >= 2, message="the barrier's restart")
    watch = events(tsm, "w", "watch")
    assert len(watch) == 2, watch
    assert watch[0]["reason"].endswith("and 5 more"), watch[0]["reason"]
    assert watch[1]["reason"] == f"changed: {app / 'barrier.py'}", watch[1]["reason"]
    wait_for(lambda: tsm.row("w")["restarts"] == 2, message="the second restart")


def test_a_stopped_process_is_not_watched(tsm, tmp_path):
    one, two = tmp_path / "one", tmp_path / "two"
    for d in (one, two):
        d.mkdir()
        (d / "a.py").write_text("import time\ntime.sleep(600)\n")
        tsm.run("start", "--name", d.name, "--cwd", str(d), "--watch", "--", PY, "a.py", check=True)
        wait_for(lambda: events(tsm, d.name, "watching"), message="the watches to be in place")
    tsm.run("stop", "one", check=True)
    (one / "a.py").write_text("import time\ntime.sleep(601)\n")
    (two / "a.py").write_text("import time\ntime.sleep(601)\n")  # the barrier: seen after one's change
    wait_for(lambda: events(tsm, "two", "watch"), message="the other process's restart")
    assert tsm.row("one")["status"] == "stopped" and not events(tsm, "one", "watch")


def test_watch_paths_must_exist(tsm, tmp_path):
    r = tsm.run("start", "--cwd", str(tmp_path), "--watch", "nowhere", "--", PY, "-c", "pass")
    assert r.returncode == 2 and "nowhere" in r.stderr and "does not exist" in r.stderr


# ---------------------------------------------------------------------- cron


def test_cron_restart_restarts_an_online_process_on_schedule(tsm):
    tsm.run("start", "--name", "cr", "--cron-restart", "*/1 * * * * *", SLEEP, check=True)
    first = tsm.wait_status("cr", "online")
    wait_for(lambda: len(events(tsm, "cr", "cron-restart")) >= 2, timeout=15, message="two scheduled restarts")
    wait_for(lambda: tsm.row("cr")["restarts"] >= 2, message="the restarts counted")
    assert tsm.row("cr")["pid"] != first["pid"]
    assert tsm.row("cr")["spec"]["cron_restart"] == "*/1 * * * * *"
    # a stopped process is not brought up by its restart schedule: another one on the same
    # schedule is the clock
    tsm.run("stop", "cr", check=True)
    n = len(events(tsm, "cr", "cron-restart"))
    tsm.run("start", "--name", "clock", "--cron-restart", "*/1 * * * * *", SLEEP, check=True)
    wait_for(lambda: len(events(tsm, "clock", "cron-restart")) >= 2, timeout=15, message="the clock's restarts")
    assert tsm.row("cr")["status"] == "stopped" and len(events(tsm, "cr", "cron-restart")) == n


def test_cron_job_runs_on_schedule_never_twice_at_once_and_survives_update_and_resurrect(tsm, tmp_path):
    marks = tmp_path / "runs.txt"
    job = textwrap.dedent(f"""
        import os, time
        with open({str(marks)!r}, "a") as f: f.write("start\\n")
        time.sleep(1.6)
        with open({str(marks)!r}, "a") as f: f.write("end\\n")
    """)
    tsm.run("start", "--name", "job", "--cron", "*/1 * * * * *", "--", PY, "-c", job, check=True)
    assert tsm.row("job")["spec"]["autorestart"] is False  # a job that ends is done

    def runs() -> list[str]:
        return marks.read_text().split() if marks.exists() else []

    wait_for(lambda: runs().count("end") >= 2, timeout=20, message="two finished runs")
    assert events(tsm, "job", "cron") and events(tsm, "job", "cron-skip")  # runs and skips are events
    wait_for(lambda: tsm.row("job")["status"] == "stopped" or runs().count("start") > runs().count("end"))

    # the schedule survives `tsm update` (a new daemon) ...
    tsm.run("update", check=True)
    n = len(events(tsm, "job", "cron"))
    wait_for(lambda: len(events(tsm, "job", "cron")) > n, timeout=10, message="a run under the new daemon")
    # ... and save / kill / resurrect, even saved between two runs
    wait_for(lambda: tsm.row("job")["status"] == "stopped", timeout=10, message="the job between runs")
    assert "1 processes" in tsm.run("save", check=True).stdout
    tsm.run("kill", check=True)
    tsm.run("resurrect", check=True)
    n = len(events(tsm, "job", "cron"))
    wait_for(lambda: len(events(tsm, "job", "cron")) > n, timeout=10, message="a run after resurrect")
    wait_for(lambda: tsm.row("job")["status"] == "stopped", timeout=10, message="the last run to end")
    tsm.run("delete", "job", check=True)
    seq = runs()
    # never two runs at once: the marks alternate start, end, start, end ...
    assert seq == ["start", "end"] * (len(seq) // 2), seq


def test_cron_expression_is_checked(tsm):
    r = tsm.run("start", "--cron", "every minute", SLEEP)
    assert r.returncode == 2 and "--cron" in r.stderr
    r = tsm.run("start", "--cron-restart", "61 * * * *", SLEEP)
    assert r.returncode == 2 and "--cron-restart" in r.stderr and "61" in r.stderr
    assert tsm.call("ls", all=True) == []


# ---------------------------------------------------------------------- hooks


def test_crash_runs_the_hook_with_the_event_in_its_environment(tsm, tmp_path):
    out = tmp_path / "hook.env"
    crasher = "import sys, time; print('boom-line', file=sys.stderr, flush=True); time.sleep(0.6); sys.exit(3)"
    tsm.run("start", "--name", "c", "--restart-delay", "60s", "--on-crash", f"env > {out}",
            "--", PY, "-c", crasher, check=True)
    wait_for(lambda: out.exists() and "TSM_EVENT" in out.read_text(), message="the crash hook")
    env = dict(line.split("=", 1) for line in out.read_text().splitlines() if line.startswith("TSM_"))
    row = tsm.row("c")
    assert env["TSM_EVENT"] == "crash" and env["TSM_NAME"] == "c" and env["TSM_ID"] == str(row["tsm_id"])
    assert env["TSM_EXIT_CODE"] == "3" and env["TSM_SIGNAL"] == ""
    assert "boom-line" in out.read_text()  # TSM_STDERR: the last stderr lines
    assert "crash c" in (tsm.home / "hooks.log").read_text()
    assert not events(tsm, "c", "hook-failed")


def test_a_hook_that_hangs_is_cut_at_its_timeout_and_recorded(tsm, tmp_path):
    pidfile = tmp_path / "hook.pid"
    (tsm.home).mkdir(exist_ok=True)
    (tsm.home / "config.toml").write_text(
        f'[hooks]\nerrored = "echo $$ > {pidfile}; echo hanging; exec sleep 600"\ntimeout = "1s"\n')
    r = tsm.run("start", "--name", "bad", "--", PY, "-c", "import sys; sys.exit(2)")
    assert r.returncode == 1  # died during its launch window: errored
    wait_for(lambda: pidfile.exists() and pidfile.read_text().strip(), message="the hook to start")
    hook_pid = int(pidfile.read_text())
    assert tsm.call("ping")["processes"] == 1  # the daemon answers while the hook hangs
    failed = wait_for(lambda: events(tsm, "bad", "hook-failed"), timeout=10, message="the hook to be cut")
    assert "timeout of 1s" in failed[0]["reason"]
    wait_for(lambda: not pid_alive(hook_pid), message="the hook's process to be gone")
    log = (tsm.home / "hooks.log").read_text()
    assert "hanging" in log and "errored bad" in log


def test_a_failing_hook_is_an_event(tsm):
    tsm.run("start", "--name", "f", "--on-online", "exit 7", SLEEP, check=True)
    failed = wait_for(lambda: events(tsm, "f", "hook-failed"), message="the failed hook")
    assert failed[0]["reason"] == "online hook exited with code 7" and failed[0]["exit_code"] == 7


# ---------------------------------------------------------------------- reset


def test_reset_clears_restart_counters(tsm):
    tsm.run("start", "--name", "r", SLEEP, check=True)
    tsm.run("restart", "r", check=True)
    tsm.run("restart", "r", check=True)
    assert tsm.row("r")["restarts"] == 2
    out = tsm.run("reset", "r", check=True).stdout
    assert "Reset: r" in out
    row = tsm.row("r")
    assert row["restarts"] == 0 and row["unstable_restarts"] == 0 and row["status"] == "online"
    assert json.loads((tsm.proc_dir("r") / "meta.json").read_text())["restarts"] == 0
    assert events(tsm, "r", "reset")
    assert tsm.run("reset", "ghost").returncode == 1


def test_ignore_globs_match_names_relative_paths_and_folders():
    from tsm_notebook.engine.watch import ignored

    root = "/w"
    assert ignored("/w/data/x.bin", root, ["data"]) and ignored("/w/data", root, ["data/"])
    assert ignored("/w/a/b/run.log", root, ["*.log"]) and ignored("/w/a/b/c.py", root, ["a/*"])
    assert ignored("/w/a/tmp/c.py", root, ["tmp"])
    assert not ignored("/w/database.py", root, ["data"]) and not ignored("/w/a/c.py", root, ["*.log"])


def test_describe_shows_the_triggers(tsm, tmp_path):
    tsm.run("start", "--name", "d", "--cwd", str(tmp_path), "--cron-restart", "0 3 * * *", "--on-crash", "echo hi",
            SLEEP, "--watch", check=True)
    out = tsm.run("describe", "d", check=True).stdout
    card = dict(line.split("  ", 1) for line in out.splitlines())
    card = {k.strip(): v.strip() for k, v in card.items()}
    assert card["watch"] == str(tmp_path) and card["cron restart"] == "0 3 * * *" and card["on crash"] == "echo hi"
