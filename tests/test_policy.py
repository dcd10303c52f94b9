"""The restart and stop policy as the child lives it: the delays between restarts read from the
recorded events, the signal a child really receives on stop, --interpreter end to end, and
descendants that leave the process group.

Durations are compared with each other (an order, a ratio) or with the delay the policy was asked
for, never with how fast this machine happens to be.
"""

from __future__ import annotations

import os
import signal
import textwrap
import time

import pytest

from conftest import PY, pid_alive, wait_for
from tsm_notebook.core import report
from tsm_notebook.core.paths import Home

# Installs handlers for the signals a stop could send, writes which one arrived, then exits.
RECORDER = textwrap.dedent(
    """
    import os, signal, sys, time
    out = sys.argv[1]
    def got(sig, frame):
        with open(out + ".tmp", "w") as f:
            f.write(str(sig))
        os.replace(out + ".tmp", out)
        os._exit(0)
    for s in (signal.SIGTERM, signal.SIGINT, signal.SIGUSR1, signal.SIGUSR2, signal.SIGHUP, signal.SIGQUIT):
        signal.signal(s, got)
    open(out + ".ready", "w").close()
    while True:
        time.sleep(1)
    """
)


def events(tsm, name: str) -> list[dict]:
    return report.events(Home.resolve(tsm.home), name)


def restart_intervals(rows: list[dict]) -> list[tuple[float, float]]:
    """``(planned, measured)`` seconds for each crash followed by its restart, from the events."""
    pairs = []
    crash = None
    for r in rows:
        if r["event"] == "crash":
            crash = r
        elif r["event"] == "restart" and crash is not None:
            planned = float(crash["reason"].split("restart in ")[1].rstrip("s"))
            pairs.append((planned, r["time"] - crash["time"]))
            crash = None
    return pairs


# The stop tests come first: they are the quickest, so a mutant of stop() fails early (tools/mutants.py)
def test_a_child_that_ignores_the_stop_signal_is_killed_after_kill_timeout(tsm, tmp_path):
    code = ("import signal, time; signal.signal(signal.SIGTERM, signal.SIG_IGN); "
            f"open({str(tmp_path / 'ready')!r}, 'w').close(); time.sleep(600)")
    tsm.run("start", "--name", "stubborn", "--kill-timeout", "500ms", "--", PY, "-c", code, check=True)
    wait_for(lambda: (tmp_path / "ready").exists(), message="SIGTERM ignored")
    asked = time.time()
    tsm.run("stop", "stubborn", check=True)
    row = tsm.row("stubborn")
    assert row["status"] == "stopped" and row["exit_signal"] == signal.SIGKILL
    stop_events = [e for e in events(tsm, "stubborn") if e["event"] in ("kill", "stop")]
    assert [e["event"] for e in stop_events] == ["kill", "stop"]
    assert "kill_timeout 0.5s" in stop_events[0]["reason"]
    assert stop_events[0]["time"] - asked >= 0.5  # SIGKILL only once kill_timeout had passed


def test_a_child_that_exits_at_the_stop_signal_is_not_killed_with_a_kill_timeout_of_a_second(tsm, tmp_path):
    code = f"import time; open({str(tmp_path / 'ready')!r}, 'w').close(); time.sleep(600)"
    tsm.run("start", "--name", "prompt", "--kill-timeout", "1s", "--", PY, "-c", code, check=True)
    wait_for(lambda: (tmp_path / "ready").exists(), message="the child up")
    tsm.run("stop", "prompt", check=True)
    row = tsm.row("prompt")
    assert row["status"] == "stopped" and row["exit_signal"] == signal.SIGTERM
    kinds = wait_for(lambda: (lambda k: k if "stop" in k else None)(
        [e["event"] for e in events(tsm, "prompt") if e["event"] in ("kill", "stop")]), message="the stop event")
    assert kinds == ["stop"]  # the stop saw the exit within kill_timeout: no SIGKILL, no kill event


# A child that starts a session of its own but stays the managed process's child (not re-parented)
SESSION_CHILD = textwrap.dedent(
    """
    import os, sys, time
    pid = os.fork()
    if pid == 0:
        os.setsid()
        with open(sys.argv[1] + ".tmp", "w") as f:
            f.write(str(os.getpid()))
        os.replace(sys.argv[1] + ".tmp", sys.argv[1])
        while True:
            time.sleep(1)
    while True:
        time.sleep(1)
    """
)


def test_stop_reaches_a_child_in_a_session_of_its_own(tsm, tmp_path):
    pidfile = tmp_path / "child"
    tsm.run("start", "--name", "sess", "--kill-timeout", "5s", "--", PY, "-c", SESSION_CHILD, str(pidfile),
            check=True)
    child = int(wait_for(lambda: pidfile.exists() and pidfile.read_text(), message="the child's pid"))
    try:
        assert os.getsid(child) == child != tsm.row("sess")["pid"]
        tsm.run("stop", "sess", check=True)
        wait_for(lambda: not pid_alive(child), timeout=5, message="the child in its own session to be stopped")
        assert "kill" not in [e["event"] for e in events(tsm, "sess")]  # by the stop signal, not the SIGKILL
    finally:
        try:
            os.kill(child, signal.SIGKILL)
        except ProcessLookupError:
            pass


@pytest.mark.parametrize("name", ["SIGINT", "SIGUSR1", "SIGTERM"])
def test_stop_signal_is_the_one_the_child_receives(tsm, tmp_path, name):
    out = tmp_path / "got"
    argv = ["start", "--name", "rec", "--kill-timeout", "20s"]
    if name != "SIGTERM":
        argv += ["--stop-signal", name]
    tsm.run(*argv, "--", PY, "-c", RECORDER, str(out), check=True)
    wait_for(lambda: (tmp_path / "got.ready").exists(), message="the handlers to be installed")
    r = tsm.run("stop", "rec", check=True)
    assert "rec" in r.stdout
    assert out.read_text() == str(int(getattr(signal, name)))
    # it left on that signal, not on the SIGKILL that follows kill_timeout
    row = tsm.row("rec")
    assert row["status"] == "stopped" and row["exit_code"] == 0
    assert "kill" not in [e["event"] for e in events(tsm, "rec")]


def test_exp_backoff_delays_grow_between_restarts(tsm):
    slow = "import time, sys; time.sleep(0.5); sys.exit(1)"  # lives past the launch window, then crashes
    tsm.run("start", "--name", "exp", "--exp-backoff", "300ms", "--max-restarts", "50", "--", PY, "-c", slow,
            check=True)
    pairs = wait_for(lambda: (lambda p: p if len(p) >= 4 else None)(restart_intervals(events(tsm, "exp"))),
                     timeout=30, message="four restarts")[:4]
    tsm.run("stop", "exp", check=True)
    row = tsm.row("exp")
    # every crash came before min_uptime (1 s): each counts as unstable, once
    assert row["unstable_restarts"] in (row["restarts"], row["restarts"] + 1), row
    planned = [p for p, _ in pairs]
    measured = [m for _, m in pairs]
    # the policy: 300 ms, then 1.5 times the previous delay
    assert planned == pytest.approx([0.3, 0.45, 0.675, 1.0125], abs=0.001), planned  # reasons round to ms
    # what happened: each restart waited at least its delay, and each wait was longer than the last
    assert all(m >= p for p, m in pairs), pairs
    assert measured == sorted(measured) and len(set(measured)) == 4, measured
    assert measured[-1] / measured[0] > 2, measured  # 3.4x planned: a constant delay gives about 1


# Counts its runs in a file; the fourth run stays up 3 s, every other one crashes after 0.3 s.
RUNS = "import sys, time; p = sys.argv[1]; n = len(open(p).read()) if __import__('os').path.exists(p) else 0; " \
       "open(p, 'a').write('x'); time.sleep(3 if n == 3 else 0.3); sys.exit(1)"


def test_a_stable_run_starts_the_backoff_over(tsm, tmp_path):
    # daemon.stable_after lowered from 30 s to 2 s so that a test can wait for a stable run
    (tsm.home / "config.toml").write_text('[daemon]\nstable_after = "2s"\n')
    tsm.run("start", "--name", "calm", "--exp-backoff", "200ms", "--max-restarts", "50", "--",
            PY, "-c", RUNS, str(tmp_path / "runs"), check=True)
    pairs = wait_for(lambda: (lambda p: p if len(p) >= 5 else None)(restart_intervals(events(tsm, "calm"))),
                     timeout=40, message="five restarts")[:5]
    tsm.run("stop", "calm", check=True)
    uptimes = [float(e["reason"].split("uptime ")[1].rstrip("s")) for e in events(tsm, "calm") if e["event"] == "exit"]
    assert uptimes[3] >= 2 and max(uptimes[:3] + uptimes[4:5]) < 2, uptimes  # the runs were as planned
    # three crashes grow the delay; the run that stayed up 3 s resets it to the first delay
    assert [p for p, _ in pairs] == pytest.approx([0.2, 0.3, 0.45, 0.2, 0.3], abs=0.001), pairs


def test_restart_delay_is_waited_before_each_restart(tsm):
    slow = "import time, sys; time.sleep(0.5); sys.exit(1)"
    tsm.run("start", "--name", "delay", "--restart-delay", "1500", "--", PY, "-c", slow, check=True)
    pairs = wait_for(lambda: (lambda p: p if len(p) >= 2 else None)(restart_intervals(events(tsm, "delay"))),
                     timeout=20, message="two restarts")
    tsm.wait_status("delay", "waiting")
    tsm.run("stop", "delay", check=True)  # a stop while it waits to restart cancels the restart
    assert tsm.row("delay")["status"] == "stopped"
    for planned, measured in pairs:
        assert planned == 1.5 and measured >= planned, pairs  # the event times are the daemon's own clock


def test_without_backoff_or_delay_restarts_come_at_once(tsm):
    slow = "import time, sys; time.sleep(0.5); sys.exit(1)"
    tsm.run("start", "--name", "now", "--max-restarts", "50", "--", PY, "-c", slow, check=True)
    pairs = wait_for(lambda: (lambda p: p if len(p) >= 2 else None)(restart_intervals(events(tsm, "now"))),
                     timeout=20, message="two restarts")
    tsm.run("stop", "now", check=True)
    assert [p for p, _ in pairs] == [0.0] * len(pairs)


def test_unstable_restarts_in_a_row_end_in_errored(tsm):
    slow = "import time, sys; time.sleep(0.5); sys.exit(3)"
    tsm.run("start", "--name", "flaky", "--max-restarts", "1", "--min-uptime", "5s", "--", PY, "-c", slow,
            check=True)
    row = tsm.wait_status("flaky", "errored", timeout=20)
    assert (row["restarts"], row["unstable_restarts"], row["exit_code"]) == (1, 2, 3)
    # the status is written at once, the event by the history writer a moment later
    kinds = wait_for(lambda: (lambda k: k if "errored" in k else None)(
        [e["event"] for e in events(tsm, "flaky") if e["event"] in ("crash", "restart", "errored")]),
        message="the errored event")
    assert kinds == ["crash", "restart", "errored"]


def test_interpreter_runs_the_script(tsm, tmp_path):
    script = tmp_path / "job.txt"  # no exec bit, no extension that names a language
    script.write_text("import sys, time\nprint('ran by', sys.executable, flush=True)\ntime.sleep(600)\n")
    refused = tsm.run("start", "--name", "bare", str(script))
    assert refused.returncode != 0
    tsm.run("start", "--name", "job", "--interpreter", PY, str(script), check=True)
    row = tsm.wait_status("job", "online")
    assert row["type"] == "python"
    assert os.path.realpath(row["interpreter"]) == PY
    wait_for(lambda: f"ran by {PY}" in tsm.run("logs", "job", "--out", "--raw").stdout, message="the script's line")


ESCAPER = textwrap.dedent(
    """
    import os, sys, time
    if os.fork() == 0:
        os.setsid()              # a new session: no longer in the managed process group
        if os.fork() == 0:       # and no longer a child of the managed process
            with open(sys.argv[1] + ".tmp", "w") as f:
                f.write(str(os.getpid()))
            os.replace(sys.argv[1] + ".tmp", sys.argv[1])
            while True:
                time.sleep(1)
        os._exit(0)
    while True:
        time.sleep(1)
    """
)


def test_stop_reaches_descendants_that_left_the_group(tsm, tmp_path):
    pidfile = tmp_path / "escaped"
    tsm.run("start", "--name", "esc", "--kill-timeout", "500ms", "--", PY, "-c", ESCAPER, str(pidfile), check=True)
    escaped = int(wait_for(lambda: pidfile.exists() and pidfile.read_text(), message="the escaped pid"))
    try:
        leader = tsm.row("esc")["pid"]
        assert os.getsid(escaped) != os.getsid(leader) and os.getpgid(escaped) != leader  # it left both
        tsm.run("stop", "esc", check=True)
        wait_for(lambda: not pid_alive(escaped), timeout=5, message="the escaped descendant to be stopped")
    finally:
        try:
            os.kill(escaped, signal.SIGKILL)  # our own child's child: leave nothing for the teardown
        except ProcessLookupError:
            pass
