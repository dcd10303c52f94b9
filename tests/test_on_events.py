"""`tsm_notebook.on(event, callback)` and the panel's toast, on a real daemon."""

from __future__ import annotations

import threading

import pytest

import tsm_notebook
from conftest import PY, wait_for
from tsm_notebook.core.errors import UsageError

CRASHER = f"{PY} -c 'import sys, time; time.sleep(0.6); sys.exit(4)'"


def test_on_crash_calls_back_from_a_thread_and_stops_cleanly(tsm):
    tsm.run("ping", check=True)
    tsm.run("start", "--name", "before", "--restart-delay", "60s", CRASHER, check=True)
    wait_for(lambda: tsm.row("before")["status"] == "waiting", message="an earlier crash")
    tsm.call("history_flush")
    seen: list[dict] = []
    threads: set[str] = set()

    def callback(event: dict) -> None:
        seen.append(event)
        threads.add(threading.current_thread().name)

    sub = tsm_notebook.on("crash", callback, home=tsm.home, interval=0.05)
    try:
        tsm.run("start", "--name", "c", "--restart-delay", "60s", CRASHER, check=True)
        wait_for(lambda: seen, timeout=10, message="the callback")
        assert [e["name"] for e in seen] == ["c"]  # only new events: the earlier crash is not replayed
        assert seen[0]["event"] == "crash" and seen[0]["exit_code"] == 4
        assert threads == {"tsm-on"} and sub.running and sub.calls == 1
    finally:
        sub.stop()
    assert not sub.running


def test_on_refuses_what_it_cannot_call(tsm):
    with pytest.raises(UsageError):
        tsm_notebook.on("crash", None, home=tsm.home)
    with pytest.raises(UsageError):
        tsm_notebook.on([], print, home=tsm.home)


def test_the_panel_shows_a_crash_as_a_toast(tsm):
    panel = tsm_notebook.Panel(home=tsm.home, autostart=False)
    try:
        tsm.run("start", "--name", "t", "--restart-delay", "60s", CRASHER, check=True)
        wait_for(lambda: tsm.row("t")["status"] == "waiting", message="the crash")
        tsm.call("history_flush")
        panel.refresh()
        assert "t: crash: exit code 4" in panel.message.value
    finally:
        panel.close()
