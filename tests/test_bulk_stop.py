"""Stopping many processes at once: every tree is signalled first, then all are waited on
together, so N processes that ignore their stop signal take one kill timeout, not N; with the
guarantees of a single stop (the whole tree killed, the events recorded, no restart)."""

from __future__ import annotations

import signal
import textwrap
import time

from conftest import PY, pid_alive, wait_for
from tsm_notebook.core.history import read_events

#: a process that ignores SIGTERM
STUBBORN = "import signal, time; signal.signal(signal.SIGTERM, signal.SIG_IGN); print('up', flush=True); time.sleep(600)"
#: the same, with a child of its own that left its process group (setsid) and ignores SIGTERM too
ESCAPING = textwrap.dedent(f"""
    import signal, subprocess, time
    signal.signal(signal.SIGTERM, signal.SIG_IGN)
    kid = subprocess.Popen([{PY!r}, '-c', {STUBBORN!r}], start_new_session=True, stdout=subprocess.DEVNULL)
    print(kid.pid, flush=True)
    time.sleep(600)
""")
KILL_TIMEOUT = 1.5
N = 5


def test_stop_all_of_processes_ignoring_sigterm_takes_one_kill_timeout(tsm):
    names = [f"s{i}" for i in range(N)]
    for i, name in enumerate(names):
        code = ESCAPING if i == 0 else STUBBORN
        tsm.run("start", "--name", name, "--kill-timeout", f"{KILL_TIMEOUT}s", "--", PY, "-c", code, check=True)
    out = tsm.proc_dir("s0") / "current.out"
    escapee = wait_for(lambda: [int(x) for x in out.read_text().split()], message="the escaped child's pid")[0]
    for name in names[1:]:  # each has its SIGTERM handler set
        wait_for(lambda name=name: "up" in (tsm.proc_dir(name) / "current.out").read_text(), message=f"{name} up")
    leaders = {name: tsm.row(name)["pid"] for name in names}
    asked = time.time()
    tsm.run("stop", "all", check=True)

    rows = {r["name"]: r for r in tsm.call("ls", all=True)}
    for name in names:
        assert rows[name]["status"] == "stopped" and rows[name]["exit_signal"] == signal.SIGKILL
        assert rows[name]["restarts"] == 0
        assert not pid_alive(leaders[name])
    assert not pid_alive(escapee)  # the tree, not only the group

    assert tsm.call("history_flush")
    events = [e for e in read_events(tsm.home / "db" / "tsm.sqlite") if e["time"] >= asked]
    assert not [e for e in events if e["event"] in ("crash", "restart", "exit", "errored")]
    kills = {e["name"]: e["time"] for e in events if e["event"] == "kill"}
    stops = {e["name"]: e["time"] for e in events if e["event"] == "stop"}
    assert set(kills) == set(stops) == set(names)
    # each was given its kill timeout ...
    assert min(kills.values()) - asked >= KILL_TIMEOUT
    # ... and all of them the same one: every SIGKILL and every end lies within one kill-timeout
    # window of the first SIGKILL (a stop after another would put them kill_timeout apart)
    first = min(kills.values())
    assert max(kills.values()) - first < KILL_TIMEOUT
    assert max(stops.values()) - first < KILL_TIMEOUT
    for name in names:
        assert kills[name] <= stops[name]
